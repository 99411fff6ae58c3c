"""``create_app(settings)``: the ASGI application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from wisegate import console
from wisegate.api import direct_routes, routes
from wisegate.api.context import RequestContext
from wisegate.api.errors import error_response, from_http_exception, request_id_of
from wisegate.api.urls import UrlGuard
from wisegate.backends.base import Backend
from wisegate.domain.clock import Clock
from wisegate.errors import ApiError
from wisegate.services import Services
from wisegate.settings import Settings


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(from_http_exception(exc, request.method, request.url.path), request_id_of(request))


def create_app(
    settings: Settings, *, backends: dict[str, Backend] | None = None, clock: Clock | None = None
) -> Starlette:
    """Build the app. The database must already be migrated (``wisegate migrate`` / ``serve``)."""
    services = Services.from_settings(settings, backends, clock)
    api_routes = routes()
    route_names: dict[object, str] = {}
    for route in api_routes:
        route_names.setdefault(route.endpoint, route.path)
    model_names = {name: m.id for m in settings.models for name in (m.id, *m.aliases)}
    app = Starlette(
        routes=api_routes + console.routes(),
        middleware=[
            Middleware(
                RequestContext,
                organization_id=lambda: services.organization_id,
                direct=direct_routes(),
                route_names=route_names,
                model_names=model_names,
            ),
            Middleware(UrlGuard),
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=services.lifespan,
    )
    app.state.services = services
    return app
