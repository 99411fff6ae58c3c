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
