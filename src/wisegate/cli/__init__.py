"""The ``wisegate`` command: serve, migrate, worker, batch …, keys …, workspaces …, invites create|accept,
usage, credits …, limits …, service-accounts …, spend-requests …, backends list — one module per command
group, each reaching the services through :func:`~wisegate.cli.services.open_services`."""

from __future__ import annotations

import click

from wisegate.cli.backends import backends
from wisegate.cli.batch import batch
from wisegate.cli.billing import credits, limits
from wisegate.cli.invites import invites
from wisegate.cli.keys import keys
from wisegate.cli.principals import service_accounts, spend_requests
from wisegate.cli.serve import migrate, serve, worker
from wisegate.cli.usage import usage
from wisegate.cli.workspaces import workspaces


@click.group()
def main() -> None:
    """Wisegate: a self-hostable Claude API."""


for command in (
    serve,
    migrate,
    keys,
    workspaces,
    invites,
    usage,
    worker,
    batch,
    backends,
    credits,
    limits,
    service_accounts,
    spend_requests,
):
    main.add_command(command)
