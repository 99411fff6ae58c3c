"""Model resolution: exact ids and aliases first, then alias patterns in configuration order."""

from __future__ import annotations

import pytest

from wisegate.backends.registry import BackendRegistry
from wisegate.backends.scripted import ScriptedBackend
from wisegate.errors import NotFound
from wisegate.settings import BackendConfig, ModelConfig


def registry() -> BackendRegistry:
    return BackendRegistry(
        {"s": BackendConfig(type="scripted")},
        [
            ModelConfig(id="small", backend="s", aliases=["claude-*-haiku*", "claude-haiku-*"]),
            ModelConfig(id="big", backend="s", aliases=["claude-*", "claude-haiku-4-5"]),
        ],
        {"s": ScriptedBackend()},
    )


def test_exact_aliases_win_over_patterns() -> None:
    assert registry().resolve("claude-haiku-4-5").config.id == "big"
    assert registry().resolve("small").config.id == "small"


def test_patterns_in_configuration_order() -> None:
    reg = registry()
    assert reg.resolve("claude-haiku-5-5").config.id == "small"
    assert reg.resolve("claude-3-5-haiku-20241022").config.id == "small"
    assert reg.resolve("claude-opus-5-5").config.id == "big"
    assert reg.resolve("claude-sonnet-4-5-20250929").route.public_id == "big"


def test_patterns_are_case_sensitive_and_anchored() -> None:
    reg = registry()
    for model in ("Claude-opus-5-5", "my-claude-opus", "gpt-5"):
        with pytest.raises(NotFound, match=f"model: {model}"):
            reg.resolve(model)
