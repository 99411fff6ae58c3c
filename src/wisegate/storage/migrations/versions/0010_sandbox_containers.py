"""Code execution containers (``code_containers``) and their metering in ``usage_records``.

Revision ID: 0010_sandbox_containers
Revises: 0009_peopleadmin_admin_api
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_sandbox_containers"
down_revision = "0009_peopleadmin_admin_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_containers",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("node", sa.String(255), nullable=False),
        sa.Column("skills", sa.Text(), nullable=False),
        sa.Column("run_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_code_containers_workspace", "code_containers", ["workspace_id"])
    op.create_index("ix_code_containers_node_expires", "code_containers", ["node", "expires_at"])
    with op.batch_alter_table("usage_records") as batch:
        batch.add_column(
            sa.Column("code_execution_requests", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("container_ms", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("container_ms")
        batch.drop_column("code_execution_requests")
    op.drop_index("ix_code_containers_node_expires", table_name="code_containers")
    op.drop_index("ix_code_containers_workspace", table_name="code_containers")
    op.drop_table("code_containers")
