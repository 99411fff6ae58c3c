"""HTTP routes: parse the request, call one service method, render the result."""

from __future__ import annotations

from starlette.routing import Route
from starlette.types import ASGIApp

from wisegate.api import (
    admin,
    batches,
    files,
    health,
    messages,
    models,
    openai,
    organization,
    request_log,
    service_accounts,
    skills,
)
from wisegate.api.audit import audited


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/messages/batches", batches.create_batch, methods=["POST"]),
        Route("/v1/messages/batches", batches.list_batches, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", batches.get_batch, methods=["GET"]),
        Route("/v1/messages/batches/{batch_id}", batches.delete_batch, methods=["DELETE"]),
        Route("/v1/messages/batches/{batch_id}/cancel", batches.cancel_batch, methods=["POST"]),
        Route("/v1/messages/batches/{batch_id}/results", batches.batch_results, methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.get_model, methods=["GET"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/openai/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/openai/v1/models", openai.openai_list_models, methods=["GET"]),
        Route("/openai/v1/models/{model_id:path}", openai.openai_get_model, methods=["GET"]),
        Route("/openai/{path:path}", openai.not_found),
        *files_and_skills_routes(),
        *audited(admin.routes() + organization.routes() + service_accounts.routes()),
        *request_log.routes(),
        *health.routes(),
    ]


def direct_routes() -> dict[tuple[str, str], ASGIApp]:
    """The hot path (method, exact path) answered without the router; ``routes()`` keeps them for
    every other method (405) and path variant."""
    return {("POST", "/v1/messages"): messages.create_message_app}


def files_and_skills_routes() -> list[Route]:
    return [
        Route("/v1/files", files.upload_file, methods=["POST"]),
        Route("/v1/files", files.list_files, methods=["GET"]),
        Route("/v1/files/{file_id}/content", files.file_content, methods=["GET"]),
        Route("/v1/files/{file_id}", files.get_file, methods=["GET"]),
        Route("/v1/files/{file_id}", files.delete_file, methods=["DELETE"]),
        Route("/v1/skills", skills.create_skill, methods=["POST"]),
        Route("/v1/skills", skills.list_skills, methods=["GET"]),
        Route("/v1/skills/{skill_id}", skills.get_skill, methods=["GET"]),
        Route("/v1/skills/{skill_id}", skills.delete_skill, methods=["DELETE"]),
        Route("/v1/skills/{skill_id}/versions", skills.create_version, methods=["POST"]),
        Route("/v1/skills/{skill_id}/versions", skills.list_versions, methods=["GET"]),
        Route("/v1/skills/{skill_id}/versions/{version}/content", skills.version_content, methods=["GET"]),
        Route("/v1/skills/{skill_id}/versions/{version}", skills.get_version, methods=["GET"]),
        Route("/v1/skills/{skill_id}/versions/{version}", skills.delete_version, methods=["DELETE"]),
    ]
