"""``GET /v1/models`` and ``GET /v1/models/{model_id}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.auth import authenticate
from wisegate.errors import InvalidRequest
from wisegate.services import services_of


async def list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit: Input should be a valid integer") from None
    page = await services.models.page(
        principal, before_id=params.get("before_id"), after_id=params.get("after_id"), limit=limit
    )
    return Response(page.model_dump_json(), media_type="application/json")


async def get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    info = await services.models.retrieve(principal, request.path_params["model_id"])
    return Response(info.model_dump_json(), media_type="application/json")
