"""The ``wisegate`` command: serve, migrate, worker, batch …, keys …, workspaces …, invites create|accept,
users list|set-role, usage, credits …, limits …, service-accounts …, spend-requests …, backends list,
sandbox check — one module per command group, each reaching the services through
:func:`~wisegate.cli.services.open_services`."""

from __future__ import annotations

import click

from wisegate.cli.backends import backends
from wisegate.cli.batch import batch
from wisegate.cli.billing import credits, limits
from wisegate.cli.invites import invites
from wisegate.cli.keys import keys
from wisegate.cli.principals import service_accounts, spend_requests
from wisegate.cli.sandbox import sandbox
from wisegate.cli.serve import migrate, serve, worker
from wisegate.cli.usage import usage
from wisegate.cli.users import users
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
    users,
    usage,
    worker,
    batch,
    backends,
    credits,
    limits,
    sandbox,
    service_accounts,
    spend_requests,
):
    main.add_command(command)
