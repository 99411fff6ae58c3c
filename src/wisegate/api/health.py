"""``GET /health`` (liveness), ``GET /ready`` (readiness) and ``GET /metrics`` (Prometheus).

None of them needs an API key; ``/metrics`` asks for ``Authorization: Bearer <WISEGATE_METRICS_TOKEN>``
when that is set.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wisegate.api.errors import error_response, request_id_of
from wisegate.errors import AuthenticationFailed
from wisegate.services import services_of
from wisegate.telemetry import metrics


async def health(_request: Request) -> Response:
    """200 while the process runs: no I/O, nothing to fail."""
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when this process can serve; otherwise 503 naming each failing part (an error envelope
    with a ``checks`` object beside it)."""
    readiness = await services_of(request).health.readiness()
    if readiness.ready:
        return JSONResponse({"status": "ready", "checks": readiness.checks})
    failing = ", ".join(f"{part}: {state}" for part, state in readiness.checks.items() if state != "ok")
    return JSONResponse(
        {
            "type": "error",
            "error": {"type": "api_error", "message": f"Not ready: {failing}."},
            "status": "unavailable",
            "checks": readiness.checks,
        },
        status_code=503,
    )


async def prometheus(request: Request) -> Response:
    services = services_of(request)
    token = services.settings.metrics_token
    if token is not None:
        presented = request.headers.get("authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            error = AuthenticationFailed(
                "/metrics needs the header Authorization: Bearer <WISEGATE_METRICS_TOKEN>."
            )
            return error_response(error, request_id_of(request))
    queued, running = await services.batches.queue()
    scraped = metrics.Snapshot(
        {
            "wisegate_batch_requests": (
                "Batch requests by state, over every batch and worker (read from the database)",
                "state",
                {"queued": queued, "running": running},
            )
        }
    )
    return Response(metrics.exposition([scraped]), media_type=metrics.CONTENT_TYPE)


def routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", prometheus, methods=["GET"]),
    ]
