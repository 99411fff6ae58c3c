"""``wisegate backends list``."""

from __future__ import annotations

import click

from wisegate.cli.services import load_settings


@click.group()
def backends() -> None:
    """Backend types and configured backends."""


@backends.command("list")
def backends_list() -> None:
    """Configured backends, their types and the models they serve."""
    settings = load_settings()
    for name, config in settings.backends.items():
        served = [m.id for m in settings.models if any(d.backend == name for d in m.deployment_list())]
        click.echo(f"{name}\t{config.type}\t{', '.join(served)}")
