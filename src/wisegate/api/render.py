"""Rendering a wire model as the JSON response body of a resource endpoint."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel
from starlette.responses import Response


def json_response(body: BaseModel, headers: Mapping[str, str] | None = None) -> Response:
    """``body`` as ``application/json`` (200), fields as the model dumps them."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)
