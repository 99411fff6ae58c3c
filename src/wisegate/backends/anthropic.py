"""Upstream Anthropic (and anything speaking its API at another base URL, e.g. Azure AI Foundry).

Requests are relayed losslessly: the client's JSON bytes go up (only ``model`` mapped when the
upstream id differs), the upstream's JSON or SSE bytes come back untouched, and usage for the ledger
is read from the upstream's own ``usage`` fields.

Options (``[backends.NAME.options]``): ``base_url`` (``https://api.anthropic.com``), ``api_key`` or
``api_keys`` (a pool, used round-robin), ``auth_header`` (``x-api-key``; ``authorization`` sends
``Bearer``; Azure accepts ``api-key``), ``anthropic_version`` (sent when the client sends none:
``2023-06-01``), ``anthropic_beta`` (beta values always added), ``headers`` (extra static headers),
``max_connections`` (256), ``connect_timeout`` (10 s), ``read_timeout`` (600 s between bytes).
"""

from __future__ import annotations

from typing import Any

from wisegate.backends.base import ModelRoute, RelayRequest
from wisegate.backends.messages_upstream import MessagesUpstream, Outgoing, merge_beta
from wisegate.backends.upstream import with_model


class AnthropicBackend(MessagesUpstream):
    def __init__(self, name: str, options: dict[str, Any]) -> None:
        super().__init__(name, options)
        self._base_url = str(options.get("base_url", "https://api.anthropic.com")).rstrip("/")
        self._auth_header = str(options.get("auth_header", "x-api-key")).lower()
        self._version = str(options.get("anthropic_version", "2023-06-01"))
        self._beta = options.get("anthropic_beta")
        self._extra_headers = {str(k): str(v) for k, v in (options.get("headers") or {}).items()}

    async def _prepare(self, request: RelayRequest, route: ModelRoute) -> Outgoing:
        path = "/v1/messages/count_tokens" if request.count_tokens else "/v1/messages"
        headers = {
            "content-type": "application/json",
            "anthropic-version": request.version or self._version,
            **self._extra_headers,
        }
        key = route.api_key or self._keys.next()
        if key:
            if self._auth_header == "authorization":
                headers["authorization"] = f"Bearer {key}"
            else:
                headers[self._auth_header] = key
        merge_beta(headers, request, self._beta)
        body = with_model(request.body, request.model, route.upstream_model)
        return Outgoing(self._base_url + path, headers, body)
