"""HTTP routes: parse the request, call one service method, render the result."""

from __future__ import annotations

from starlette.routing import Route

from wisegate.api import admin, messages, resources


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/models", resources.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", resources.get_model, methods=["GET"]),
        *admin.routes(),
    ]
