from __future__ import annotations

from wisegate.backends.local.text import StopMatcher


def feed_all(matcher: StopMatcher, pieces: list[str]) -> tuple[str, str | None]:
    out = ""
    for piece in pieces:
        safe, hit = matcher.feed(piece)
        out += safe
        if hit:
            return out, hit
    return out + matcher.flush(), None


def test_match_across_pieces_drops_the_sequence_and_after() -> None:
    assert feed_all(StopMatcher(["STOP"]), ["abc S", "TO", "P and more"]) == ("abc ", "STOP")


def test_false_start_is_released() -> None:
    matcher = StopMatcher(["STOP"])
    assert matcher.feed("abc ST") == ("abc ", None)
    assert matcher.feed("ART") == ("START", None)


def test_earliest_of_several_wins() -> None:
    assert feed_all(StopMatcher(["world", "lo w"]), ["hello world"]) == ("hel", "lo w")


def test_no_sequences_passes_through() -> None:
    assert feed_all(StopMatcher([]), ["a", "b"]) == ("ab", None)


def test_unmatched_tail_is_flushed() -> None:
    assert feed_all(StopMatcher(["STOP"]), ["the end ST"]) == ("the end ST", None)
