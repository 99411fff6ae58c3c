"""A local fake upstream: a Starlette app on a real port that records requests and answers from a queue.

Each queued answer is what the real provider would put on the wire (status, headers, body bytes, or
a body sent in chunks); with nothing queued it answers 500 so a missing expectation fails loudly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.conftest import free_port

TRANSCRIPTS = Path(__file__).parent / "transcripts"


def transcript(name: str) -> bytes:
    return (TRANSCRIPTS / name).read_bytes()


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    raw_path: str = ""


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] | None = None
    break_after: int | None = None  # drop the connection after this many chunks
    delay: float = 0.0  # seconds before answering
    chunk_delay: float = 0.0  # seconds between chunks


class FakeUpstream:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.answers: deque[Answer] = deque()
        self.base_url = ""
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    def reset(self) -> None:
        self.seen.clear()
        self.answers.clear()

    def answer(self, answer: Answer | None = None, **kwargs: object) -> None:
        self.answers.append(answer or Answer(**kwargs))  # type: ignore[arg-type]

    def sse(self, data: bytes, pieces: int = 7) -> None:
        """Queue an SSE stream, cut into ``pieces`` chunks at arbitrary byte offsets."""
        step = max(1, len(data) // pieces)
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        self.answer(Answer(content_type="text/event-stream; charset=utf-8", chunks=chunks))

    async def _handle(self, request: Request) -> Response:
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                request.url.query,
                {k.lower(): v for k, v in request.headers.items()},
                await request.body(),
                request.scope["raw_path"].decode(),
            )
        )
        if not self.answers:
            return Response(b'{"error":"nothing queued"}', status_code=500)
        answer = self.answers.popleft()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.chunks is None:
            return Response(
                answer.body, status_code=answer.status, media_type=answer.content_type, headers=answer.headers
            )
        chunks = answer.chunks

        async def body() -> AsyncIterator[bytes]:
            for index, chunk in enumerate(chunks):
                if answer.break_after is not None and index >= answer.break_after:
                    raise ConnectionResetError("fake upstream drops the connection")
                yield chunk
                await asyncio.sleep(answer.chunk_delay)

        return StreamingResponse(
            body(), status_code=answer.status, media_type=answer.content_type, headers=answer.headers
        )


def run_fake(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    """Serve ``fake`` with uvicorn in a thread for the duration of the generator."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fake.app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )

    def run() -> None:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(server.serve())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the fake upstream did not start")
        time.sleep(0.02)
    fake.base_url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        server.should_exit = True
        thread.join(10)
