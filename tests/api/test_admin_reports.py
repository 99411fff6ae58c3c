"""The usage report and the cost report: buckets, group_by, filters, page tokens, exact costs, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.api.admin_support import AdminServer, admin_server

USAGE = "/v1/organizations/usage_report/messages"
COST = "/v1/organizations/cost_report"
DAY0 = datetime(2025, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("admin-reports"))


@pytest.fixture(scope="module")
def tenants(server: AdminServer) -> dict[str, str]:
    """Two workspaces with one key each, and usage on 2025-03-01..03 (see the comments for the sums)."""
    admin = server.admin()
    a = admin.organization.workspaces.create(name="Report A").id
    b = admin.organization.workspaces.create(name="Report B").id
    a_key, a_secret = server.new_key(a, "a")
    b_key, _ = server.new_key(b, "b")
    at = DAY0 + timedelta(hours=10, minutes=5, seconds=7)
    # day 1, 10:05: A sonnet standard; A sonnet batch; B haiku standard (cache write/read)
    server.record(at, workspace_id=a, api_key_id=a_key, input_tokens=1000, output_tokens=2000)
    server.record(
        at, workspace_id=a, api_key_id=a_key, input_tokens=1000, output_tokens=2000, service_tier="batch"
    )
    server.record(
        at + timedelta(minutes=1),
        workspace_id=b,
        api_key_id=b_key,
        model="claude-haiku-4-5",
        input_tokens=10,
        output_tokens=1,
        cache_write=100,
        cache_read=1000,
    )
    # day 2, 23:59:59: A long context (over 200k input tokens) on sonnet
    server.record(
        DAY0 + timedelta(days=1, hours=23, minutes=59, seconds=59),
        workspace_id=a,
        api_key_id=a_key,
        input_tokens=150_000,
        cache_read=60_000,
    )
    # day 3 00:00: B on the free scripted model
    server.record(
        DAY0 + timedelta(days=2),
        workspace_id=b,
        api_key_id=b_key,
        model="scripted-1",
        input_tokens=7,
        output_tokens=3,
    )
    return {"a": a, "b": b, "a_key": a_key, "b_key": b_key, "a_secret": a_secret}


def _get(server: AdminServer, path: str, key: str | None = None, **params: Any) -> dict[str, Any]:
    response = server.get(path, key, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _range(days: int = 3) -> dict[str, str]:
    return {"starting_at": "2025-03-01T00:00:00Z", "ending_at": (DAY0 + timedelta(days=days)).isoformat()}


def test_daily_totals(server: AdminServer, tenants: dict[str, str]) -> None:
    body = _get(server, USAGE, **_range())
    assert body["has_more"] is False and body["next_page"] is None
    assert [(b["starting_at"], b["ending_at"]) for b in body["data"]] == [
        ("2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z"),
        ("2025-03-02T00:00:00Z", "2025-03-03T00:00:00Z"),
        ("2025-03-03T00:00:00Z", "2025-03-04T00:00:00Z"),
    ]
    day1 = body["data"][0]["results"]
    assert day1 == [
        {
            "uncached_input_tokens": 2010,
            "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 100},
            "cache_read_input_tokens": 1000,
            "output_tokens": 4001,
            "server_tool_use": {"web_search_requests": 0},
            "api_key_id": None,
            "workspace_id": None,
            "model": None,
            "service_tier": None,
            "context_window": None,
            "inference_geo": None,
            "speed": None,
            "account_id": None,
            "service_account_id": None,
        }
    ]
    assert body["data"][1]["results"][0]["uncached_input_tokens"] == 150_000
    assert body["data"][2]["results"][0]["output_tokens"] == 3


def test_group_by_and_filters(server: AdminServer, tenants: dict[str, str]) -> None:
    body = _get(server, USAGE, **_range(1), **{"group_by[]": ["workspace_id", "model", "service_tier"]})
    rows = {(r["workspace_id"], r["model"], r["service_tier"]): r for r in body["data"][0]["results"]}
    assert set(rows) == {
        (tenants["a"], "claude-sonnet-4-5", "standard"),
        (tenants["a"], "claude-sonnet-4-5", "batch"),
        (tenants["b"], "claude-haiku-4-5", "standard"),
    }
    assert rows[(tenants["a"], "claude-sonnet-4-5", "batch")]["output_tokens"] == 2000
    assert all(r["api_key_id"] is None for r in rows.values())

    by_key = _get(server, USAGE, **_range(), group_by="api_key_id", **{"api_key_ids[]": tenants["b_key"]})
    assert [[r["api_key_id"] for r in b["results"]] for b in by_key["data"]] == [
        [tenants["b_key"]],
        [],
        [tenants["b_key"]],
    ]
    tiers = _get(server, USAGE, **_range(1), **{"service_tiers[]": "batch"})
    assert tiers["data"][0]["results"][0]["uncached_input_tokens"] == 1000
    models = _get(server, USAGE, **_range(), **{"models[]": ["scripted-1"]})
    assert [len(b["results"]) for b in models["data"]] == [0, 0, 1]
    window = _get(
        server, USAGE, **_range(), **{"group_by[]": "context_window", "context_window[]": "200k-1M"}
    )
    assert [[r["context_window"] for r in b["results"]] for b in window["data"]] == [[], ["200k-1M"], []]
    workspaces = _get(
        server, USAGE, **_range(), **{"workspace_ids[]": tenants["a"], "group_by[]": "workspace_id"}
    )
    assert {r["workspace_id"] for b in workspaces["data"] for r in b["results"]} == {tenants["a"]}


def test_hour_and_minute_buckets(server: AdminServer, tenants: dict[str, str]) -> None:
    hours = _get(server, USAGE, starting_at="2025-03-01T09:30:00Z", bucket_width="1h", limit=3)
    assert [b["starting_at"] for b in hours["data"]] == [
        "2025-03-01T09:00:00Z",  # snapped to the hour
        "2025-03-01T10:00:00Z",
        "2025-03-01T11:00:00Z",
    ]
    assert [len(b["results"]) for b in hours["data"]] == [0, 1, 0]
    assert hours["has_more"] is True and hours["next_page"].startswith("page_")
    minutes = _get(
        server,
        USAGE,
        starting_at="2025-03-01T10:04:00Z",
        ending_at="2025-03-01T10:08:00Z",
        bucket_width="1m",
        group_by="model",
    )
    assert [[r["model"] for r in b["results"]] for b in minutes["data"]] == [
        [],
        ["claude-sonnet-4-5"],
        ["claude-haiku-4-5"],
        [],
    ]
    assert minutes["has_more"] is False


def test_page_tokens_walk_the_range(server: AdminServer, tenants: dict[str, str]) -> None:
    params = {"starting_at": "2025-02-27T00:00:00Z", "ending_at": "2025-03-06T00:00:00Z", "limit": 2}
    starts, outputs, page = [], 0, None
    while True:
        body = _get(server, USAGE, **params, **({"page": page} if page else {}))
        starts += [b["starting_at"][:10] for b in body["data"]]
        outputs += sum(r["output_tokens"] for b in body["data"] for r in b["results"])
        page = body["next_page"]
        assert body["has_more"] is (page is not None)
        if page is None:
            break
    assert starts == [
        f"2025-0{m}-{d:02d}" for m, d in [(2, 27), (2, 28), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5)]
    ]
    assert outputs == 4001 + 3


def test_cost_report_is_exact(server: AdminServer, tenants: dict[str, str]) -> None:
    # Sonnet 4.5: $3 in / $15 out per MTok; Haiku 4.5: $1 in, $5 out, $1.25 5m write, $0.10 read.
    # Day 1, A standard: 1000 in = 0.3 ¢, 2000 out = 3 ¢; A batch: half, 1.65 ¢.
    # Day 1, B: 10 in = 0.001 ¢, 1 out = 0.0005 ¢, 100 written = 0.0125 ¢, 1000 read = 0.01 ¢.
    body = _get(server, COST, **_range(), group_by="workspace_id")
    day1 = {r["workspace_id"]: r["amount"] for r in body["data"][0]["results"]}
    assert day1 == {tenants["a"]: "4.95", tenants["b"]: "0.024"}
    assert all(r["currency"] == "USD" and r["description"] is None for r in body["data"][0]["results"])
    # Day 2: 150000 in = 45 ¢, 60000 read at $0.30 = 1.8 ¢; day 3 is the free scripted model.
    assert [r["amount"] for r in body["data"][1]["results"]] == ["46.8"]
    assert [r["amount"] for r in body["data"][2]["results"]] == ["0"]

    total = _get(server, COST, **_range(1))
    assert [r["amount"] for r in total["data"][0]["results"]] == ["4.974"]

    lines = _get(server, COST, **_range(1), **{"group_by[]": ["description", "workspace_id"]})
    items = {
        (r["workspace_id"], r["model"], r["service_tier"], r["token_type"]): r
        for r in lines["data"][0]["results"]
    }
    batch_out = items[(tenants["a"], "claude-sonnet-4-5", "batch", "output_tokens")]
    assert batch_out["amount"] == "1.5" and batch_out["cost_type"] == "tokens"
    assert batch_out["description"] == "claude-sonnet-4-5 Usage - Output Tokens (Batch)"
    assert batch_out["context_window"] == "0-200k"
    assert (
        items[(tenants["b"], "claude-haiku-4-5", "standard", "cache_creation.ephemeral_5m_input_tokens")][
            "amount"
        ]
        == "0.0125"
    )
    assert (
        items[(tenants["b"], "claude-haiku-4-5", "standard", "cache_read_input_tokens")]["amount"] == "0.01"
    )
    assert sum(float(r["amount"]) for r in lines["data"][0]["results"]) == pytest.approx(4.974)


def test_cost_report_pages(server: AdminServer, tenants: dict[str, str]) -> None:
    first = _get(server, COST, **_range(), limit=2)
    assert len(first["data"]) == 2 and first["has_more"] is True
    second = _get(server, COST, **_range(), limit=2, page=first["next_page"])
    assert [b["starting_at"] for b in second["data"]] == ["2025-03-03T00:00:00Z"]
    assert second["has_more"] is False and second["next_page"] is None


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (USAGE, {}, "starting_at: Field required"),
        (USAGE, {"starting_at": "yesterday"}, "starting_at:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "bucket_width": "1w"}, "bucket_width:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "bucket_width": "1d", "limit": 32}, "limit:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "bucket_width": "1h", "limit": 169}, "limit:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "group_by[]": "colour"}, "group_by:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "service_tiers[]": "gold"}, "service_tiers:"),
        (USAGE, {"starting_at": "2025-03-02T00:00:00Z", "ending_at": "2025-03-01T00:00:00Z"}, "ending_at:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "page": "page_garbage"}, "page:"),
        (USAGE, {"starting_at": "2025-03-01T00:00:00Z", "page": "nonsense"}, "page:"),
        (COST, {"starting_at": "2025-03-01T00:00:00Z", "bucket_width": "1h"}, "bucket_width:"),
        (COST, {"starting_at": "2025-03-01T00:00:00Z", "group_by[]": "model"}, "group_by:"),
        (COST, {"starting_at": "2025-03-01T00:00:00Z", "limit": 32}, "limit:"),
    ],
)
def test_bad_parameters_are_400(server: AdminServer, path: str, params: dict[str, Any], message: str) -> None:
    response = server.get(path, **params)
    body = response.json()
    assert response.status_code == 400 and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith(message), body


def test_a_real_request_shows_up_today(server: AdminServer) -> None:
    client = server.client(server.live.key)
    client.messages.create(
        model="scripted-2", max_tokens=20, messages=[{"role": "user", "content": "one two three"}]
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    body = _get(server, USAGE, starting_at=today.isoformat(), group_by="model", **{"models[]": "scripted-2"})
    results = body["data"][0]["results"]
    assert [r["model"] for r in results] == ["scripted-2"] and results[0]["output_tokens"] > 0
