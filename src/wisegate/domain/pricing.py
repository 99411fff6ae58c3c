"""Prices per model and the exact cost of a request, in integer picodollars (1e-12 USD).

Prices are configured in USD per million tokens (decimal strings). One token at ``$r``/MTok costs
``r`` microdollars = ``r * 1e6`` picodollars, so every price with up to six decimals gives an exact
integer cost, and the batch discount (50 %) stays exact too. Never floats.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from decimal import Decimal

from wisegate.protocol.bounds import MAX_AMOUNT_PICO, MAX_AMOUNT_USD, PICO_PER_USD, echo
from wisegate.protocol.messages import Usage
from wisegate.settings import PriceConfig


@dataclass(frozen=True, slots=True)
class Price:
    """Picodollars per token for each kind of token."""

    input: int
    output: int
    cache_write_5m: int
    cache_write_1h: int
    cache_read: int

    @classmethod
    def from_config(cls, config: PriceConfig) -> Price:
        def per_token(usd_per_mtok: str) -> int:
            value = Decimal(usd_per_mtok) * 10**6
            if value != value.to_integral_value():
                raise ValueError(f"price {usd_per_mtok} has more than six decimals")
            return int(value)

        return cls(
            per_token(config.input),
            per_token(config.output),
            per_token(config.cache_write_5m),
            per_token(config.cache_write_1h),
            per_token(config.cache_read),
        )


class PriceTable:
    """Looks up a model's price by exact id, then by the first matching glob pattern."""

    def __init__(self, prices: dict[str, PriceConfig], container_hour: str = "0") -> None:
        self._container_hour_pico = int(Decimal(container_hour) * PICO_PER_USD)
        self._exact = {k: Price.from_config(v) for k, v in prices.items() if not _is_glob(k)}
        self._globs = [(k, Price.from_config(v)) for k, v in prices.items() if _is_glob(k)]
        self._matched: dict[str, Price] = {}  # a model's price found by the patterns, looked up once

    def price(self, model: str) -> Price:
        found = self._exact.get(model)
        if found is not None:
            return found
        found = self._matched.get(model)
        if found is None:
            found = next((p for pattern, p in self._globs if fnmatch.fnmatchcase(model, pattern)), None)
            if found is None:  # not cached: a refused request may name any model
                return Price(0, 0, 0, 0, 0)
            if len(self._matched) < 4096:
                self._matched[model] = found
        return found

    def cost(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """The picodollar cost of ``usage`` on ``model`` (half for batch requests)."""
        p = self.price(model)
        split = usage.cache_creation
        written_1h = split.ephemeral_1h_input_tokens
        written_5m = usage.cache_creation_input_tokens - written_1h
        total = (
            usage.input_tokens * p.input
            + usage.output_tokens * p.output
            + written_5m * p.cache_write_5m
            + written_1h * p.cache_write_1h
            + usage.cache_read_input_tokens * p.cache_read
        )
        total = total // 2 if batch else total
        return total + self.container_cost(usage.container_ms)

    def container_cost(self, container_ms: int) -> int:
        """The picodollar cost of ``container_ms`` of code execution container time."""
        return container_ms * self._container_hour_pico // 3_600_000

    def max_cost(self, model: str, input_tokens: int, max_tokens: int, *, batch: bool = False) -> int:
        """The most a request can cost before it runs: its input (uncached) and all of ``max_tokens``."""
        return self.cost(model, Usage(input_tokens=input_tokens, output_tokens=max_tokens), batch=batch)


def _is_glob(key: str) -> bool:
    return any(c in key for c in "*?[")


def format_usd(picodollars: int) -> str:
    """``"$1.234567"``: dollars with six decimals (rounded toward zero), for people, never for sums."""
    return f"${Decimal(picodollars) / PICO_PER_USD:.6f}"


def format_amount(picodollars: int | None) -> str:
    """A limit, balance or spend for people: ``format_usd``, or ``"none"`` when unset."""
    return "none" if picodollars is None else format_usd(picodollars)


_AMOUNT = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def parse_usd(text: str) -> int:
    """An amount typed by a person (``25``, ``0.50``) in picodollars, exactly; ``ValueError`` says what
    is wrong with it. Only ASCII digits with an optional sign and decimal point: ``Decimal`` alone would
    also take ``1_000``, ``1e3``, ``Infinity`` and other scripts' digits (``"٢٥"``)."""
    if not _AMOUNT.fullmatch(text):
        raise ValueError(f"'{echo(text)}' is not an amount in USD (e.g. 25 or 0.50)")
    value = Decimal(text) * PICO_PER_USD
    if abs(value) > MAX_AMOUNT_PICO:
        raise ValueError(
            f"'{echo(text)}' is out of range: an amount may be at most ${MAX_AMOUNT_USD:,} (either sign)"
        )
    if value != value.to_integral_value():
        raise ValueError(f"'{echo(text)}' has more than 12 decimals")
    return int(value)
