"""Text-side helpers of generation: stop-sequence matching over a stream of text pieces."""

from __future__ import annotations


class StopMatcher:
    """Finds the first of ``sequences`` in streamed text, holding back what may be the start of one.

    ``feed`` returns the text that is safe to emit and the sequence matched (or None). Text after a
    match is dropped, as the Claude API does not return the stop sequence or anything after it.
    """

    def __init__(self, sequences: list[str]) -> None:
        self._sequences = [s for s in sequences if s]
        self._pending = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        buffer = self._pending + text
        if not self._sequences:
            self._pending = ""
            return buffer, None
        found: tuple[int, str] | None = None
        for seq in self._sequences:
            at = buffer.find(seq)
            if at >= 0 and (found is None or at < found[0]):
                found = (at, seq)
        if found is not None:
            self._pending = ""
            return buffer[: found[0]], found[1]
        hold = 0
        for seq in self._sequences:
            for size in range(min(len(seq) - 1, len(buffer)), hold, -1):
                if buffer.endswith(seq[:size]):
                    hold = size
                    break
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], None

    def flush(self) -> str:
        """What is still held back, once the stream has ended without a match."""
        pending, self._pending = self._pending, ""
        return pending


class SpanFilter:
    """Drops every ``open … close`` span (and any stray ``close`` or other ``strays``) from streamed text.

    ``feed`` returns the text that is safe to emit; what may be the start of a marker is held back,
    and text inside an unclosed span is dropped. ``flush`` returns what is held back at the end.
    """

    def __init__(self, open_marker: str, close_marker: str, strays: tuple[str, ...] = ()) -> None:
        self._open, self._close = open_marker, close_marker
        self._strays = (close_marker, *strays)  # dropped where they appear outside a span
        self._inside = False
        self._pending = ""
        self._span: list[str] = []
        self.dropped: list[str] = []
        """The inner text of every span dropped so far."""

    def feed(self, text: str) -> str:
        buffer = self._pending + text
        out: list[str] = []
        while True:
            if self._inside:
                at = buffer.find(self._close)
                if at < 0:
                    keep = _held(buffer, [self._close])
                    self._span.append(buffer[: len(buffer) - keep])
                    self._pending = buffer[len(buffer) - keep :] if keep else ""
                    return "".join(out)
                self._span.append(buffer[:at])
                self.dropped.append("".join(self._span))
                self._span = []
                buffer = buffer[at + len(self._close) :]
                self._inside = False
                continue
            opened = buffer.find(self._open)
            stray = min(((at, m) for m in self._strays if (at := buffer.find(m)) >= 0), default=None)
            if stray is not None and (opened < 0 or stray[0] < opened):
                out.append(buffer[: stray[0]])
                buffer = buffer[stray[0] + len(stray[1]) :]
                continue
            if opened >= 0:
                out.append(buffer[:opened])
                buffer = buffer[opened + len(self._open) :]
                self._inside = True
                continue
            keep = _held(buffer, [self._open, *self._strays])
            out.append(buffer[: len(buffer) - keep])
            self._pending = buffer[len(buffer) - keep :] if keep else ""
            return "".join(out)

    def flush(self) -> str:
        pending, self._pending = self._pending, ""
        return "" if self._inside else pending


def _held(buffer: str, markers: list[str]) -> int:
    """The length of the longest end of ``buffer`` that begins one of ``markers``."""
    hold = 0
    for marker in markers:
        for size in range(min(len(marker) - 1, len(buffer)), hold, -1):
            if buffer.endswith(marker[:size]):
                hold = size
                break
    return hold
