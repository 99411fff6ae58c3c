"""Service accounts and their workspace memberships, spend limit increase requests, the owner of a
service account's keys, the request log's index by key, and the workbench's saved prompts.

Revision ID: 0009_peopleadmin_admin_api
Revises: 0008_hard_store_hardening
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_peopleadmin_admin_api"
down_revision = "0008_hard_store_hardening"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_accounts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("organization_role", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_actor_id", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by_actor_id", sa.String(64), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_by_actor_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("organization_id", "name", name="uq_service_accounts_name"),
    )
    op.create_index("ix_service_accounts_organization_id", "service_accounts", ["organization_id"])
    op.create_table(
        "service_account_members",
        sa.Column("workspace_id", sa.String(64), primary_key=True),
        sa.Column(
            "service_account_id", sa.String(64), sa.ForeignKey("service_accounts.id"), primary_key=True
        ),
        sa.Column("workspace_role", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_actor_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "spend_limit_increase_requests",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("requested_pico", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(1024), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_type", sa.String(32), nullable=True),
        sa.Column("resolved_by_id", sa.String(64), nullable=True),
        sa.Column("approved_pico", sa.BigInteger(), nullable=True),
    )
    op.create_index(
        "ix_spend_limit_requests_organization_created",
        "spend_limit_increase_requests",
        ["organization_id", "created_at"],
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("service_account_id", sa.String(64), nullable=True))
        batch.create_index("ix_api_keys_service_account_id", ["service_account_id"])
    op.create_index("ix_usage_records_api_key_created", "usage_records", ["api_key_id", "created_at"])
    op.create_table(
        "saved_prompts",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_saved_prompts_owner", "saved_prompts", ["owner_id", "updated_at"])


def downgrade() -> None:
    op.drop_index("ix_saved_prompts_owner", table_name="saved_prompts")
    op.drop_table("saved_prompts")
    op.drop_index("ix_usage_records_api_key_created", table_name="usage_records")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_service_account_id")
        batch.drop_column("service_account_id")
    op.drop_index("ix_spend_limit_requests_organization_created", table_name="spend_limit_increase_requests")
    op.drop_table("spend_limit_increase_requests")
    op.drop_table("service_account_members")
    op.drop_index("ix_service_accounts_organization_id", table_name="service_accounts")
    op.drop_table("service_accounts")
