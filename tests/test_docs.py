"""The README documents every setting and every CLI command."""

from __future__ import annotations

from pathlib import Path

import click

from wisegate.cli import main
from wisegate.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"WISEGATE_{name.upper()}" in README, name


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    names = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            names += _commands(command, f"{prefix}{name} ")
        else:
            names.append(f"{prefix}{name}")
    return names


def test_every_cli_command_is_documented() -> None:
    commands = _commands(main)
    assert "serve" in commands and "keys create" in commands
    for command in commands:
        assert f"wisegate {command}" in README, command
