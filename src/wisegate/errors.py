"""The exception tree every room raises; ``api/errors.py`` renders it as Anthropic's envelope.

ApiError (500 api_error)
├── InvalidRequest        400 invalid_request_error
├── AuthenticationFailed  401 authentication_error
├── BillingError          402 billing_error
├── PermissionDenied      403 permission_error
├── NotFound              404 not_found_error
├── MethodNotAllowed      405 invalid_request_error
├── Conflict              409 conflict_error
├── RequestTooLarge       413 request_too_large
├── RateLimited           429 rate_limit_error (retry_after seconds)
├── ApiInternal           500 api_error
│   └── ModelCrashed      500 api_error (the embedded model's runner died; a retry may succeed)
├── GatewayTimeout        504 timeout_error
└── Overloaded            529 overloaded_error
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from wisegate.protocol.bounds import ECHO_LENGTH, echo


class ApiError(Exception):
    status: int = 500
    type: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.details = details


class InvalidRequest(ApiError):
    status = 400
    type = "invalid_request_error"


class AuthenticationFailed(ApiError):
    status = 401
    type = "authentication_error"


class BillingError(ApiError):
    status = 402
    type = "billing_error"


class PermissionDenied(ApiError):
    status = 403
    type = "permission_error"


class NotFound(ApiError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(ApiError):
    status = 405
    type = "invalid_request_error"


class Conflict(ApiError):
    status = 409
    type = "conflict_error"


class RequestTooLarge(ApiError):
    status = 413
    type = "request_too_large"


class RateLimited(ApiError):
    status = 429
    type = "rate_limit_error"


class ApiInternal(ApiError):
    status = 500
    type = "api_error"


class ModelCrashed(ApiInternal):
    """The embedded model's runner died while serving the request; it restarts, so a retry may succeed."""


class GatewayTimeout(ApiError):
    status = 504
    type = "timeout_error"


class Overloaded(ApiError):
    status = 529
    type = "overloaded_error"


# Every ``type`` the tree above gives an error (the Claude API's error types).
ERROR_TYPES = tuple(
    dict.fromkeys(
        cls.type
        for cls in (
            InvalidRequest,
            AuthenticationFailed,
            BillingError,
            PermissionDenied,
            NotFound,
            Conflict,
            RequestTooLarge,
            RateLimited,
            ApiInternal,
            GatewayTimeout,
            Overloaded,
        )
    )
)


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    """The deepest error as ``"<dotted.path>: <message>"``, the way the Claude API words it.

    For a union (``content``: string or blocks) the deepest error is the one about what the client
    evidently meant (the block list), not about the alternative it did not use.
    """
    errors = exc.errors(include_url=False)
    first = max(errors, key=lambda e: sum(1 for part in e["loc"] if _is_path_part(part)))
    if first["type"] == "json_invalid":
        return InvalidRequest(f"The request body is not valid JSON: {first['ctx'].get('error', 'invalid')}")
    if first["type"] == "model_type" and not first["loc"]:
        return InvalidRequest("The request body must be a JSON object.")
    message = first["msg"]
    if first["type"] == "value_error":
        message = str(first.get("ctx", {}).get("error", message))
    # Some messages repeat what was sent ("Input tag '…' found"): at most its first characters.
    for sent in (first.get("input"), *first.get("ctx", {}).values()):
        if isinstance(sent, str) and len(sent) > ECHO_LENGTH and sent in message:
            message = message.replace(sent, echo(sent))
    path = ".".join(echo(part) for part in first["loc"] if _is_path_part(part))  # a key may be 30 KB
    if path and not message.startswith(path.split(".")[0] + ":") and not message.startswith(path + "."):
        return InvalidRequest(f"{path}: {message}")
    return InvalidRequest(message)


def _is_path_part(part: Any) -> bool:
    if isinstance(part, int):
        return True
    text = str(part)
    return not any(c in text for c in "[]()") and text not in ("str", "list", "dict", "int", "float", "bool")
