"""Text-side helpers of generation: stop-sequence matching over a stream of text pieces."""

from __future__ import annotations


class StopMatcher:
    """Finds the first of ``sequences`` in streamed text, holding back what may be the start of one.

    ``feed`` returns the text that is safe to emit and the sequence matched (or None). Text after a
    match is dropped, as the Claude API does not return the stop sequence or anything after it.

    Each sequence runs a Knuth-Morris-Pratt automaton over the text as it arrives, with Knuth's
    "strong" failure links (a mismatch never retries a border that would mismatch the same way), so a
    piece costs O(len(piece)) per sequence, not O(length²): a request may send 256 sequences of 1024
    characters (``bench``-style numbers in ``tests/backends/test_stop_matcher.py``).
    """

    def __init__(self, sequences: list[str]) -> None:
        self._sequences = [s for s in sequences if s]
        self._failure = [_strong_failure(s) for s in self._sequences]
        self._matched = [0] * len(self._sequences)  # per sequence: its prefix the text now ends with
        self._pending = ""

    def feed(self, text: str) -> tuple[str, str | None]:
        buffer = self._pending + text
        if not self._sequences:
            self._pending = ""
            return buffer, None
        offset = len(self._pending)  # the pending text was run through the automata already
        found: tuple[int, str] | None = None
        for index, seq in enumerate(self._sequences):
            failure, state = self._failure[index], self._matched[index]
            for at, char in enumerate(text):
                while state and seq[state] != char:
                    state = failure[state]
                if seq[state] == char:
                    state += 1
                if state == len(seq):
                    start = offset + at + 1 - len(seq)
                    if found is None or start < found[0]:
                        found = (start, seq)
                    break
            self._matched[index] = state
        if found is not None:
            self._pending = ""
            self._matched = [0] * len(self._sequences)
            return buffer[: found[0]], found[1]
        hold = max(self._matched)
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        return buffer[: len(buffer) - hold], None

    def flush(self) -> str:
        """What is still held back, once the stream has ended without a match."""
        pending, self._pending = self._pending, ""
        self._matched = [0] * len(self._sequences)
        return pending


def _strong_failure(seq: str) -> list[int]:
    """For each matched length ``k`` (``seq[k]`` mismatched): the longest border of ``seq[:k]`` whose
    next character differs from ``seq[k]`` (0 when none), the length to go on matching from."""
    border = [0] * (len(seq) + 1)  # border[k]: the longest proper border of seq[:k]
    for k in range(2, len(seq) + 1):
        b = border[k - 1]
        while b and seq[k - 1] != seq[b]:
            b = border[b]
        border[k] = b + 1 if seq[k - 1] == seq[b] else 0
    strong = [0] * len(seq)
    for k in range(1, len(seq)):
        b = border[k]
        strong[k] = strong[b] if b and seq[b] == seq[k] else b
    return strong


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
