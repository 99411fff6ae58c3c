"""SQLAlchemy 2 declarative tables: the only place table shapes live.

The lengths of columns that hold what people type come from ``protocol/bounds.py``, which validation
checks against too, so a value that passes validation always fits.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from wisegate.protocol.bounds import (
    EMAIL_LENGTH,
    FILENAME_LENGTH,
    KEY_NAME_LENGTH,
    MIME_TYPE_LENGTH,
    MODEL_LENGTH,
    NAME_LENGTH,
    NOTE_LENGTH,
    REASON_LENGTH,
    SKILL_DESCRIPTION_LENGTH,
    SKILL_DIRECTORY_LENGTH,
    SKILL_NAME_LENGTH,
)


class Base(DeclarativeBase):
    pass


class OrganizationRow(Base):
    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkspaceRow(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(KEY_NAME_LENGTH))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    partial_key_hint: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by_user_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # 0009: the service account whose key this is (None: a person's or the operator's key)
    service_account_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class UsageRecordRow(Base):
    __tablename__ = "usage_records"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(MODEL_LENGTH))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cache_creation_input_tokens: Mapped[int] = mapped_column(Integer)
    cache_read_input_tokens: Mapped[int] = mapped_column(Integer)
    service_tier: Mapped[str] = mapped_column(String(16))
    stop_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    error_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    streamed: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cost_picousd: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    batch: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    code_execution_requests: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    container_ms: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    __table_args__ = (
        Index("ix_usage_records_workspace_created", "workspace_id", "created_at"),
        Index("ix_usage_records_organization_created", "organization_id", "created_at"),  # 0002: reports
        Index("ix_usage_records_api_key_created", "api_key_id", "created_at"),  # 0009: request log
    )


class FileRow(Base):
    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(FILENAME_LENGTH + 1))
    mime_type: Mapped[str] = mapped_column(String(MIME_TYPE_LENGTH))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    downloadable: Mapped[bool] = mapped_column(Boolean)
    blob_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_files_workspace_created", "workspace_id", "created_at"),
        Index("ix_files_organization", "organization_id"),
    )


class FileReservationRow(Base):
    """Storage quota held by an upload in progress (``domain/files.py``), replaced by its file row."""

    __tablename__ = "file_reservations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SkillRow(Base):
    __tablename__ = "skills"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(SKILL_NAME_LENGTH))
    display_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_skills_workspace_name", "workspace_id", "name", unique=True),
        Index("ix_skills_workspace_created", "workspace_id", "created_at"),
    )


class SkillVersionRow(Base):
    __tablename__ = "skill_versions"

    skill_id: Mapped[str] = mapped_column(ForeignKey("skills.id"), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(SKILL_NAME_LENGTH))
    description: Mapped[str] = mapped_column(String(SKILL_DESCRIPTION_LENGTH))
    directory: Mapped[str] = mapped_column(String(SKILL_DIRECTORY_LENGTH))
    instructions: Mapped[str] = mapped_column(Text)
    paths: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    blob_key: Mapped[str] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkspaceSettingsRow(Base):
    """Admin API settings of a workspace (migration 0002): display colour and model allow-list."""

    __tablename__ = "workspace_settings"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    display_color: Mapped[str] = mapped_column(String(16))
    allowed_models: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON list; NULL = all models


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    password_hash: Mapped[str | None] = mapped_column(String(256), nullable=True)  # argon2id
    sso_subject: Mapped[str | None] = mapped_column(String(320), nullable=True)  # "issuer sub"

    __table_args__ = (UniqueConstraint("organization_id", "email", name="uq_users_organization_email"),)


class InviteRow(Base):
    __tablename__ = "invites"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(ForeignKey("organizations.id"), index=True)
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH))
    role: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The accept link's token is derived from the console secret and this nonce; only its hash is kept.
    token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    token_nonce: Mapped[str | None] = mapped_column(String(64), nullable=True)
    workspace_grants: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON [[workspace, role]]

    __table_args__ = (Index("ix_invites_token_hash", "token_hash", unique=True),)


class WorkspaceMemberRow(Base):
    __tablename__ = "workspace_members"

    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    workspace_role: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConsoleSessionRow(Base):
    """A console sign-in (a user's, or an admin key's); the cookie holds a token whose SHA-256 is ``id``."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    admin_key_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ip: Mapped[str] = mapped_column(String(64))
    user_agent: Mapped[str] = mapped_column(String(256))

    __table_args__ = (
        Index("ix_console_sessions_user", "user_id"),
        Index("ix_console_sessions_admin_key", "admin_key_id"),
    )


