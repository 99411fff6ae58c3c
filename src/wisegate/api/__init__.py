"""HTTP routes: parse the request, call one service method, render the result."""

from __future__ import annotations

from starlette.routing import Route

from wisegate.api import batches, messages, resources


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
        Route("/v1/models", resources.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", resources.get_model, methods=["GET"]),
    ]
