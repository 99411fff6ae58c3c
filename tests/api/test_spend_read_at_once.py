"""Spend read right after a request includes it: the server commits its journaled settlements about
0.25 s later, and a read of spend first commits this process's pending ones — the Admin API's
per-person spend (``spend_limits.effective``) and the console's Limits page (credit balance, spend)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from decimal import Decimal

import anthropic
import httpx
import pytest

from tests.api.admin_support import AdminServer, admin_server
from tests.console.support import login, post
from wisegate.domain.scope import Scope
from wisegate.settings import PriceConfig

# A cent per input token and two per output token: one request's cost shows in the Admin API's cents.
PRICES = {
    "scripted-*": PriceConfig(
        input="10000", output="20000", cache_write_5m="0", cache_write_1h="0", cache_read="0"
    )
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    yield from admin_server(tmp_path_factory.mktemp("spend-at-once"), prices=PRICES)


def _cost_cents(client: anthropic.Anthropic) -> int:
    """Make one request; its cost in cents at PRICES."""
    message = client.messages.create(
        model="scripted-1", max_tokens=5, messages=[{"role": "user", "content": "how much now"}]
    )
    return message.usage.input_tokens + 2 * message.usage.output_tokens


def test_a_persons_spend_includes_the_request_just_made(server: AdminServer) -> None:
    live = server.live
    scope = Scope(server.organization_id, None)

    async def person_with_key() -> tuple[str, str]:
        services = live.services
        invite = await services.people.create_invite(scope, "spender@example.com", "developer", [])
        _, user = await services.people.accept_invite(scope, invite.id, "Spender")
        workspace = await services.keys.default_workspace(server.organization_id)
        _, secret = await services.keys.create_key(workspace.id, "mine", created_by_user_id=user.id)
        return user.id, secret

    user_id, secret = live.run(person_with_key())
    client, org = server.client(secret), server.admin().organization
    total = 0
    for _ in range(3):  # read at once after each request, well within the journal's 0.25 s
        total += _cost_cents(client)
        rows = org.spend_limits.effective.list(user_ids=[user_id]).data
        assert [row.period_to_date_spend for row in rows] == [str(total)]


def _limits_page(console: httpx.Client) -> tuple[Decimal, Decimal]:
    """(credit balance, this month's spend) in cents, as the Limits page shows them."""
    page = console.get("/console/limits").text
    balance = re.search(r'id="credit-balance">\$([0-9.]+)<', page)
    spent = re.search(r"<dt>Spent in [^<]+</dt><dd>\$([0-9.]+) ", page)
    assert balance and spent, page[:2000]
    return Decimal(balance.group(1)) * 100, Decimal(spent.group(1)) * 100


def test_the_limits_page_includes_the_request_just_made(server: AdminServer) -> None:
    live = server.live
    workspace = live.run(live.services.keys.default_workspace(server.organization_id))
    client = server.client(server.new_key(workspace.id)[1])
    with closing(login(live, server.admin_key)) as console:
        # $1: too little for a lease of four worst cases, so each request holds its own worst case on
        # the balance, and only its settlement takes the cost instead.
        post(console, "/console/limits", "/console/limits/credits", {"usd": "1"})
        balance, spent = _limits_page(console)
        assert balance == 100
        for _ in range(3):
            cost = _cost_cents(client)
            balance, spent = balance - cost, spent + cost
            assert _limits_page(console) == (balance, spent)
