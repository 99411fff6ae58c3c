"""The Models API: the models a caller may use, as ``ModelInfo`` pages.

Which models a key may use is the catalog's answer (``domain/catalog.py``: served models narrowed by
the workspace's allow-list); this module pages and describes them.
"""

from __future__ import annotations

from wisegate.backends.registry import ServedModel
from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.keys import Principal
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.resources import (
    CapabilitySupport,
    ContextManagementCapability,
    EffortCapability,
    ListPage,
    ModelCapabilities,
    ModelInfo,
    ServerToolsCapability,
    ThinkingCapability,
    ThinkingTypes,
)

_NO = CapabilitySupport(supported=False)
_YES = CapabilitySupport(supported=True)


class ModelPages:
    def __init__(self, catalog: ModelCatalog) -> None:
        self._catalog = catalog

    async def available(self, principal: Principal) -> list[ServedModel]:
        """The models ``principal``'s workspace may use, newest first (by ``created_at``, then id)."""
        visible = await self._catalog.visible(principal)
        return sorted(visible, key=lambda m: (m.config.created_at, m.config.id), reverse=True)

    async def page(
        self, principal: Principal, *, before_id: str | None, after_id: str | None, limit: int
    ) -> ListPage[ModelInfo]:
        """One ``SyncPage`` of models, paged by id the way the Claude API pages them."""
        if not 1 <= limit <= 1000:
            raise InvalidRequest("limit: Input should be between 1 and 1000")
        if before_id and after_id:
            raise InvalidRequest("before_id and after_id cannot both be set")
        models = await self.available(principal)
        ids = [m.config.id for m in models]
        if after_id:
            start = _position(ids, after_id, "after_id") + 1
            page, has_more = models[start : start + limit], start + limit < len(models)
        elif before_id:
            end = _position(ids, before_id, "before_id")
            page, has_more = models[max(0, end - limit) : end], end - limit > 0
        else:
            page, has_more = models[:limit], limit < len(models)
        data = [model_info(m) for m in page]
        return ListPage[ModelInfo](
            data=data,
            has_more=has_more,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )

    async def retrieve(self, principal: Principal, model_id: str) -> ModelInfo:
        """The model for an id or alias (an alias answers with the id it points to); 404 otherwise."""
        try:
            served = await self._catalog.resolve(principal, model_id)
        except NotFound:
            raise NotFound(f"model: {echo(model_id)}") from None
        return model_info(served)


def _position(ids: list[str], model_id: str, field: str) -> int:
    if model_id not in ids:
        raise InvalidRequest(f"{field}: unknown model '{echo(model_id)}'")
    return ids.index(model_id)


def model_info(served: ServedModel) -> ModelInfo:
    """``ModelInfo`` for a served model: its configuration plus what its backend can honour."""
    config = served.config
    caps = served.backend.capabilities

    def support(value: bool) -> CapabilitySupport:
        return _YES if value else _NO

    return ModelInfo(
        id=config.id,
        display_name=config.display_name or config.id,
        created_at=config.created_at,
        lifecycle=config.lifecycle,
        deprecated_at=config.deprecated_at,
        retires_at=config.retires_at,
        line=config.line,
        max_input_tokens=config.max_input_tokens,
        max_tokens=config.max_output_tokens,
        capabilities=ModelCapabilities(
            batch=_YES,  # every served model runs in batches (workers/batches.py)
            citations=_NO,
            code_execution=support(caps.tools),  # run by Wisegate, or by Anthropic behind a relay
            context_management=ContextManagementCapability(supported=False),
            effort=EffortCapability(
                supported=caps.effort,
                low=support(caps.effort),
                medium=support(caps.effort),
                high=support(caps.effort),
                max=support(caps.effort),
            ),
            image_input=support(caps.images),
            pdf_input=support(caps.pdf),
            server_tools=ServerToolsCapability(
                supported=caps.tools, code_execution=support(caps.tools), web_search=_NO
            ),
            structured_outputs=support(caps.structured_outputs),
            thinking=ThinkingCapability(
                supported=caps.thinking,
                types=ThinkingTypes(
                    enabled=support(caps.thinking),
                    adaptive=support(caps.thinking),
                    disabled=_YES,
                    between_tools=_NO,
                ),
            ),
        ),
    )
