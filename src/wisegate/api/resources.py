"""``GET /v1/models`` and ``GET /v1/models/{model_id}``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from wisegate.api.auth import authenticate
from wisegate.backends.registry import ServedModel
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.resources import ListPage, ModelInfo
from wisegate.services import services_of


def _info(served: ServedModel) -> ModelInfo:
    config = served.config
    return ModelInfo(
        id=config.id,
        display_name=config.display_name or config.id,
        created_at=config.created_at,
        max_input_tokens=config.max_input_tokens,
        max_tokens=config.max_output_tokens,
    )


async def list_models(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    params = request.query_params
    try:
        limit = int(params.get("limit", "20"))
    except ValueError:
        raise InvalidRequest("limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit: Input should be between 1 and 1000")
    before, after = params.get("before_id"), params.get("after_id")
    if before and after:
        raise InvalidRequest("before_id and after_id cannot both be set")
    models = sorted(
        await services.catalog.visible(principal),
        key=lambda m: (m.config.created_at, m.config.id),
        reverse=True,
    )
    ids = [m.config.id for m in models]
    if after:
        if after not in ids:
            raise InvalidRequest(f"after_id: unknown model '{after}'")
        start = ids.index(after) + 1
        page = models[start : start + limit]
        has_more = start + limit < len(models)
    elif before:
        if before not in ids:
            raise InvalidRequest(f"before_id: unknown model '{before}'")
        end = ids.index(before)
        page = models[max(0, end - limit) : end]
        has_more = end - limit > 0
    else:
        page = models[:limit]
        has_more = limit < len(models)
    data = [_info(m) for m in page]
    body = ListPage[ModelInfo](
        data=data,
        has_more=has_more,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
    )
    return Response(body.model_dump_json(), media_type="application/json")


async def get_model(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request, services.keys)
    model_id = request.path_params["model_id"]
    try:
        served = await services.catalog.resolve(principal, model_id)
    except NotFound:
        raise NotFound(f"model: {model_id}") from None
    return Response(_info(served).model_dump_json(), media_type="application/json")
