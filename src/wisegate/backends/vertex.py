"""Claude on Google Vertex AI: ``rawPredict`` / ``streamRawPredict`` with google-auth credentials.

The body is the client's JSON with ``model`` removed and ``anthropic_version: vertex-2023-10-16``
added; the model id (``route.upstream_model``, e.g. ``claude-sonnet-4-5@20250929``) goes in the URL.
Vertex answers in the Anthropic format — a Message, or Anthropic SSE — so both are relayed as is.
``anthropic-beta`` is sent as a header; count_tokens uses ``count-tokens:rawPredict``.

Options: ``project`` (required), ``region`` (``global``), ``endpoint_url`` (default
``https://{region}-aiplatform.googleapis.com``, or ``https://aiplatform.googleapis.com`` for
``global``), ``credentials_file`` (a service-account JSON; default: Application Default
Credentials), ``access_token`` (a fixed token, for tests and short jobs), and the HTTP options of
every upstream. Tokens are refreshed before they expire, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

from wisegate.backends.base import ModelRoute, RelayRequest
from wisegate.backends.messages_upstream import MessagesUpstream, Outgoing, merge_beta
from wisegate.backends.upstream import UpstreamMisconfigured, log

VERTEX_VERSION = "vertex-2023-10-16"
SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


def vertex_body(request: RelayRequest, keep_model: bool = False) -> bytes:
    document = json.loads(request.body)
    if not keep_model:
        document.pop("model", None)
    if not request.count_tokens:
        document["anthropic_version"] = VERTEX_VERSION
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class VertexBackend(MessagesUpstream):
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        if not options.get("project"):
            raise ValueError(f"backend {name!r} (vertex) needs options.project")
        self._project = str(options["project"])
        self._region = str(options.get("region", "global"))
        host = (
            "aiplatform.googleapis.com"
            if self._region == "global"
            else f"{self._region}-aiplatform.googleapis.com"
        )
        self._endpoint = str(options.get("endpoint_url", f"https://{host}")).rstrip("/")
        self._static_token = options.get("access_token")
        self._credentials_file = options.get("credentials_file")
        self._credentials: Any = None
        self._refresh_lock = asyncio.Lock()

    async def _token(self) -> str:
        if self._static_token:
            return str(self._static_token)
        async with self._refresh_lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._load_credentials)
            if not self._credentials.valid:
                await asyncio.to_thread(self._refresh)
            return str(self._credentials.token)

    def _load_credentials(self) -> Any:
        import google.auth
        from google.oauth2 import service_account

        try:
            if self._credentials_file:
                return service_account.Credentials.from_service_account_file(  # type: ignore[no-untyped-call]
                    str(self._credentials_file), scopes=SCOPES
                )
            credentials, _ = google.auth.default(scopes=SCOPES)
            return credentials
        except Exception as exc:
            log.error("vertex backend %s has no usable Google credentials: %s", self.name, exc)
            raise UpstreamMisconfigured(f"backend {self.name} has no usable Google credentials") from None

    def _refresh(self) -> None:
        import urllib3
        from google.auth.transport.urllib3 import Request

        try:
            self._credentials.refresh(Request(urllib3.PoolManager()))  # type: ignore[no-untyped-call]
        except Exception as exc:
            log.error("vertex backend %s could not refresh its token: %s", self.name, exc)
            raise UpstreamMisconfigured(
                f"backend {self.name} could not obtain a Google access token"
            ) from None

    async def _prepare(self, request: RelayRequest, route: ModelRoute) -> Outgoing:
        location = f"projects/{self._project}/locations/{self._region}"
        base = f"{self._endpoint}/v1/{location}/publishers/anthropic/models"
        if request.count_tokens:
            url = f"{base}/count-tokens:rawPredict"
            body = vertex_body(request, keep_model=True)
            body = json.dumps({**json.loads(body), "model": route.upstream_model}).encode()
        else:
            action = "streamRawPredict" if request.stream else "rawPredict"
            url = f"{base}/{quote(route.upstream_model, safe='@')}:{action}"
            body = vertex_body(request)
        headers = {"content-type": "application/json", "authorization": f"Bearer {await self._token()}"}
        merge_beta(headers, request, self._options.get("anthropic_beta"))
        return Outgoing(url, headers, body)
