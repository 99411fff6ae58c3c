"""A small batch on the embedded model through the SDK: answered like /v1/messages, billed as batch."""

from __future__ import annotations

import time

from tests.conftest import EMBEDDED_MODEL, LiveServer


def test_small_batch_on_the_embedded_model(embedded_server: LiveServer) -> None:
    client = embedded_server.client(timeout=120)
    params = {
        "model": EMBEDDED_MODEL,
        "max_tokens": 12,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Name a colour."}],
    }
    batch = client.messages.batches.create(
        requests=[{"custom_id": "colour", "params": params}, {"custom_id": "colour-again", "params": params}]  # type: ignore[list-item,typeddict-item]
    )
    deadline = time.monotonic() + 120
    while (current := client.messages.batches.retrieve(batch.id)).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert current.request_counts.succeeded == 2
    assert any(b.id == batch.id for b in client.messages.batches.list())
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    direct = client.messages.create(
        model=EMBEDDED_MODEL,
        max_tokens=12,
        messages=[{"role": "user", "content": "Name a colour."}],
        extra_body={"temperature": 0},
    )
    for custom_id in ("colour", "colour-again"):
        result = results[custom_id]
        assert result.type == "succeeded"
        assert result.message.model == EMBEDDED_MODEL
        assert result.message.content[0].text.strip()  # type: ignore[union-attr]
        assert result.message.stop_reason in ("end_turn", "max_tokens")
        assert result.message.usage.service_tier == "batch"
        assert result.message.usage.input_tokens == direct.usage.input_tokens
    assert client.messages.batches.delete(batch.id).type == "message_batch_deleted"
