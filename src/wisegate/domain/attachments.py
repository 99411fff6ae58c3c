"""What a Messages request refers to, made concrete before a backend sees it.

- ``{"source": {"type": "file", "file_id"}}`` in ``image`` and ``document`` blocks (also inside
  ``tool_result``) is replaced by the stored bytes of that file in the caller's workspace: images become
  ``base64`` image sources, PDFs ``base64`` PDF sources, text files ``text`` sources. An unknown id, or one
  of another workspace, is a 404 ``not_found_error``.
- For a backend that cannot read PDFs (the embedded model), each PDF document — inline ``base64`` or a
  file — becomes a ``text`` document with the PDF's extracted text, one page after another, within
  the bounds of ``domain/pdf_text.py``.
- ``container: {"skills": [...]}`` (at most 8) without the code execution tool (with it, the skills are
  mounted in the container instead: :mod:`wisegate.domain.code_execution`): each skill's ``name``,
  ``description`` and ``SKILL.md`` instructions (and the list of its other files) are appended to the
  system prompt, and the response's ``container`` names the skills and versions used.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from wisegate.backends.base import Capabilities
from wisegate.domain.files import FileService
from wisegate.domain.keys import Principal
from wisegate.domain.pdf_text import PdfLimits, PdfText
from wisegate.domain.skills import SkillService
from wisegate.errors import InvalidRequest, NotFound
from wisegate.protocol.bounds import echo
from wisegate.protocol.content import (
    Base64ImageSource,
    Base64PdfSource,
    DocumentBlockParam,
    FileSource,
    ImageBlockParam,
    MessageParam,
    PlainTextSource,
    TextBlockParam,
    ToolResultBlockParam,
)
from wisegate.protocol.messages import CountTokensRequest, MessagesRequest, new_id
from wisegate.protocol.resources import rfc3339
from wisegate.records.files import SkillVersionRecord

MAX_SKILLS = 8
R = TypeVar("R", MessagesRequest, CountTokensRequest)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
SKILLS_PREAMBLE = (
    "You have the following skills. Each skill has a name, a description of when to use it, and "
    "instructions. When a task matches a skill's description, follow that skill's instructions."
)


@dataclass(frozen=True, slots=True)
class LoadedSkill:
    type: str
    skill_id: str
    version: SkillVersionRecord


class Attachments:
    def __init__(
        self,
        files: FileService,
        skills: SkillService,
        max_file_bytes: int,
        pdf_limits: PdfLimits | None = None,
    ) -> None:
        self._files = files
        self._skills = skills
        self._max_file_bytes = max_file_bytes
        self._pdf = PdfText(pdf_limits or PdfLimits())

    async def resolve(
        self,
        principal: Principal,
        request: R,
        capabilities: Capabilities,
    ) -> tuple[R, dict[str, Any] | None]:
        """The request with file sources, PDFs (when needed) and skills made concrete, and the
        ``container`` object for the response (``None`` when the request loads no skills)."""
        messages: list[MessageParam] = []
        changed = False
        for index, message in enumerate(request.messages):
            if isinstance(message.content, str):
                messages.append(message)
                continue
            blocks = [await self._block(principal, b, index, capabilities) for b in message.content]
            if any(new is not old for new, old in zip(blocks, message.content, strict=True)):
                changed = True
                message = message.model_copy(update={"content": blocks})
            messages.append(message)
        update: dict[str, Any] = {"messages": messages} if changed else {}
        container: dict[str, Any] | None = None
        skills = await self.load_skills(principal, request.container)
        if skills:
            update["system"] = [
                *request.system_text(),
                TextBlockParam(type="text", text=_skills_prompt(skills)),
            ]
            update["container"] = None
            container = {
                "id": new_id("container"),
                "expires_at": rfc3339(datetime.now(UTC) + timedelta(minutes=5)),
                "skills": [
                    {"type": s.type, "skill_id": s.skill_id, "version": s.version.version} for s in skills
                ],
            }
        return (request.model_copy(update=update) if update else request), container

    async def _block(self, principal: Principal, block: Any, index: int, caps: Capabilities) -> Any:
        if isinstance(block, ToolResultBlockParam) and isinstance(block.content, list):
            inner = [await self._block(principal, b, index, caps) for b in block.content]
            if any(new is not old for new, old in zip(inner, block.content, strict=True)):
                return block.model_copy(update={"content": inner})
            return block
        if isinstance(block, ImageBlockParam) and isinstance(block.source, FileSource):
            record, data = await self._files.read_bytes(principal, block.source.file_id, self._max_file_bytes)
            if record.mime_type not in IMAGE_TYPES:
                raise InvalidRequest(
                    f"messages.{index}.content: file {record.id} is '{record.mime_type}', not an image "
                    f"({', '.join(IMAGE_TYPES)})"
                )
            source = Base64ImageSource(
                type="base64", media_type=record.mime_type, data=base64.b64encode(data).decode()
            )
            return block.model_copy(update={"source": source})
        if isinstance(block, DocumentBlockParam):
            return await self._document(principal, block, index, caps)
        return block

    async def _document(
        self, principal: Principal, block: DocumentBlockParam, index: int, caps: Capabilities
    ) -> DocumentBlockParam:
        source = block.source
        pdf: bytes | None = None
        if isinstance(source, FileSource):
            record, data = await self._files.read_bytes(principal, source.file_id, self._max_file_bytes)
            if record.mime_type == "application/pdf":
                pdf = data
                if caps.pdf:
                    new = Base64PdfSource(
                        type="base64", media_type="application/pdf", data=base64.b64encode(data).decode()
                    )
                    return block.model_copy(update={"source": new})
            elif record.mime_type.startswith("text/") or record.mime_type in ("application/json",):
                try:
                    text = data.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidRequest(
                        f"messages.{index}.content: file {record.id} is not UTF-8 text"
                    ) from None
                new_source = PlainTextSource(type="text", media_type="text/plain", data=text)
                title = block.title if block.title is not None else record.filename
                return block.model_copy(update={"source": new_source, "title": title})
            else:
                raise InvalidRequest(
                    f"messages.{index}.content: file {record.id} is '{record.mime_type}'; a document must be "
                    "a PDF (application/pdf) or plain text (text/*)"
                )
        elif isinstance(source, Base64PdfSource) and not caps.pdf:
            try:
                pdf = base64.b64decode(source.data, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidRequest(f"messages.{index}.content: the PDF's base64 data is invalid") from None
        if pdf is None:
            return block
        text = await self._pdf.read(pdf)
        return block.model_copy(
            update={"source": PlainTextSource(type="text", media_type="text/plain", data=text)}
        )

    async def load_skills(self, principal: Principal, container: Any) -> list[LoadedSkill]:
        """The skills ``container.skills`` names (404 for unknown ones and Anthropic skills)."""
        if not isinstance(container, dict) or not container.get("skills"):
            return []
        try:
            specs = [_SkillSpec.model_validate(s) for s in container["skills"]]
        except (ValidationError, TypeError):
            raise InvalidRequest(
                'container.skills: each skill is {"type": "custom", "skill_id": …, "version"?: …}'
            ) from None
        if len(specs) > MAX_SKILLS:
            raise InvalidRequest(
                f"container.skills: at most {MAX_SKILLS} skills per request, got {len(specs)}"
            )
        loaded = []
        for spec in specs:
            if spec.type == "anthropic":
                raise NotFound(
                    f"container.skills: Anthropic skill '{echo(spec.skill_id)}' is not available on this "
                    "server; only custom skills can be used"
                )
            try:
                version = await self._skills.version(principal, spec.skill_id, spec.version or "latest")
            except NotFound as exc:
                raise NotFound(f"container.skills: {exc.message}") from None
            loaded.append(LoadedSkill(spec.type, spec.skill_id, version))
        return loaded


class _SkillSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["anthropic", "custom"]
    skill_id: str = Field(min_length=1)
    version: str | None = None


def _skills_prompt(skills: list[LoadedSkill]) -> str:
    parts = [SKILLS_PREAMBLE]
    for skill in skills:
        v = skill.version
        others = [p for p in json.loads(v.paths) if p != f"{v.directory}/SKILL.md"]
        files = f"\nOther files in this skill: {', '.join(others)}" if others else ""
        parts.append(
            f'<skill name="{v.name}" description={json.dumps(v.description, ensure_ascii=False)}>\n'
            f"{v.instructions}{files}\n</skill>"
        )
    return "\n\n".join(parts)
