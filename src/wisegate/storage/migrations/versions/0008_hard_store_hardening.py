"""Hardening: batch requests count the times a worker died holding them (``crashes``); uploads in
progress reserve the files quota (``file_reservations``); API key names hold 500 characters, as the
Admin API allows.

Revision ID: 0008_hard_store_hardening
Revises: 0007_message_threads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_hard_store_hardening"
down_revision = "0007_message_threads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batch_requests") as batch:
        batch.add_column(sa.Column("crashes", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "file_reservations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_file_reservations_organization_id", "file_reservations", ["organization_id"])
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column(
            "name", type_=sa.String(500), existing_type=sa.String(256), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column(
            "name", type_=sa.String(256), existing_type=sa.String(500), existing_nullable=False
        )
    op.drop_index("ix_file_reservations_organization_id", "file_reservations")
    op.drop_table("file_reservations")
    with op.batch_alter_table("batch_requests") as batch:
        batch.drop_column("crashes")
