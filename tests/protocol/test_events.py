from __future__ import annotations

import json

from wisegate.protocol.events import (
    ContentBlockDelta,
    MessageDelta,
    MessageDeltaBody,
    MessageDeltaUsage,
    Ping,
    TextDelta,
    encode_sse,
)
from wisegate.protocol.messages import new_id


def test_sse_frame_has_event_line_and_one_data_line() -> None:
    frame = encode_sse(ContentBlockDelta(index=0, delta=TextDelta(text="a\nb")))
    event, data, blank, end = frame.decode().split("\n")
    assert event == "event: content_block_delta" and blank == "" and end == ""
    assert json.loads(data.removeprefix("data: ")) == {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "a\nb"},
    }


def test_message_delta_keeps_null_stop_sequence() -> None:
    frame = encode_sse(
        MessageDelta(delta=MessageDeltaBody(stop_reason="end_turn"), usage=MessageDeltaUsage(output_tokens=3))
    )
    data = json.loads(frame.decode().split("\n")[1].removeprefix("data: "))
    assert data["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert data["usage"]["output_tokens"] == 3


def test_ping() -> None:
    assert encode_sse(Ping()) == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_ids_look_like_anthropic_ids() -> None:
    ids = {new_id("msg") for _ in range(100)}
    assert len(ids) == 100
    assert all(i.startswith("msg_01") and len(i) == len("msg_") + 24 for i in ids)
