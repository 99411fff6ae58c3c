"""PDF documents as text, for models that cannot read PDFs: bounded and remembered.

Extraction (pypdf) is CPU work a small PDF can make enormous (one page referenced 20,000 times), so it
is bounded three ways — pages, characters of text, seconds (checked at every content-stream operator)
— each a 400 naming the bound. One extraction runs at a time, in a worker thread, so the event loop
keeps serving. Results (text or refusal) are kept by the PDF's SHA-256, up to ``_CACHE_CHARS``
characters in all, so a document sent with every turn of a conversation is read once.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread

from wisegate.errors import InvalidRequest
from wisegate.protocol.numbers import seconds

_CACHE_CHARS = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PdfLimits:
    max_pages: int = 100
    max_text_chars: int = 1_000_000
    seconds: float = 10.0


class _TooSlow(Exception):
    pass


def extract(data: bytes, limits: PdfLimits) -> str:
    """The text of a PDF, page after page; 400 when it cannot be read or passes a bound."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    deadline = time.monotonic() + limits.seconds

    def check_time(*_: Any) -> None:
        if time.monotonic() > deadline:
            raise _TooSlow

    pages: list[str] = []
    total = 0
    try:
        reader = PdfReader(io.BytesIO(data))
        if _more_pages_than(reader, limits.max_pages):
            raise InvalidRequest(
                f"The PDF document has more than {limits.max_pages} pages, the most that can be read as text."
            )
        for page in reader.pages:
            check_time()
            text = (page.extract_text(visitor_operand_before=check_time) or "").strip()
            total += len(text)
            if total > limits.max_text_chars:
                raise InvalidRequest(
                    f"The PDF document's text is longer than {limits.max_text_chars} characters, the most "
                    "that can be read as text."
                )
            pages.append(text)
    except _TooSlow:
        raise InvalidRequest(
            f"The PDF document could not be read as text within {seconds(limits.seconds)}."
        ) from None
    except (PyPdfError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise InvalidRequest(f"The PDF document could not be read: {exc}") from None
    return "\n\n".join(pages).strip()


def _more_pages_than(reader: Any, limit: int) -> bool:
    """Whether the page tree has more than ``limit`` pages, walking at most about that many nodes
    (pypdf's own count flattens the whole tree first: seconds for one page listed 20,000 times)."""
    stack = [reader.trailer["/Root"].get_object()["/Pages"]]
    pages = nodes = 0
    while stack:
        node = stack.pop().get_object()
        nodes += 1
        if nodes > 4 * limit + 16:  # a tree of empty or cyclic branches
            return True
        kids = node.get("/Kids")
        if kids is None:
            pages += 1
            if pages > limit:
                return True
        else:
            stack.extend(kids)
    return False


class PdfText:
    """``await pdf_text.read(data)``: the text of a PDF within ``limits``, cached by content hash."""

    def __init__(self, limits: PdfLimits) -> None:
        self.limits = limits
        self._one_at_a_time = anyio.CapacityLimiter(1)
        self._cache: OrderedDict[bytes, str | InvalidRequest] = OrderedDict()
        self._cached_chars = 0

    async def read(self, data: bytes) -> str:
        digest = hashlib.sha256(data).digest()
        found = self._cache.get(digest)
        if found is None:
            try:
                found = await anyio.to_thread.run_sync(
                    extract, data, self.limits, limiter=self._one_at_a_time
                )
            except InvalidRequest as exc:
                found = exc
            self._remember(digest, found)
        else:
            self._cache.move_to_end(digest)
        if isinstance(found, InvalidRequest):
            raise InvalidRequest(found.message)
        return found

    def _remember(self, digest: bytes, result: str | InvalidRequest) -> None:
        size = len(result) if isinstance(result, str) else 0
        if size > _CACHE_CHARS:
            return
        if digest in self._cache:
            return
        self._cache[digest] = result
        self._cached_chars += size
        while self._cached_chars > _CACHE_CHARS or len(self._cache) > 4096:
            _, old = self._cache.popitem(last=False)
            self._cached_chars -= len(old) if isinstance(old, str) else 0
