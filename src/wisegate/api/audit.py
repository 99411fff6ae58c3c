"""Every change made through the Admin API is written to the audit record, like the console's: who (the
key), what (``admin_api.<handler>``), on which path, from where. Reads are not recorded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wisegate.services import services_of

Endpoint = Callable[[Request], Awaitable[Response]]


def _audited(endpoint: Endpoint) -> Endpoint:
    async def wrapper(request: Request) -> Response:
        response = await endpoint(request)
        principal = getattr(request.state, "principal", None)
        if response.status_code < 400 and principal is not None:
            host = request.client.host if request.client else None
            await services_of(request).accounts.audit_key(
                principal.key, f"admin_api.{endpoint.__name__}", target=request.url.path, ip=host
            )
        return response

    wrapper.__name__ = endpoint.__name__
    return wrapper


def audited(routes: list[Route]) -> list[Route]:
    """``routes`` with their changing methods (POST, PUT, DELETE) audited."""
    result = []
    for route in routes:
        methods = set(route.methods or ()) - {"HEAD"}
        if methods <= {"GET"}:
            result.append(route)
        else:
            result.append(Route(route.path, _audited(route.endpoint), methods=sorted(methods)))
    return result
