"""``GET /v1/models`` and ``GET /v1/models/{model_id}``.

They answer in OpenAI's shape (``api/openai.py``) only for a request that looks like an OpenAI client's
(``Authorization: Bearer`` and neither ``anthropic-version`` nor ``x-api-key``), else in Anthropic's.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wisegate.api import openai
from wisegate.api.auth import authenticate
from wisegate.api.paging import list_limit
from wisegate.api.render import json_response
from wisegate.services import services_of


async def anthropic_list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    page = await services.models.page(
        principal,
        before_id=params.get("before_id"),
        after_id=params.get("after_id"),
        limit=list_limit(request),
    )
    return json_response(page)


async def anthropic_get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    info = await services.models.retrieve(principal, request.path_params["model_id"])
    return json_response(info)


def _wants_openai(request: Request) -> bool:
    headers = request.headers
    bearer = headers.get("authorization", "").lower().startswith("bearer ")
    return bearer and "anthropic-version" not in headers and "x-api-key" not in headers


async def list_models(request: Request) -> Response:
    """``GET /v1/models``: OpenAI's shape for OpenAI clients, Anthropic's otherwise."""
    if _wants_openai(request):
        return await openai.openai_list_models(request)
    return await anthropic_list_models(request)


async def get_model(request: Request) -> Response:
    if _wants_openai(request):
        return await openai.openai_get_model(request)
    return await anthropic_get_model(request)
