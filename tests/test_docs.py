"""The docs describe what exists: every setting, every CLI command; the README stays a quickstart."""

from __future__ import annotations

import re
from pathlib import Path

import click

from wisegate.cli import main
from wisegate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIGURATION = (DOCS / "configuration.md").read_text()
ALL_DOCS = "\n".join(page.read_text() for page in sorted(DOCS.glob("*.md")))


def test_every_setting_is_documented_in_the_configuration_page() -> None:
    for name in Settings.model_fields:
        assert f"| `WISEGATE_{name.upper()}` |" in CONFIGURATION, name


def test_the_configuration_page_names_only_real_settings() -> None:
    documented = set(re.findall(r"^\| `WISEGATE_([A-Z0-9_]+)` \|", CONFIGURATION, re.MULTILINE))
    real = {name.upper() for name in Settings.model_fields} | {"CONFIG"}
    assert documented - real == set()


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
        assert f"wisegate {command}" in ALL_DOCS, command


def test_readme_is_a_quickstart_with_working_links() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.encode()) <= 10 * 1024
    for target in re.findall(r"\]\(([^)#]+\.md)\)", readme):
        assert (ROOT / target).is_file(), target
