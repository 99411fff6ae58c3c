"""Spend limits, prepaid credits, tier pins and the cost of each usage record.

Revision ID: 0003_limits
Revises: 0005_files_skills
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_limits"
down_revision = "0005_files_skills"
branch_labels = None
depends_on = None


def _big() -> sa.types.TypeEngine[int]:
    return sa.BigInteger()


def upgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(sa.Column("cost_picousd", _big(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("batch", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "billing_accounts",
        sa.Column("organization_id", sa.String(64), primary_key=True),
        sa.Column("tier", sa.String(64), nullable=True),
        sa.Column("credit_balance_pico", _big(), nullable=True),
        sa.Column("credits_purchased_pico", _big(), nullable=False),
        sa.Column("spent_pico", _big(), nullable=False),
        sa.Column("spend_limit_pico", _big(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "credit_grants",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("amount_pico", _big(), nullable=False),
        sa.Column("note", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_credit_grants_organization_id", "credit_grants", ["organization_id"])
    op.create_table(
        "workspace_limits",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("spend_limit_pico", _big(), nullable=True),
        sa.Column("rate_limits", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "spend_periods",
        sa.Column("scope_id", sa.String(64), primary_key=True),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("spent_pico", _big(), nullable=False),
        sa.Column("reserved_pico", _big(), nullable=False),
    )
    op.create_table(
        "spend_reservations",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("period", sa.String(7), nullable=False),
        sa.Column("amount_pico", _big(), nullable=False),
        sa.Column("credit_pico", _big(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_spend_reservations_created_at", "spend_reservations", ["created_at"])


def downgrade() -> None:
    op.drop_table("spend_reservations")
    op.drop_table("spend_periods")
    op.drop_table("workspace_limits")
    op.drop_index("ix_credit_grants_organization_id", "credit_grants")
    op.drop_table("credit_grants")
    op.drop_table("billing_accounts")
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("batch")
        batch.drop_column("cost_picousd")
