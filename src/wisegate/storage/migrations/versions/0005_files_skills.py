"""Files (metadata; bytes live in the blob store), skills and skill versions.

Revision ID: 0005_files_skills
Revises: 0002_admin_api
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_files_skills"
down_revision = "0002_admin_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("filename", sa.String(256), nullable=False),
        sa.Column("mime_type", sa.String(256), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("downloadable", sa.Boolean(), nullable=False),
        sa.Column("blob_key", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_files_workspace_created", "files", ["workspace_id", "created_at"])
    op.create_index("ix_files_organization", "files", ["organization_id"])
    op.create_table(
        "skills",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("organization_id", sa.String(64), nullable=False),
        sa.Column("workspace_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_skills_workspace_name", "skills", ["workspace_id", "name"], unique=True)
    op.create_index("ix_skills_workspace_created", "skills", ["workspace_id", "created_at"])
    op.create_table(
        "skill_versions",
        sa.Column("skill_id", sa.String(64), sa.ForeignKey("skills.id"), primary_key=True),
        sa.Column("version", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(1024), nullable=False),
        sa.Column("directory", sa.String(256), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.Column("paths", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("blob_key", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("skill_versions")
    op.drop_index("ix_skills_workspace_created", "skills")
    op.drop_index("ix_skills_workspace_name", "skills")
    op.drop_table("skills")
    op.drop_index("ix_files_organization", "files")
    op.drop_index("ix_files_workspace_created", "files")
    op.drop_table("files")
