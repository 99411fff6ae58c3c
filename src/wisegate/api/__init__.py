"""HTTP routes: parse the request, call one service method, render the result."""

from __future__ import annotations

from starlette.routing import Route

from wisegate.api import messages, openai


def routes() -> list[Route]:
    return [
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/models", openai.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", openai.get_model, methods=["GET"]),
        Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/openai/v1/chat/completions", openai.chat_completions, methods=["POST"]),
        Route("/openai/v1/models", openai.openai_list_models, methods=["GET"]),
        Route("/openai/v1/models/{model_id:path}", openai.openai_get_model, methods=["GET"]),
        Route("/openai/{path:path}", openai.not_found),
    ]
