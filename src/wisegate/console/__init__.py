"""The web console at ``/console``: server-rendered pages (Jinja2) for an organization's admins, calling
the domain services directly. ``routes()`` is mounted by ``create_app``."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from wisegate.console import limits, views, workspace


def routes() -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/console", views.usage),
        Route("/console/login", views.login_form),
        Route("/console/login", views.login, methods=post),
        Route("/console/logout", views.logout, methods=post),
        Route("/console/keys", views.keys),
        Route("/console/keys", views.create_key, methods=post),
        Route("/console/keys/{key_id}", views.update_key, methods=post),
        Route("/console/workspaces", views.workspaces),
        Route("/console/workspaces", views.create_workspace, methods=post),
        Route("/console/workspaces/{workspace_id}", views.update_workspace, methods=post),
        Route("/console/workspaces/{workspace_id}/archive", views.archive_workspace, methods=post),
        Route("/console/limits", limits.limits_page),
        Route("/console/limits/credits", limits.add_credits, methods=post),
        Route("/console/limits/tier", limits.set_tier, methods=post),
        Route("/console/limits/spend", limits.set_spend_limit, methods=post),
        Route("/console/limits/rates", limits.set_workspace_rate, methods=post),
        Route("/console/batches", workspace.batches),
        Route("/console/batches/{batch_id}/cancel", workspace.cancel_batch, methods=post),
        Route("/console/files", workspace.files),
        Route("/console/files/{file_id}/delete", workspace.delete_file, methods=post),
        Route("/console/playground", workspace.playground),
        Route("/console/playground", workspace.run_playground, methods=post),
        Mount(
            "/console/static", StaticFiles(directory=Path(__file__).parent / "static"), name="console-static"
        ),
    ]