class SignInThrottleRow(Base):
    """Recent failed sign-ins of one account (``email:…``) or client address (``ip:…``)."""

    __tablename__ = "sign_in_throttles"

    subject: Mapped[str] = mapped_column(String(400), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class AuditEventRow(Base):
    """Sign-ins, failures and every change made through the console (never a password or a secret)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    actor_type: Mapped[str] = mapped_column(String(16))  # user | admin_key | anonymous
    actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str | None] = mapped_column(String(320), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON

    __table_args__ = (
        Index("ix_audit_events_organization_at", "organization_id", "at"),
        Index("ix_audit_events_actor_at", "actor_id", "at"),
    )


class BillingAccountRow(Base):
    """An organization's tier pin, prepaid credit balance (NULL: postpaid) and user-set spend limit."""

    __tablename__ = "billing_accounts"

    organization_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tier: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credit_balance_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    credits_purchased_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    spend_limit_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CreditGrantRow(Base):
    __tablename__ = "credit_grants"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    amount_pico: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(String(NOTE_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WorkspaceLimitRow(Base):
    """A workspace's user-set monthly spend limit and lower rate limits (JSON: class -> rpm/itpm/otpm)."""

    __tablename__ = "workspace_limits"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    spend_limit_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    rate_limits: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SpendPeriodRow(Base):
    """Spend of an organization or workspace in one calendar month (UTC): settled and reserved."""

    __tablename__ = "spend_periods"

    scope_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)
    spent_pico: Mapped[int] = mapped_column(BigInteger, default=0)
    reserved_pico: Mapped[int] = mapped_column(BigInteger, default=0)


class SpendReservationRow(Base):
    """What an in-flight request holds; released at settlement (or by the sweep after a crash)."""

    __tablename__ = "spend_reservations"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(7))
    amount_pico: Mapped[int] = mapped_column(BigInteger)
    credit_pico: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class MessageBatchRow(Base):
    __tablename__ = "message_batches"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    api_key_id: Mapped[str] = mapped_column(String(64))
    processing_status: Mapped[str] = mapped_column(String(16))
    request_count: Mapped[int] = mapped_column(Integer)
    # Counts are frozen here when the batch ends; while it runs they are counted from batch_requests.
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    errored: Mapped[int] = mapped_column(Integer, default=0)
    canceled: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_initiated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        Index("ix_message_batches_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_message_batches_status", "processing_status"),
    )


class BatchRequestRow(Base):
    __tablename__ = "batch_requests"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    batch_id: Mapped[str] = mapped_column(ForeignKey("message_batches.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    custom_id: Mapped[str] = mapped_column(String(64))
    params: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times a worker died holding this request (its lease lapsed); see storage/batches.py.
    crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    __table_args__ = (
        UniqueConstraint("batch_id", "custom_id", name="uq_batch_requests_custom_id"),
        Index("ix_batch_requests_batch_status", "batch_id", "status"),
        Index("ix_batch_requests_batch_id", "batch_id", "id"),
        Index("ix_batch_requests_status_id", "status", "id"),
    )


class MessageThreadRow(Base):
    """Server-held conversation state: one row per response of a thread (``thread`` on Messages).

    ``state`` (JSON: system, tools, messages up to and with the response) is held by the newest
    response of a thread only: once a turn continues from a row, its ``state`` is cleared and
    ``continued`` is ``done``. Rows live until ``expires_at`` (the retention setting) or until their
    workspace is archived.
    """

    __tablename__ = "message_threads"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(256))
    state: Mapped[str | None] = mapped_column(Text, nullable=True)
    continued: Mapped[str | None] = mapped_column(String(16), nullable=True)
    continued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_message_threads_workspace", "workspace_id"),
        Index("ix_message_threads_expires", "expires_at"),
    )


class ServiceAccountRow(Base):
    """A non-human principal (migration 0009): it holds API keys in the workspaces it is a member of."""

    __tablename__ = "service_accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(String(1024), default="")
    organization_role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by_actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_by_actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    archived_by_actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_service_accounts_name"),)


class ServiceAccountMemberRow(Base):
    """A service account's explicit membership of a workspace (0009)."""

    __tablename__ = "service_account_members"

    workspace_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    service_account_id: Mapped[str] = mapped_column(ForeignKey("service_accounts.id"), primary_key=True)
    workspace_role: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by_actor_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class SpendLimitRequestRow(Base):
    """A person's request for a higher monthly spend limit of a workspace (0009)."""

    __tablename__ = "spend_limit_increase_requests"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(64))
    requested_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    reason: Mapped[str] = mapped_column(String(REASON_LENGTH), default="")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    resolved_by_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    resolved_by_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    approved_pico: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (Index("ix_spend_limit_requests_organization_created", "organization_id", "created_at"),)


class SavedPromptRow(Base):
    """A workbench prompt a person (or an admin-key session) saved: the form's state as JSON (0009)."""

    __tablename__ = "saved_prompts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[str] = mapped_column(String(64))  # a user id, or an admin key id
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_saved_prompts_owner", "owner_id", "updated_at"),)


class ContainerRow(Base):
    """A code execution container: its files live under ``<data_dir>/containers/<id>`` on ``node``.

    ``expires_at`` is the earlier of ``last_used_at`` + the idle timeout and ``created_at`` + the
    maximum age; ``run_ms`` is the sandbox time its calls used (metered as container time).
    """

    __tablename__ = "code_containers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64))
    workspace_id: Mapped[str] = mapped_column(String(64))
    node: Mapped[str] = mapped_column(String(255))
    skills: Mapped[str] = mapped_column(Text, default="[]")
    run_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_code_containers_workspace", "workspace_id"),
        Index("ix_code_containers_node_expires", "node", "expires_at"),
    )
