"""People sign in to the console: passwords and SSO subjects of users, invite links, key owners,
server-side console sessions, sign-in throttles and the audit record.

Revision ID: 0006_people_sign_in
Revises: 0004_batches
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_people_sign_in"
down_revision = "0004_batches"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(256), nullable=True))
        batch.add_column(sa.Column("sso_subject", sa.String(320), nullable=True))
    with op.batch_alter_table("invites") as batch:
        batch.add_column(sa.Column("token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("token_nonce", sa.String(64), nullable=True))
        batch.add_column(sa.Column("workspace_grants", sa.Text(), nullable=True))
        batch.create_index("ix_invites_token_hash", ["token_hash"], unique=True)
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("created_by_user_id", sa.String(64), nullable=True))
        batch.create_index("ix_api_keys_created_by_user_id", ["created_by_user_id"])
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("admin_key_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("user_agent", sa.String(256), nullable=False),
    )
    op.create_index("ix_console_sessions_user", "console_sessions", ["user_id"])
    op.create_index("ix_console_sessions_admin_key", "console_sessions", ["admin_key_id"])
    op.create_table(
        "sign_in_throttles",
        sa.Column("subject", sa.String(400), primary_key=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(320), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_audit_events_organization_at", "audit_events", ["organization_id", "at"])
    op.create_index("ix_audit_events_actor_at", "audit_events", ["actor_id", "at"])


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_table("sign_in_throttles")
    op.drop_table("console_sessions")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_created_by_user_id")
        batch.drop_column("created_by_user_id")
    with op.batch_alter_table("invites") as batch:
        batch.drop_index("ix_invites_token_hash")
        batch.drop_column("workspace_grants")
        batch.drop_column("token_nonce")
        batch.drop_column("token_hash")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("sso_subject")
        batch.drop_column("password_hash")
