"""Wire shapes of the newer Admin API resources of the anthropic 2.10 SDK: rate limits, spend limits
and their increase requests, service accounts, RBAC roles and groups. Lists of these resources use the
``{data, next_page}`` cursor page (``PageCursor``)."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from wisegate.protocol.bounds import ID_LENGTH, Description, IdText

T = TypeVar("T")


MAX_LIMIT = 10**12 - 1  # a rate-limit value (the column holds JSON; 10**12 means "no override")

LimiterType = Literal[
    "fast_itpmca",
    "fast_otpm",
    "input_tokens_per_minute",
    "input_tokens_per_minute_cache_aware",
    "output_tokens_per_minute",
    "requests_per_minute",
    "tokens_per_day",
    "tokens_per_minute",
    "tool_uses_per_second",
]
NoBillingWorkspaceRole = Literal[
    "workspace_user", "workspace_developer", "workspace_restricted_developer", "workspace_admin"
]
SpendLimitPeriod = Literal["daily", "weekly", "monthly"]


class PageCursor(BaseModel, Generic[T]):
    data: list[T]
    next_page: str | None = None


class RateLimitGroup(BaseModel):
    id: str
    type: Literal["model_group"] = "model_group"
    display_name: str


class RateLimitValue(BaseModel):
    type: str
    value: int


class OrganizationRateLimitOut(BaseModel):
    id: str
    type: Literal["rate_limit"] = "rate_limit"
    group: RateLimitGroup
    limits: list[RateLimitValue]
    models: list[str] | None


class LimitSource(BaseModel):
    type: Literal["workspace", "organization"]


class WorkspaceRateLimitValue(BaseModel):
    type: str
    value: int
    org_limit: int | None
    source: LimitSource


class WorkspaceRateLimitOut(BaseModel):
    type: Literal["workspace_rate_limit"] = "workspace_rate_limit"
    rate_limit_id: str
    workspace_id: str
    group: RateLimitGroup
    limits: list[WorkspaceRateLimitValue]
    models: list[str] | None


class LimitUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: LimiterType
    value: int | None = Field(ge=0, le=MAX_LIMIT)


class UpdateWorkspaceRateLimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: list[LimitUpdate]


class SpendScope(BaseModel):
    """``organization``, ``workspace`` (with ``workspace_id``) or ``usage_tier``."""

    type: Literal["organization", "workspace", "usage_tier"]
    workspace_id: str | None = None


class UserActor(BaseModel):
    type: Literal["user_actor"] = "user_actor"
    user_id: str
    name: str | None
    email_address: str | None
    deleted: bool = False


class KeyActor(BaseModel):
    type: Literal["scoped_api_key_actor"] = "scoped_api_key_actor"
    scoped_api_key_id: str


class SpendSummaryOut(BaseModel):
    actor: UserActor
    amount: str | None
    currency: Literal["USD"] = "USD"
    period: SpendLimitPeriod = "monthly"
    period_to_date_spend: str
    scope: SpendScope
    source: SpendScope
    spend_limit_id: str


class SpendLimitOut(BaseModel):
    id: str
    type: Literal["spend_limit"] = "spend_limit"
    amount: str | None
    currency: Literal["USD"] = "USD"
    is_enabled: bool = True
    period: SpendLimitPeriod = "monthly"
    scope: SpendScope
    created_at: str
    updated_at: str


class SpendLimitIncreaseRequestOut(BaseModel):
    id: str
    type: Literal["spend_limit_increase_request"] = "spend_limit_increase_request"
    actor: UserActor
    created_at: str
    period: SpendLimitPeriod = "monthly"
    status: Literal["pending", "approved", "denied"]
    resolved_at: str | None
    resolved_by: UserActor | KeyActor | None
    spend_summary: SpendSummaryOut | None
    # Wisegate extensions: what was asked (cents, as a decimal string) and why
    requested_amount: str | None = None
    reason: str = ""


class ApprovedIncreaseRequestOut(SpendLimitIncreaseRequestOut):
    spend_limit: SpendLimitOut | None


class ApproveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(pattern=r"^[0-9]{1,15}$")
    period: SpendLimitPeriod | None = None
    suppress_notification: bool = False


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    suppress_notification: bool = False


class ServiceAccountOut(BaseModel):
    id: str
    type: Literal["service_account"] = "service_account"
    name: str
    description: str | None
    organization_role: Literal["admin", "developer"]
    created_at: str
    created_by_actor_id: str | None
    updated_at: str
    updated_by_actor_id: str | None
    archived_at: str | None
    archived_by_actor_id: str | None


class CreateServiceAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$", max_length=ID_LENGTH)
    description: Description | None = None
    organization_role: Literal["admin", "developer"] = "developer"


class UpdateServiceAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: Description | None = None
    organization_role: Literal["admin", "developer"] | None = None


class ServiceAccountMemberOut(BaseModel):
    type: Literal["service_account_workspace_member"] = "service_account_workspace_member"
    service_account_id: str
    workspace_id: str
    workspace_role: str
    created_by_actor_id: str | None
    implicit: bool


class AddServiceAccountToWorkspaceBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: IdText
    workspace_role: NoBillingWorkspaceRole


class AddWorkspaceServiceAccountBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_account_id: IdText
    workspace_role: NoBillingWorkspaceRole


class UpdateServiceAccountRoleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_role: NoBillingWorkspaceRole


class ServiceAccountMemberDeleted(BaseModel):
    type: Literal["service_account_workspace_member_deleted"] = "service_account_workspace_member_deleted"
    service_account_id: str
    workspace_id: str


class RBACRoleSource(BaseModel):
    type: Literal["built_in"] = "built_in"


class RBACRoleOut(BaseModel):
    id: str
    type: Literal["rbac_role"] = "rbac_role"
    display_name: str
    source: RBACRoleSource = Field(default_factory=RBACRoleSource)
    created_at: str
    updated_at: str
    # Wisegate extensions: where the role holds and what it is for
    level: Literal["organization", "workspace"]
    description: str


class PermissionResource(BaseModel):
    type: Literal["organization"] = "organization"
    organization_id: str


class RBACRolePermissionOut(BaseModel):
    type: Literal["rbac_role_permission"] = "rbac_role_permission"
    action: str
    resource: PermissionResource


class RBACGroupOut(BaseModel):
    id: str
    type: Literal["rbac_group"] = "rbac_group"
    name: str
    role_ids: list[str]
    source_type: Literal["direct"] = "direct"
    created_at: str
    updated_at: str


class RBACGroupMemberOut(BaseModel):
    type: Literal["rbac_group_member"] = "rbac_group_member"
    rbac_group_id: str
    user_id: str
    email: str
    created_at: str


class AddGroupMemberBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: IdText
