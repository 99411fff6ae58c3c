"""The SDK 2.10 beta fields (compaction, fallbacks, block binding, billing policy, fallback credit
tokens) go up to an Anthropic upstream byte for byte, and its compaction and fallback answers come back
unchanged (fake upstream on a real port)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backends.fakes import FakeUpstream, run_fake
from tests.conftest import LiveServer, serve, settings_for
from wisegate.settings import BackendConfig, ModelConfig

MODEL = "claude-haiku-4-5"  # served under its upstream id: the client's bytes go up as sent
BETAS = "compact-2026-01-12,server-side-fallback-2026-07-01,fallback-credit-2026-07-01"

COMPACTION_SSE = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_01C","type":"message",'
    b'"role":"assistant","content":[],"model":"claude-haiku-4-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":30,"output_tokens":1}}}\n\n'
    b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":'
    b'{"type":"compaction","content":null,"encrypted_content":null}}\n\n'
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":'
    b'{"type":"compaction_delta","content":"Earlier conversation summarized.",'
    b'"encrypted_content":"EpwB"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"compaction",'
    b'"stop_sequence":null},"usage":{"output_tokens":8}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)
FALLBACK_JSON = (
    b'{"id":"msg_01F","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":['
    b'{"type":"fallback","from":{"model":"claude-haiku-4-5"},"to":{"model":"claude-sonnet-4-5"},'
    b'"trigger":{"type":"refusal","category":null}},{"type":"text","text":"Hello there!"}],'
    b'"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":8,'
    b'"iterations":[{"type":"message","model":"claude-haiku-4-5","input_tokens":12,"output_tokens":3,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0},{"type":"fallback_message",'
    b'"model":"claude-sonnet-4-5","input_tokens":13,"output_tokens":5,"cache_creation_input_tokens":0,'
    b'"cache_read_input_tokens":0}]}}'
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    yield from run_fake(FakeUpstream())


@pytest.fixture(scope="module")
def server(fake: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir: Path = tmp_path_factory.mktemp("upstream-fields")
    options = {"base_url": fake.base_url, "api_key": "sk-ant-operator-0002"}
    settings = settings_for(
        data_dir,
        backends={"up": BackendConfig(type="anthropic", options=options)},
        models=[ModelConfig(id=MODEL, backend="up")],
    )
    yield from serve(settings)


@pytest.fixture(autouse=True)
def _reset(fake: FakeUpstream) -> None:
    fake.reset()


def send(server: LiveServer, raw: bytes, path: str = "/v1/messages") -> httpx.Response:
    headers = {"x-api-key": server.key, "content-type": "application/json", "anthropic-beta": BETAS}
    return httpx.post(server.base_url + path, content=raw, headers=headers, timeout=30)


def test_every_beta_field_goes_up_as_sent(server: LiveServer, fake: FakeUpstream) -> None:
    fake.answer(body=FALLBACK_JSON)
    raw = (
        b'{"model": "claude-haiku-4-5", "max_tokens": 64,\n "messages": [{"role": "assistant", "content": '
        b'[{"type": "compaction", "content": "Summary.", "encrypted_content": "EpwB", "signature": "sig"},'
        b' {"type": "fallback", "from": {"model": "a"}, "to": {"model": "b"}, "trigger": null}]},'
        b' {"role": "user", "content": "Hi"}],'
        b' "thinking": {"type": "adaptive", "block_binding": {"prefix_mismatch_behavior": "drop_block"}},'
        b' "fallbacks": [{"model": "claude-sonnet-4-5", "max_tokens": 32, "speed": null}],'
        b' "billing_policy": {"type": "billing_policy", "bill_to": "self"},'
        b' "output_config": {"task_budget": {"type": "tokens", "total": 2048}}}'
    )
    answer = send(server, raw)
    assert answer.status_code == 200, answer.text
    assert answer.content == FALLBACK_JSON
    assert fake.seen[0].body == raw
    assert fake.seen[0].headers["anthropic-beta"] == BETAS


def test_a_fallback_credit_token_goes_up_for_the_upstream_to_redeem(
    server: LiveServer, fake: FakeUpstream
) -> None:
    fake.answer(body=FALLBACK_JSON)
    raw = (
        b'{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"Hi"}],'
        b'"fallback_credit_token":{"token":"fct_minted_upstream","mode":"strict"}}'
    )
    assert send(server, raw).status_code == 200
    assert fake.seen[0].body == raw


def test_compaction_streams_back_unchanged_and_count_tokens_goes_up(
    server: LiveServer, fake: FakeUpstream
) -> None:
    fake.sse(COMPACTION_SSE)
    raw = (
        b'{"model":"claude-haiku-4-5","max_tokens":100,"stream":true,'
        b'"messages":[{"role":"user","content":"Long chat"}],'
        b'"compaction":{"type":"summarize","instructions":"Keep names."}}'
    )
    answer = send(server, raw)
    assert answer.status_code == 200
    assert answer.content == COMPACTION_SSE
    assert fake.seen[0].body == raw
    fake.answer(body=b'{"input_tokens": 11}')
    counted = (
        b'{"model":"claude-haiku-4-5","messages":[{"role":"user","content":"x"}],'
        b'"compaction":{"type":"summarize"}}'
    )
    answer = send(server, counted, "/v1/messages/count_tokens")
    assert json.loads(answer.content) == {"input_tokens": 11}
    assert fake.seen[1].body == counted


def test_billing_another_party_is_refused_before_going_up(server: LiveServer, fake: FakeUpstream) -> None:
    raw = (
        b'{"model":"claude-haiku-4-5","max_tokens":8,"messages":[{"role":"user","content":"Hi"}],'
        b'"billing_policy":{"type":"billing_policy","bill_to":"user_profile"}}'
    )
    answer = send(server, raw)
    assert answer.status_code == 400
    assert "user_profile" in answer.json()["error"]["message"]
    assert fake.seen == []
