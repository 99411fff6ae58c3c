"""The shared body of upstreams that speak the Messages format: Anthropic, Azure AI Foundry, Vertex, Bedrock.

A subclass says where and how to send (``_prepare``) and, when the upstream frames its stream in
something other than SSE, how to turn it into Anthropic SSE bytes (``_sse``). Everything else is
here: the relay (bytes in, bytes out, usage read on the side), the typed ``stream`` and
``count_tokens`` built on the relay, and error mapping.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from wisegate.backends.base import BackendItem, Capabilities, ModelRoute, RelayRequest, RelayResponse
from wisegate.backends.sse import UsageTap, apply_usage, typed_events
from wisegate.backends.upstream import (
    KeyPool,
    UpstreamUnavailable,
    connection_error,
    new_session,
    upstream_error,
)
from wisegate.errors import ApiError, ApiInternal
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest

log = logging.getLogger("wisegate.upstream")


@functools.lru_cache(maxsize=1024)
def _url(url: str) -> URL:
    """Parsed once per distinct URL, sent as given (``encoded``: Bedrock's signed path stays as signed)."""
    return URL(url, encoded=True)


@dataclass(frozen=True, slots=True)
class Outgoing:
    url: str
    headers: dict[str, str]
    body: bytes


class MessagesUpstream:
    """Base class; subclasses implement ``_prepare`` (and ``_sse`` for non-SSE stream framing)."""

    capabilities = Capabilities(
        tools=True,
        images=True,
        pdf=True,
        thinking=True,
        exact_token_count=True,
        local_token_count=False,
        structured_outputs=True,
        effort=True,
    )
    remote = True

    def __init__(self, name: str, options: dict[str, Any]) -> None:
        self.name = name
        self._options = options
        self._keys = KeyPool.from_options(options)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = new_session(self._options)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _prepare(self, request: RelayRequest, route: ModelRoute) -> Outgoing:
        raise NotImplementedError

    def _sse(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The upstream's stream as Anthropic SSE bytes (SSE upstreams: the bytes as they come, with no
        generator in between: every relayed chunk passes through here)."""
        return response.content.iter_any()

    async def relay(self, request: RelayRequest, route: ModelRoute) -> RelayResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        outgoing = await self._prepare(request, route)
        try:
            response = await self._session.post(
                _url(outgoing.url), data=outgoing.body, headers=outgoing.headers
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise connection_error(self.name, exc) from None
        try:
            if response.status >= 400:
                raise upstream_error(self.name, response.status, await response.read(), response.headers)
            content_type = response.headers.get("content-type", "application/json")
            if not request.stream or request.count_tokens:
                body = await response.read()
                relayed = RelayResponse(status=response.status, content_type=content_type, body=body)
                _read_message_usage(body, relayed)
                response.release()
                return relayed
        except ApiError:
            response.release()
            raise
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            response.close()
            raise connection_error(self.name, exc) from None
        relayed = RelayResponse(status=200, content_type="text/event-stream; charset=utf-8")
        relayed.chunks = self._relay_chunks(response, UsageTap(relayed))
        return relayed

    async def _relay_chunks(self, response: aiohttp.ClientResponse, tap: UsageTap) -> AsyncGenerator[bytes]:
        finished = False
        try:
            async for data in self._sse(response):
                tap.feed(data)
                yield data
            finished = True
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("upstream %s stream broke: %r", self.name, exc, extra={"backend": self.name})
            raise UpstreamUnavailable("The upstream provider's stream broke off.") from None
        finally:
            if finished:
                response.release()
            else:
                response.close()

    async def stream(
        self, request: MessagesRequest, route: ModelRoute, *, batch: bool = False
    ) -> AsyncGenerator[BackendItem]:
        """The typed path (used when the request does not go through ``relay``)."""
        body = _request_json(request, route.public_id, stream=True)
        relayed = await self.relay(RelayRequest(body=body, stream=True, model=route.public_id), route)
        assert relayed.chunks is not None
        try:
            async for item in typed_events(relayed.chunks):
                yield item
        finally:
            await relayed.chunks.aclose()

    async def count_tokens(self, request: CountTokensRequest | MessagesRequest, route: ModelRoute) -> int:
        body = _request_json(request, route.public_id, stream=None)
        relayed = await self.relay(
            RelayRequest(body=body, stream=False, count_tokens=True, model=route.public_id), route
        )
        try:
            count = json.loads(relayed.body or b"{}")["input_tokens"]
        except (ValueError, KeyError, TypeError):
            raise ApiInternal(f"upstream {self.name} answered count_tokens without input_tokens") from None
        return int(count)


def _request_json(request: CountTokensRequest | MessagesRequest, model: str, stream: bool | None) -> bytes:
    document = request.model_dump(mode="json", exclude_unset=True)
    document["model"] = model
    if stream is not None:
        document["stream"] = stream
    else:
        document.pop("stream", None)
    return json.dumps(document, separators=(",", ":")).encode()


def _read_message_usage(body: bytes, relayed: RelayResponse) -> None:
    try:
        document = json.loads(body)
    except ValueError:
        return
    if isinstance(document, dict):
        if isinstance(document.get("usage"), dict):
            apply_usage(relayed.usage, document["usage"])
        if isinstance(document.get("input_tokens"), int):  # count_tokens
            relayed.usage.input_tokens = document["input_tokens"]
        if document.get("stop_reason"):
            relayed.stop_reason = str(document["stop_reason"])


def merge_beta(headers: dict[str, str], request: RelayRequest, extra: str | None) -> None:
    values = [v for v in (extra, request.beta) if v]
    if values:
        headers["anthropic-beta"] = ",".join(values)
