"""The workbench's saved prompts (migration 0009): one row per prompt, owned by one person."""

from __future__ import annotations

from sqlalchemy import select

from wisegate.records.workbench import SavedPrompt
from wisegate.storage.db import Database
from wisegate.storage.repos import aware
from wisegate.storage.tables import SavedPromptRow


def _prompt(row: SavedPromptRow) -> SavedPrompt:
    return SavedPrompt(
        row.id,
        row.organization_id,
        row.owner_id,
        row.name,
        row.state,
        aware(row.created_at),
        aware(row.updated_at),
    )


class PromptRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def of_owner(self, owner_id: str) -> list[SavedPrompt]:
        """Most recently saved first."""
        async with self._db.read() as session:
            rows = (
                await session.execute(
                    select(SavedPromptRow)
                    .where(SavedPromptRow.owner_id == owner_id)
                    .order_by(SavedPromptRow.updated_at.desc(), SavedPromptRow.id.desc())
                )
            ).scalars()
            return [_prompt(row) for row in rows]

    async def get(self, prompt_id: str) -> SavedPrompt | None:
        async with self._db.read() as session:
            row = await session.get(SavedPromptRow, prompt_id)
        return _prompt(row) if row else None

    async def save(self, prompt: SavedPrompt) -> SavedPrompt:
        """Insert, or replace the name and state of the prompt with that id."""
        async with self._db.write() as session:
            row = await session.get(SavedPromptRow, prompt.id)
            if row is None:
                session.add(
                    SavedPromptRow(
                        id=prompt.id,
                        organization_id=prompt.organization_id,
                        owner_id=prompt.owner_id,
                        name=prompt.name,
                        state=prompt.state,
                        created_at=prompt.created_at,
                        updated_at=prompt.updated_at,
                    )
                )
                return prompt
            row.name = prompt.name
            row.state = prompt.state
            row.updated_at = prompt.updated_at
            return _prompt(row)

    async def delete(self, prompt_id: str) -> bool:
        async with self._db.write() as session:
            row = await session.get(SavedPromptRow, prompt_id)
            if row is None:
                return False
            await session.delete(row)
            return True
