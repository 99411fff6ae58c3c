"""``GET /v1/models`` and ``GET /v1/models/{model_id}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.auth import authenticate
from wisegate.api.paging import list_limit
from wisegate.services import services_of


async def list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    page = await services.models.page(
        principal,
        before_id=params.get("before_id"),
        after_id=params.get("after_id"),
        limit=list_limit(request),
    )
    return Response(page.model_dump_json(), media_type="application/json")


async def get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    info = await services.models.retrieve(principal, request.path_params["model_id"])
    return Response(info.model_dump_json(), media_type="application/json")
