"""The web console at ``/console``: server-rendered pages (Jinja2) for the organization's people, each
seeing what their role allows, calling the domain services directly. ``routes()`` is mounted by
``create_app``."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from wisegate.console import account, limits, members, requests, signin, views, workspace

STATIC = Path(__file__).parent / "static"


async def favicon(request: Request) -> Response:
    """``/favicon.ico``, which browsers ask for on every page: the console's icon (an SVG, as the pages'
    ``<link rel="icon">`` names it), not a 404."""
    return FileResponse(
        STATIC / "favicon.svg", media_type="image/svg+xml", headers={"cache-control": "public, max-age=86400"}
    )


def routes() -> list[BaseRoute]:
    post = ["POST"]
    return [
        Route("/console", views.usage),
        Route("/console/login", signin.login_form),
        Route("/console/login", signin.login, methods=post),
        Route("/console/logout", signin.logout, methods=post),
        Route("/console/invite/{token}", signin.invite_form),
        Route("/console/invite/{token}", signin.accept_invite, methods=post),
        Route("/console/sso/start", signin.sso_start),
        Route("/console/sso/callback", signin.sso_callback),
        Route("/console/account", account.account),
        Route("/console/account/profile", account.update_profile, methods=post),
        Route("/console/account/password", account.change_password, methods=post),
        Route("/console/account/sessions/end-others", account.end_other_sessions, methods=post),
        Route("/console/account/sessions/{session_id}/end", account.end_session, methods=post),
        Route("/console/account/keys", account.create_my_key, methods=post),
        Route("/console/account/spend-request", account.ask_spend_limit, methods=post),
        Route("/console/account/keys/{key_id}", account.update_my_key, methods=post),
        Route("/console/members", members.members),
        Route("/console/members/invites", members.create_invite, methods=post),
        Route("/console/members/invites/{invite_id}/link", members.new_invite_link, methods=post),
        Route("/console/members/invites/{invite_id}/delete", members.delete_invite, methods=post),
        Route("/console/members/users/{user_id}", members.update_member, methods=post),
        Route("/console/keys", views.keys),
        Route("/console/keys", views.create_key, methods=post),
        Route("/console/keys/{key_id}", views.update_key, methods=post),
        Route("/console/workspaces", views.workspaces),
        Route("/console/workspaces", views.create_workspace, methods=post),
        Route("/console/workspaces/{workspace_id}", views.update_workspace, methods=post),
        Route("/console/workspaces/{workspace_id}/archive", views.archive_workspace, methods=post),
        Route("/console/workspaces/{workspace_id}/members", members.workspace_members),
        Route("/console/workspaces/{workspace_id}/members", members.add_workspace_member, methods=post),
        Route(
            "/console/workspaces/{workspace_id}/members/{user_id}",
            members.update_workspace_member,
            methods=post,
        ),
        Route(
            "/console/workspaces/{workspace_id}/members/{user_id}/remove",
            members.remove_workspace_member,
            methods=post,
        ),
        Route("/console/requests", requests.requests_page),
        Route("/console/requests.csv", requests.requests_csv),
        Route("/console/limits", limits.limits_page),
        Route("/console/limits/credits", limits.add_credits, methods=post),
        Route("/console/limits/tier", limits.set_tier, methods=post),
        Route("/console/limits/spend", limits.set_spend_limit, methods=post),
        Route("/console/limits/rates", limits.set_workspace_rate, methods=post),
        Route("/console/limits/requests/{request_id}/approve", limits.approve_request, methods=post),
        Route("/console/limits/requests/{request_id}/deny", limits.deny_request, methods=post),
        Route("/console/batches", workspace.batches),
        Route("/console/batches/{batch_id}/cancel", workspace.cancel_batch, methods=post),
        Route("/console/files", workspace.files),
        Route("/console/files/{file_id}/delete", workspace.delete_file, methods=post),
        Route("/console/playground", workspace.playground),
        Route("/console/playground", workspace.run_playground, methods=post),
        Route("/console/playground/count_tokens", workspace.count_tokens, methods=post),
        Route("/console/playground/code", workspace.get_code, methods=post),
        Route("/console/playground/prompts", workspace.save_prompt, methods=post),
        Route("/console/playground/prompts/{prompt_id}/delete", workspace.delete_prompt, methods=post),
        Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"),
        Route("/favicon.ico", favicon),
    ]
