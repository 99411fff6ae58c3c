"""Wire shapes of the Admin API (``/v1/organizations/…``), as the anthropic 2.10 SDK's
``types/organization`` models them, plus the usage and cost reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from wisegate.protocol.bounds import Email, IdText, KeyName, WorkspaceName

OrganizationRole = Literal["user", "developer", "billing", "admin", "claude_code_user"]
AssignableRole = Literal["user", "developer", "billing", "claude_code_user"]
WorkspaceRole = Literal[
    "workspace_user",
    "workspace_developer",
    "workspace_restricted_developer",
    "workspace_admin",
    "workspace_billing",
]
ApiKeyStatus = Literal["active", "inactive", "archived"]


class OrganizationInfo(BaseModel):
    id: str
    type: Literal["organization"] = "organization"
    name: str


class ApiKeyCreatedBy(BaseModel):
    id: str
    type: Literal["user", "service_account"]


class WorkspaceScope(BaseModel):
    type: Literal["workspace"] = "workspace"
    workspace_id: str


class ServiceAccountActor(BaseModel):
    type: Literal["service_account_actor"] = "service_account_actor"
    service_account_id: str


class ApiKeyOut(BaseModel):
    id: str
    type: Literal["api_key"] = "api_key"
    name: str
    workspace_id: str
    scope: WorkspaceScope
    created_at: str
    created_by: ApiKeyCreatedBy | None = None
    expires_at: str | None = None
    partial_key_hint: str | None
    principal: ServiceAccountActor | None = None
    status: str


class CreatedApiKey(ApiKeyOut):
    """Wisegate extension: the response of ``POST /v1/organizations/api_keys``, with the secret once."""

    secret: str


class DataResidency(BaseModel):
    workspace_geo: Literal["us"] = "us"
    allowed_inference_geos: Literal["unrestricted"] = "unrestricted"
    default_inference_geo: Literal["global"] = "global"


class WorkspaceOut(BaseModel):
    id: str
    type: Literal["workspace"] = "workspace"
    name: str
    display_color: str
    created_at: str
    archived_at: str | None
    compartment_id: str
    data_residency: DataResidency = Field(default_factory=DataResidency)
    external_key_id: None = None
    tags: dict[str, str] = Field(default_factory=dict)
    user_profile_id: None = None
    allowed_models: list[str] | None  # Wisegate extension: None = every served model


class WorkspaceMemberOut(BaseModel):
    type: Literal["workspace_member"] = "workspace_member"
    user_id: str
    workspace_id: str
    workspace_role: str


class WorkspaceMemberDeleted(BaseModel):
    type: Literal["workspace_member_deleted"] = "workspace_member_deleted"
    user_id: str
    workspace_id: str


class UserOut(BaseModel):
    id: str
    type: Literal["user"] = "user"
    email: str
    name: str
    role: str
    added_at: str


class UserDeleted(BaseModel):
    id: str
    type: Literal["user_deleted"] = "user_deleted"


class InviteOut(BaseModel):
    id: str
    type: Literal["invite"] = "invite"
    email: str
    role: str
    status: str
    invited_at: str
    expires_at: str
    accepted_at: str | None
    rbac_group_ids: list[str] = Field(default_factory=list)


class InviteDeleted(BaseModel):
    id: str
    type: Literal["invite_deleted"] = "invite_deleted"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WorkspaceBody(_Body):
    """Fields the 2.10 SDK sends for workspaces that Wisegate cannot honour: a customer-managed
    encryption key and a user profile. Accepted when null; a value is a 400 rather than ignored."""

    data_residency: dict[str, object] | None = None
    external_key_id: str | None = None
    user_profile_id: str | None = None

    @model_validator(mode="after")
    def _unavailable(self) -> _WorkspaceBody:
        if self.external_key_id is not None:
            raise ValueError(
                "external_key_id: customer-managed encryption keys are not available in Wisegate"
            )
        if self.user_profile_id is not None:
            raise ValueError("user_profile_id: user profiles are not available in Wisegate")
        return self


class CreateWorkspaceBody(_WorkspaceBody):
    name: WorkspaceName
    display_color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}$")
    allowed_models: list[str] | None = None
    tags: dict[str, str] | None = None


class UpdateWorkspaceBody(_WorkspaceBody):
    name: WorkspaceName | None = None
    display_color: str | None = Field(default=None, pattern=r"^#[0-9A-Fa-f]{6}$")
    allowed_models: list[str] | None = None
    tags: dict[str, str | None] | None = None


class UpdateApiKeyBody(_Body):
    name: KeyName | None = None
    status: ApiKeyStatus | None = None


class CreateApiKeyBody(_Body):
    name: KeyName
    workspace_id: IdText
    service_account_id: IdText | None = None  # the key is the service account's (it must be a member there)


class AddMemberBody(_Body):
    user_id: IdText
    workspace_role: WorkspaceRole


class UpdateMemberBody(_Body):
    workspace_role: WorkspaceRole
    workspace_id: str | None = None  # the 2.10 SDK repeats the path's workspace id in the body


class UpdateUserBody(_Body):
    role: AssignableRole


class CreateInviteBody(_Body):
    email: Email
    role: AssignableRole
    rbac_group_ids: list[str] | None = None


class CacheCreation(BaseModel):
    ephemeral_1h_input_tokens: int = 0
    ephemeral_5m_input_tokens: int = 0


class ServerToolUse(BaseModel):
    web_search_requests: int = 0


class UsageResult(BaseModel):
    uncached_input_tokens: int = 0
    cache_creation: CacheCreation = Field(default_factory=CacheCreation)
    cache_read_input_tokens: int = 0
    output_tokens: int = 0
    server_tool_use: ServerToolUse = Field(default_factory=ServerToolUse)
    api_key_id: str | None = None
    workspace_id: str | None = None
    model: str | None = None
    service_tier: str | None = None
    context_window: str | None = None
    inference_geo: str | None = None
    speed: str | None = None
    account_id: str | None = None
    service_account_id: str | None = None


class UsageBucket(BaseModel):
    starting_at: str
    ending_at: str
    results: list[UsageResult]


class UsageReport(BaseModel):
    data: list[UsageBucket]
    has_more: bool
    next_page: str | None


class CostResult(BaseModel):
    currency: Literal["USD"] = "USD"
    amount: str  # cents, exact decimal string
    workspace_id: str | None = None
    description: str | None = None
    cost_type: str | None = None
    context_window: str | None = None
    model: str | None = None
    service_tier: str | None = None
    token_type: str | None = None
    inference_geo: str | None = None


class CostBucket(BaseModel):
    starting_at: str
    ending_at: str
    results: list[CostResult]


class CostReport(BaseModel):
    data: list[CostBucket]
    has_more: bool
    next_page: str | None
