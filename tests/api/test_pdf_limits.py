"""PDFs read as text for the embedded model are bounded (pages, characters, seconds) and cached by
content hash: a small PDF that repeats one page 20,000 times is a quick 400, not 10 s of CPU."""

from __future__ import annotations

import base64
import time
from typing import Any

import anthropic
import pytest

from tests.api.files_support import make_pdf
from tests.conftest import EMBEDDED_MODEL, LiveServer
from wisegate.domain import pdf_text
from wisegate.domain.pdf_text import PdfLimits, PdfText, extract
from wisegate.errors import InvalidRequest


def repeated_page_pdf(times: int) -> bytes:
    """One page, listed ``times`` times in the page tree (what made extraction take 10 s)."""
    one = make_pdf("The same page again and again.")
    kids = b"[" + b" ".join([b"3 0 R"] * times) + b"]"
    patched = one.replace(b"/Kids [3 0 R] /Count 1", b"/Kids " + kids + b" /Count %d" % times)
    assert patched != one
    return patched


def document(pdf: bytes) -> dict[str, Any]:
    data = base64.b64encode(pdf).decode()
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}


def count(server: LiveServer, pdf: bytes) -> int:
    content = [document(pdf), {"type": "text", "text": "Summarise."}]
    counted = server.client().messages.count_tokens(
        model=EMBEDDED_MODEL,
        messages=[{"role": "user", "content": content}],  # type: ignore[list-item]
    )
    return counted.input_tokens


def test_a_pdf_past_the_page_bound_is_a_quick_400(embedded_server: LiveServer) -> None:
    started = time.monotonic()
    with pytest.raises(anthropic.BadRequestError) as info:
        count(embedded_server, repeated_page_pdf(20_000))
    assert time.monotonic() - started < 5
    assert info.value.body["error"]["message"] == (  # type: ignore[index]
        "The PDF document has more than 100 pages, the most that can be read as text."
    )
    assert count(embedded_server, repeated_page_pdf(100)) > 100  # at the bound: read


def test_text_and_time_bounds() -> None:
    pdf = make_pdf("A line of text on page one.", "Another on page two.")
    assert extract(pdf, PdfLimits()) == "A line of text on page one.\n\nAnother on page two."
    with pytest.raises(InvalidRequest, match="text is longer than 30 characters"):
        extract(pdf, PdfLimits(max_text_chars=30))
    with pytest.raises(InvalidRequest, match="could not be read as text within 0 seconds"):
        extract(pdf, PdfLimits(seconds=0))


def test_text_is_cached_by_content_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def counting(data: bytes, limits: PdfLimits) -> str:
        calls.append(data)
        return extract(data, limits)

    monkeypatch.setattr(pdf_text, "extract", counting)
    reader = PdfText(PdfLimits(max_pages=1))
    first, second = make_pdf("one"), make_pdf("two")
    too_long = make_pdf("a", "b")

    async def scenario() -> None:
        assert await reader.read(first) == "one"
        assert await reader.read(first) == "one"
        assert await reader.read(second) == "two"
        for _ in range(2):  # a refusal is remembered too
            with pytest.raises(InvalidRequest, match="has more than 1 pages"):
                await reader.read(too_long)

    import anyio

    anyio.run(scenario)
    assert calls == [first, second, too_long]
