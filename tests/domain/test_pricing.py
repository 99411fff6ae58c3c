from __future__ import annotations

from wisegate.domain.pricing import PriceTable, format_usd
from wisegate.protocol.messages import CacheCreation, Usage
from wisegate.settings import Settings


def table() -> PriceTable:
    return PriceTable(Settings().prices)


def test_sonnet_cost_is_exact() -> None:
    usage = Usage(
        input_tokens=1000,
        output_tokens=500,
        cache_creation_input_tokens=300,
        cache_read_input_tokens=2000,
        cache_creation=CacheCreation(ephemeral_1h_input_tokens=100),
    )
    # $3 in, $15 out, $3.75 5m write (200), $6 1h write (100), $0.30 read — per MTok.
    expected_usd_e12 = (1000 * 3 + 500 * 15) * 10**6 + 200 * 3_750_000 + 100 * 6_000_000 + 2000 * 300_000
    assert table().cost("claude-sonnet-4-5-20250929", usage) == expected_usd_e12
    assert table().cost("claude-sonnet-4-5-20250929", usage, batch=True) * 2 == expected_usd_e12


def test_fractional_prices_stay_integers_and_batch_halves_exactly() -> None:
    usage = Usage(input_tokens=1, output_tokens=1, cache_creation_input_tokens=1)
    cost = table().cost("claude-haiku-5-5", usage)
    assert cost == 100_000 + 500_000 + 125_000
    assert table().cost("claude-haiku-5-5", usage, batch=True) * 2 == cost


def test_globs_and_unknown_models() -> None:
    assert table().price("claude-opus-4-1-20250805").input == 15_000_000
    assert table().price("claude-opus-4-7").input == 5_000_000
    assert table().price("smollm2-135m-instruct").input == 0
    assert format_usd(1_234_567_000_000) == "$1.234567"
