"""Server-held conversation state for ``thread`` on Messages.

Revision ID: 0007_message_threads
Revises: 0006_people_sign_in
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_message_threads"
down_revision = "0006_people_sign_in"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_threads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("state", sa.Text(), nullable=True),
        sa.Column("continued", sa.String(16), nullable=True),
        sa.Column("continued_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_message_threads_workspace", "message_threads", ["workspace_id"])
    op.create_index("ix_message_threads_expires", "message_threads", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_message_threads_expires", table_name="message_threads")
    op.drop_index("ix_message_threads_workspace", table_name="message_threads")
    op.drop_table("message_threads")
