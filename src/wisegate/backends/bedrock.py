"""Claude on Amazon Bedrock: InvokeModel / InvokeModelWithResponseStream, SigV4-signed with botocore.

The body is the client's JSON with ``model`` and ``stream`` removed, ``anthropic_version:
bedrock-2023-05-31`` added and ``anthropic-beta`` values moved into ``anthropic_beta``; the model id
goes in the path (``route.upstream_model``, e.g. ``anthropic.claude-sonnet-4-5-20250929-v1:0`` or an
inference profile such as ``us.anthropic…``). The JSON answer is relayed as is; the AWS event stream
is decoded frame by frame and each ``chunk``'s payload — Anthropic's own event JSON — is sent on as
an SSE frame without re-encoding. Exceptions in the stream become ``error`` events.

Options: ``region`` (``us-east-1``), ``endpoint_url`` (default
``https://bedrock-runtime.{region}.amazonaws.com``), ``access_key_id``/``secret_access_key``/
``session_token`` (default: botocore's credential chain — environment, profile, instance role),
``profile``, and the HTTP options of every upstream.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from wisegate.backends.base import ModelRoute, RelayRequest, RelayResponse
from wisegate.backends.messages_upstream import MessagesUpstream, Outgoing
from wisegate.backends.upstream import UpstreamMisconfigured
from wisegate.errors import ApiError, ApiInternal, InvalidRequest, Overloaded, RateLimited

log = logging.getLogger("wisegate.upstream")

BEDROCK_VERSION = "bedrock-2023-05-31"
_STREAM_EXCEPTIONS: dict[str, type[ApiError]] = {
    "throttlingException": RateLimited,
    "serviceUnavailableException": Overloaded,
    "modelStreamErrorException": ApiInternal,
    "internalServerException": ApiInternal,
    "validationException": InvalidRequest,
}
_ERROR_TYPES = {
    RateLimited: "rate_limit_error",
    Overloaded: "overloaded_error",
    InvalidRequest: "invalid_request_error",
    ApiInternal: "api_error",
}


def bedrock_body(request: RelayRequest) -> bytes:
    """The InvokeModel body for a Messages body (everything else the client sent is kept)."""
    document = json.loads(request.body)
    document.pop("model", None)
    document.pop("stream", None)
    document["anthropic_version"] = BEDROCK_VERSION
    if request.beta:
        document["anthropic_beta"] = [b.strip() for b in request.beta.split(",") if b.strip()]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class BedrockBackend(MessagesUpstream):
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self._region = str(options.get("region", "us-east-1"))
        default = f"https://bedrock-runtime.{self._region}.amazonaws.com"
        self._endpoint = str(options.get("endpoint_url", default)).rstrip("/")
        self._credentials = _credentials(options)

    async def _prepare(self, request: RelayRequest, route: ModelRoute) -> Outgoing:
        model = quote(route.upstream_model, safe="")
        if request.count_tokens:
            invoke = bedrock_body(RelayRequest(body=request.body, stream=False, model=request.model))
            body = json.dumps(
                {"input": {"invokeModel": {"body": base64.b64encode(invoke).decode()}}}
            ).encode()
            action = "count-tokens"
        else:
            body = bedrock_body(request)
            action = "invoke-with-response-stream" if request.stream else "invoke"
        url = f"{self._endpoint}/model/{model}/{action}"
        headers = {"content-type": "application/json", "accept": "application/json"}
        if request.stream and not request.count_tokens:
            headers["accept"] = "application/vnd.amazon.eventstream"
        return Outgoing(url, self._sign(url, headers, body), body)

    def _sign(self, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
        credentials = self._credentials
        if credentials is None:
            raise UpstreamMisconfigured(f"backend {self.name} has no AWS credentials configured")
        signed = AWSRequest(method="POST", url=url, data=body, headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), "bedrock", self._region).add_auth(signed)
        return dict(signed.headers.items())

    async def relay(self, request: RelayRequest, route: ModelRoute) -> RelayResponse:
        relayed = await super().relay(request, route)
        if request.count_tokens and relayed.body is not None:
            count = json.loads(relayed.body).get("inputTokens", 0)
            relayed.body = json.dumps({"input_tokens": count}).encode()
            relayed.usage.input_tokens = int(count)
        return relayed

    async def _sse(self, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        frames = EventStreamBuffer()
        async for data in response.content.iter_any():
            frames.add_data(data)
            out = []
            for message in frames:
                headers = message.headers
                if headers.get(":message-type") == "exception" or headers.get(":message-type") == "error":
                    out.append(_exception_frame(headers, message.payload))
                    continue
                if headers.get(":event-type") != "chunk":
                    continue
                event = base64.b64decode(json.loads(message.payload)["bytes"])
                name = json.loads(event).get("type", "message")
                out.append(b"event: " + str(name).encode() + b"\ndata: " + event + b"\n\n")
            if out:
                yield b"".join(out)


def _exception_frame(headers: dict[str, Any], payload: bytes) -> bytes:
    kind = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
    try:
        message = str(json.loads(payload).get("message", kind))
    except ValueError:
        message = payload.decode("utf-8", "replace")
    error_type = _ERROR_TYPES.get(_STREAM_EXCEPTIONS.get(kind, ApiInternal), "api_error")
    log.warning("bedrock stream exception %s: %s", kind, message)
    data = json.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data.encode() + b"\n\n"


def _credentials(options: dict[str, Any]) -> Credentials | None:
    if options.get("access_key_id") and options.get("secret_access_key"):
        return Credentials(
            str(options["access_key_id"]), str(options["secret_access_key"]), options.get("session_token")
        )
    import botocore.session

    session = botocore.session.Session(profile=options.get("profile"))
    found: Credentials | None = session.get_credentials()  # refreshable ones refresh on freezing
    return found
