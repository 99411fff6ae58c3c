"""Rate limits, spend caps and credits end to end: the official SDK against a real server (scripted
backend: one token per word), on the in-process and the Redis store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import SCRIPTED_MODEL, LiveServer, make_key, postgres_database, scripted_settings, serve
from wisegate.backends.scripted import ScriptedBackend
from wisegate.settings import PriceConfig
from wisegate.settings.tiers import LimitsConfig, RateLimits, TierConfig
from wisegate.storage.repos import TenancyRepo

REDIS_URL = "redis://127.0.0.1:6379/0"
USER = [{"role": "user", "content": "one two three"}]
# Input $1/MTok (1e6 picodollars a token), output $2/MTok; the dearest input-side price is the 1h write.
PRICES = {
    "scripted-*": PriceConfig(
        input="1", output="2", cache_write_5m="1.25", cache_write_1h="2", cache_read="0.1"
    )
}
IN, OUT, WORST_IN = 1_000_000, 2_000_000, 2_000_000


def limits(
    rpm: int = 1000, itpm: int = 1_000_000, otpm: int = 100_000, cap: str | None = None, count_rpm: int = 1000
) -> LimitsConfig:
    return LimitsConfig(
        model_classes={"scripted": ["scripted-*"]},
        tiers=[
            TierConfig(
                name="test-tier",
                monthly_spend_cap_usd=cap,
                count_tokens_rpm=count_rpm,
                rate_limits={"scripted": RateLimits(rpm=rpm, itpm=itpm, otpm=otpm)},
            )
        ],
        cache_seconds=0,
    )


@contextlib.contextmanager
def limited_server(
    tmp_path: Path, store: str, config: LimitsConfig, **overrides: Any
) -> Iterator[LiveServer]:
    if store == "redis":
        overrides.update(redis_url=REDIS_URL, redis_prefix=f"wgtest-{uuid.uuid4().hex[:12]}")
    settings = scripted_settings(tmp_path, limits=config, **overrides)
    servers = serve(settings, backends={"scripted": ScriptedBackend()})
    live = next(servers)
    try:
        yield live
    finally:
        servers.close()


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def post(
    live: LiveServer, body: dict[str, Any], path: str = "/v1/messages", key: str | None = None
) -> httpx.Response:
    return httpx.post(live.base_url + path, json=body, headers={"x-api-key": key or live.key}, timeout=30)


def body(**overrides: Any) -> dict[str, Any]:
    return {"model": SCRIPTED_MODEL, "max_tokens": 16, "messages": USER, **overrides}


def test_headers_on_json_sse_and_count_tokens(tmp_path: Path, store: str) -> None:
    with limited_server(tmp_path, store, limits(rpm=50, itpm=30_000, otpm=8_000)) as live:
        raw = live.client().messages.with_raw_response.create(
            model=SCRIPTED_MODEL, max_tokens=2000, messages=USER
        )
        h = raw.headers
        assert h["anthropic-ratelimit-requests-limit"] == "50"
        assert h["anthropic-ratelimit-requests-remaining"] == "49"
        assert h["anthropic-ratelimit-input-tokens-limit"] == "30000"
        assert h["anthropic-ratelimit-input-tokens-remaining"] == "30000"  # 29,997 to the nearest thousand
        assert h["anthropic-ratelimit-output-tokens-limit"] == "8000"
        assert h["anthropic-ratelimit-output-tokens-remaining"] == "6000"  # 2,000 reserved from max_tokens
        assert h["anthropic-ratelimit-tokens-remaining"] == "6000"  # the more restrictive of the two
        reset = datetime.strptime(h["anthropic-ratelimit-output-tokens-reset"], "%Y-%m-%dT%H:%M:%SZ")
        # 2,000 of 8,000 tokens/min take 15 s to come back.
        ahead = reset.replace(tzinfo=UTC) - datetime.now(UTC)
        assert 5 < ahead.total_seconds() <= 16
        assert raw.parse().content[0].text == "one two three"  # type: ignore[union-attr]

        with live.client().messages.with_streaming_response.create(
            model=SCRIPTED_MODEL, max_tokens=1000, messages=USER, stream=True
        ) as response:
            assert response.headers["anthropic-ratelimit-requests-remaining"] == "48"
            # The first request's unused 1,997 tokens came back: 8,000 - 3 - 1,000 reserved now.
            assert response.headers["anthropic-ratelimit-output-tokens-remaining"] == "7000"
            assert "message_stop" in "".join(response.iter_text())

        counted = post(live, {"model": SCRIPTED_MODEL, "messages": USER}, "/v1/messages/count_tokens")
        assert counted.json() == {"input_tokens": 3}
        assert counted.headers["anthropic-ratelimit-requests-limit"] == "1000"


def test_rpm_limit_answers_429_naming_it_with_retry_after(tmp_path: Path, store: str) -> None:
    with limited_server(tmp_path, store, limits(rpm=3)) as live:
        for _ in range(3):
            assert post(live, body()).status_code == 200
        refused = post(live, body())
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["type"] == "rate_limit_error"
        assert "3 requests per minute" in error["message"] and "organization" in error["message"]
        # One request refills in 20 s at 3/min.
        assert 1 <= int(refused.headers["retry-after"]) <= 20
        assert refused.headers["anthropic-ratelimit-requests-remaining"] == "0"
        assert refused.json()["request_id"] == refused.headers["request-id"]
        with pytest.raises(anthropic.RateLimitError):
            live.client().messages.create(model=SCRIPTED_MODEL, max_tokens=16, messages=USER)
        record = live.run(live.services.usage.for_request(refused.headers["request-id"]))
        assert record.error_type == "rate_limit_error" and live.backend.calls.__len__() == 3


def test_output_reservation_and_input_limit(tmp_path: Path, store: str) -> None:
    with limited_server(tmp_path, store, limits(itpm=10, otpm=100)) as live:
        too_many = post(live, body(max_tokens=101))
        assert too_many.status_code == 429
        assert "100 output tokens per minute" in too_many.json()["error"]["message"]
        assert "it needs 101" in too_many.json()["error"]["message"]
        # 60 reserved, 3 used: 57 come back when the response ends, so a second 60 fits at once.
        for _ in range(3):
            assert post(live, body(max_tokens=60)).status_code == 200
        long_prompt = [{"role": "user", "content": "w " * 11}]
        refused = post(live, body(messages=long_prompt, max_tokens=1))
        assert (
            refused.status_code == 429 and "10 input tokens per minute" in refused.json()["error"]["message"]
        )
        assert len(live.backend.calls) == 3  # refused requests never reach the backend


def test_count_tokens_has_its_own_rpm(tmp_path: Path) -> None:
    with limited_server(tmp_path, "memory", limits(count_rpm=2)) as live:
        count = {"model": SCRIPTED_MODEL, "messages": USER}
        assert post(live, count, "/v1/messages/count_tokens").status_code == 200
        assert post(live, count, "/v1/messages/count_tokens").status_code == 200
        refused = post(live, count, "/v1/messages/count_tokens")
        assert refused.status_code == 429 and "retry-after" in refused.headers
        assert post(live, body()).status_code == 200  # Messages are unaffected


def test_workspace_rate_limit_is_lower_than_the_organization(tmp_path: Path) -> None:
    with limited_server(tmp_path, "memory", limits(rpm=100)) as live:
        services = live.services
        org = services.organization_id

        async def setup() -> str:
            ws = await services.keys.create_workspace(org, "small")
            await services.limits.billing.set_workspace_limits(
                ws.id, org, None, {"scripted": {"rpm": 2, "itpm": 1000, "otpm": 1000}}
            )
            return ws.id

        ws_id = live.run(setup())
        key = make_key(live.settings, workspace=ws_id)
        assert post(live, body(), key=key).status_code == 200
        ok = post(live, body(), key=key)
        assert ok.headers["anthropic-ratelimit-requests-limit"] == "2"  # the most restrictive limit
        refused = post(live, body(), key=key)
        assert refused.status_code == 429 and f"workspace ({ws_id})" in refused.json()["error"]["message"]
        assert post(live, body()).status_code == 200  # the default workspace still has room


# ---- spend ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "sqlite":
        yield {}
        return
    with postgres_database() as url:
        yield {"database_url": url}


COST = 3 * IN + 3 * OUT  # "one two three" echoed: 3 in, 3 out
WORST = 3 * WORST_IN + 5 * OUT  # max_tokens 5


def _ledger(live: LiveServer) -> list[Any]:
    return list(live.run(live.services.usage.recent(limit=10_000)))


def _concurrent(live: LiveServer, n: int, max_tokens: int = 5) -> list[int | str]:
    async def one(client: anthropic.AsyncAnthropic) -> int | str:
        try:
            await client.messages.create(model=SCRIPTED_MODEL, max_tokens=max_tokens, messages=USER)  # type: ignore[arg-type]
            return 200
        except anthropic.APIStatusError as exc:
            return f"{exc.status_code} {exc.body['error']['message']}"  # type: ignore[index,call-overload]

    async def run() -> list[int | str]:
        client = anthropic.AsyncAnthropic(
            base_url=live.base_url, api_key=live.key, max_retries=0, timeout=120
        )
        async with client:
            return await asyncio.gather(*(one(client) for _ in range(n)))

    return asyncio.run(run())


@pytest.mark.parametrize("limit", ["credit", "tier-cap", "organization", "workspace"])
def test_200_concurrent_requests_never_spend_past_a_nearly_exhausted_limit(
    tmp_path: Path, database: dict[str, str], limit: str
) -> None:
    before = 4  # requests served before the limit is nearly exhausted
    room = before * COST + 10 * COST + COST // 2  # room for 10 more requests and a half
    cap = f"{room / 10**12:.12f}" if limit == "tier-cap" else None
    with limited_server(tmp_path, "memory", limits(cap=cap), prices=PRICES, **database) as live:
        services, org = live.services, live.services.organization_id
        ws = live.run(TenancyRepo(services.db).list_workspaces(org))[0].id
        if limit == "credit":
            live.run(services.limits.billing.add_credits(org, room, "top-up"))
        for _ in range(before):
            assert post(live, body(max_tokens=5)).status_code == 200
        if limit == "organization":
            live.run(services.limits.billing.set_account(org, spend_limit_pico=room))
        if limit == "workspace":
            live.run(services.limits.billing.set_workspace_limits(ws, org, room, None))

        results = _concurrent(live, 200)

        served = results.count(200)
        refused = [r for r in results if r != 200]
        month = datetime.now(UTC).strftime("%Y-%m")
        spent, reserved = live.run(services.limits.billing.period_spend(org, month))
        ledger = _ledger(live)
        assert reserved == 0
        assert spent <= room  # never past the limit
        assert spent == sum(r.cost_picousd for r in ledger) == (before + served) * COST
        assert served >= 1 and len(refused) >= 200 - 10
        expected = {
            "credit": "400 Your credit balance is too low",
            "tier-cap": "429 You have reached your API usage limits",
            "organization": "400 You have reached your specified API usage limits",
            "workspace": "400 You have reached your specified workspace API usage limits",
        }[limit]
        assert all(str(r).startswith(expected) for r in refused), refused[:3]
        if limit == "credit":
            account = live.run(services.limits.billing.account(org))
            assert account.credit_balance_pico == room - spent >= 0
            assert account.credits_purchased_pico == room
        assert len(ledger) == before + 200


def test_tier_cap_429_has_error_code_and_no_retry_after(tmp_path: Path) -> None:
    with limited_server(tmp_path, "memory", limits(cap="0.00001"), prices=PRICES) as live:
        refused = post(live, body(max_tokens=5))
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["details"] == {"error_code": "enforced_spend_limit_reached"}
        assert "regain access on" in error["message"] and "test-tier" in error["message"]
        assert "retry-after" not in refused.headers and refused.headers["x-should-retry"] == "false"


def test_ledger_rows_carry_cost_and_batch_flag(tmp_path: Path) -> None:
    from wisegate.domain.keys import Principal
    from wisegate.protocol.messages import MessagesRequest

    with limited_server(tmp_path, "memory", limits(), prices=PRICES) as live:
        response = post(live, body(max_tokens=5))
        row = live.run(live.services.usage.for_request(response.headers["request-id"]))
        assert (row.cost_picousd, row.batch, row.service_tier) == (COST, False, "standard")

        async def batch() -> Any:
            keys = await TenancyRepo(live.services.db).list_keys(live.services.organization_id)
            request = MessagesRequest.model_validate(body(max_tokens=5))
            messages = live.services.messages
            call = await messages.call(Principal(keys[0]), request, "req_batch_1", streamed=False, batch=True)
            await messages.create(call)
            return await live.services.usage.for_request("req_batch_1")

        row = live.run(batch())
        assert (row.cost_picousd, row.batch, row.service_tier) == (COST // 2, True, "batch")


def test_redis_down_fails_closed_with_529_and_recovers(tmp_path: Path) -> None:
    """Redis stops answering at runtime: 529 without its address, then admitted again once it is back."""
    from tests.conftest import free_port

    port = free_port()
    command = [
        "redis-server",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]

    def start_redis() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while (
            subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip()
            != b"PONG"
        ):
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return proc

    redis = start_redis()
    try:
        with limited_server(tmp_path, "memory", limits(), redis_url=f"redis://127.0.0.1:{port}/0") as live:
            assert post(live, body()).status_code == 200
            redis.kill()
            redis.wait(10)
            response = post(live, body())
            assert response.status_code == 529, response.text
            error = response.json()["error"]
            assert error["type"] == "overloaded_error"
            assert error["message"] == "The rate limiter is unavailable; try again shortly."
            assert "127.0.0.1" not in response.text and str(port) not in response.text
            assert response.headers["retry-after"] == "1"
            calls = len(live.backend.calls)
            redis = start_redis()
            assert post(live, body()).status_code == 200
            assert len(live.backend.calls) == calls + 1
    finally:
        redis.kill()
        redis.wait(10)
