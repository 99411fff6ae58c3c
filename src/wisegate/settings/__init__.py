"""Settings from ``WISEGATE_*`` environment variables and an optional TOML file (``WISEGATE_CONFIG``).

Environment variables win over the file. Nested values use ``__`` in variable names
(``WISEGATE_LOCAL__THREADS=4``). No module-level instance: ``Settings()`` reads the environment
each time it is built.
"""

from __future__ import annotations

import fnmatch
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from wisegate.settings.tiers import LimitsConfig


class DeploymentConfig(BaseModel):
    """One place a model is served: a backend, the model id there, and optionally its own keys."""

    backend: str
    upstream_model: str | None = None
    weight: float = Field(default=1.0, gt=0)
    priority: int | None = None  # default: the position in the list (tried in order)
    api_keys: list[str] = Field(default_factory=list)


class RoutingConfig(BaseModel):
    """Retries, fallback and circuit breaking over a model's deployments."""

    retries: int = Field(default=2, ge=0)  # extra attempts on the same deployment
    backoff_seconds: float = Field(default=0.25, ge=0)  # doubled per attempt, with jitter
    max_backoff_seconds: float = Field(default=8.0, ge=0)
    max_retry_after_seconds: float = Field(default=10.0, ge=0)  # longer retry-after: next deployment
    timeout_seconds: float = Field(default=600.0, gt=0)  # per attempt, until the answer starts
    breaker_failures: int = Field(default=5, ge=1)  # consecutive failures that open the breaker
    breaker_cooldown_seconds: float = Field(default=30.0, ge=0)


class ModelConfig(BaseModel):
    """One model id served by Wisegate and the backend (or routed deployments) that answer it."""

    id: str
    backend: str | None = None
    deployments: list[DeploymentConfig] = Field(default_factory=list)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    display_name: str | None = None
    created_at: str = "2024-11-01T00:00:00Z"
    aliases: list[str] = Field(default_factory=list)
    lifecycle: Literal["active", "deprecated", "retired"] = "active"
    deprecated_at: str | None = None
    retires_at: str | None = None
    line: Literal["haiku", "sonnet", "opus", "fable", "mythos"] | None = None
    upstream_model: str | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    clamp_max_tokens: bool = False
    options: dict[str, Any] = Field(default_factory=dict)
    # Server-side fallbacks (domain/fallbacks.py): the models ``fallbacks: "default"`` tries, in
    # order, when this one declines; with fallback_on_overload also when it is overloaded (529).
    fallbacks: list[str] = Field(default_factory=list)
    fallback_on_overload: bool = False

    def deployment_list(self) -> list[DeploymentConfig]:
        """``deployments``, or the single ``backend`` as one deployment."""
        if self.deployments:
            return self.deployments
        if self.backend is None:
            raise ValueError(f"model {self.id!r} needs `backend` or `deployments`")
        return [DeploymentConfig(backend=self.backend, upstream_model=self.upstream_model)]

    @field_validator("created_at", "deprecated_at", "retires_at")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an RFC 3339 date-time such as 2025-09-29T00:00:00Z"
                ) from None
        return value


class BackendConfig(BaseModel):
    """A backend instance: ``type`` names the implementation, the rest are its options."""

    type: str
    options: dict[str, Any] = Field(default_factory=dict)


class PriceConfig(BaseModel):
    """USD per million tokens, as decimal strings (exact)."""

    input: str
    output: str
    cache_write_5m: str
    cache_write_1h: str
    cache_read: str


def _price(inp: str, w5: str, w1h: str, read: str, out: str) -> PriceConfig:
    return PriceConfig(input=inp, output=out, cache_write_5m=w5, cache_write_1h=w1h, cache_read=read)


def _default_prices() -> dict[str, PriceConfig]:
    """Anthropic's list prices (late 2026), by model id glob; the embedded model is free."""
    return {
        "claude-fable-5*": _price("10", "12.50", "20", "1.00", "50"),
        "claude-mythos-5*": _price("10", "12.50", "20", "1.00", "50"),
        "claude-opus-5-5*": _price("4", "5", "8", "0.20", "20"),
        "claude-opus-4-1*": _price("15", "18.75", "30", "1.50", "75"),
        "claude-opus-4-2025*": _price("15", "18.75", "30", "1.50", "75"),
        "claude-opus-*": _price("5", "6.25", "10", "0.50", "25"),
        "claude-sonnet-5-5*": _price("2", "2.50", "4", "0.10", "10"),
        "claude-sonnet-5*": _price("2", "2.50", "4", "0.20", "10"),
        "claude-sonnet-*": _price("3", "3.75", "6", "0.30", "15"),
        "claude-3-7-sonnet*": _price("3", "3.75", "6", "0.30", "15"),
        "claude-haiku-5-5*": _price("0.10", "0.125", "0.20", "0.01", "0.50"),
        "claude-haiku-4-5*": _price("1", "1.25", "2", "0.10", "5"),
        "claude-3-5-haiku*": _price("0.80", "1", "1.60", "0.08", "4"),
        "claude-3-haiku*": _price("0.25", "0.30", "0.50", "0.03", "1.25"),
    }


def _default_backends() -> dict[str, BackendConfig]:
    return {"local": BackendConfig(type="local")}


def _default_models() -> list[ModelConfig]:
    return [
        ModelConfig(
            id="smollm2-135m-instruct",
            backend="local",
            display_name="SmolLM2 135M Instruct (embedded)",
            created_at="2024-11-01T00:00:00Z",
            max_input_tokens=8192,
            max_output_tokens=2048,
        )
    ]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="WISEGATE_", env_nested_delimiter="__", extra="forbid", toml_file=None
    )

    host: str = "127.0.0.1"
    port: int = 8080
    # API processes ``wisegate serve`` runs on the port (supervisor.py); more than one needs the
    # rate-limit buckets in Redis (``redis_url``) unless limits are off.
    workers: int = Field(default=1, ge=1)
    data_dir: Path = Path("wisegate-data")
    database_url: str | None = None
    log_level: str = "INFO"
    log_format: str = "json"
    # Settlements go to a local append-only journal under data_dir and are committed in the
    # background (storage/ledger.py); false: each request waits for its transaction.
    ledger_journal: bool = True

    max_messages_request_bytes: int = 32 * 1024 * 1024
    # Each connection (connections.py; docs/operations.md, "Limits on requests"): the request line and
    # headers at most max_header_bytes (431 past it) arriving within header_timeout_seconds (408), an
    # idle kept-alive connection closed after keep_alive_seconds, at most max_connections open (529);
    # the body with no gap longer than body_timeout_seconds and, after that long, at
    # body_min_bytes_per_second at least (408).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    keep_alive_seconds: float = Field(default=5.0, gt=0)
    max_connections: int = Field(default=1024, ge=1)
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    body_min_bytes_per_second: int = Field(default=16 * 1024, ge=1)
    # A stream silent this long gets a ping (api/sse.py), so proxies and clients keep it; 0: never.
    stream_ping_seconds: float = Field(default=10.0, ge=0)
    # PDF documents read as text for models that cannot read PDFs (domain/attachments.py): at most
    # pdf_max_pages pages and pdf_max_text_chars characters, extracted within pdf_extract_seconds.
    pdf_max_pages: int = Field(default=100, ge=1)
    pdf_max_text_chars: int = Field(default=1_000_000, ge=1)
    pdf_extract_seconds: float = Field(default=10.0, gt=0)
    key_cache_seconds: float = 5.0

    # Files and Skills (domain/files.py, domain/skills.py)
    files_max_bytes: int = 500 * 1024 * 1024
    files_quota_bytes: int = 500 * 1024 * 1024 * 1024
    files_store: Literal["local", "s3"] = "local"
    files_s3_bucket: str | None = None
    files_s3_prefix: str = ""
    files_s3_endpoint_url: str | None = None
    files_s3_region: str | None = None
    files_downloadable_uploads: bool = False
    skills_max_bytes: int = 8 * 1024 * 1024
    max_batch_request_bytes: int = 256 * 1024 * 1024
    max_batch_requests: int = 100_000
    batch_worker: bool = True
    batch_concurrency: int = 32
    batch_lease_seconds: float = 60.0
    # A batch request held by a worker that died this many times ends errored (api_error).
    batch_max_crashes: int = Field(default=3, ge=1)
    # Message threads (``thread`` on Messages): how long a thread's conversation is held after its
    # newest turn, in the database, before it is deleted.
    thread_retention_seconds: int = Field(default=7 * 24 * 3600, ge=60)

    # The code execution tool (docs/code-execution.md): Wisegate runs it in a bubblewrap sandbox for
    # backends that do not run it themselves.
    code_execution_max_rounds: int = Field(default=10, ge=1)
    container_idle_seconds: int = Field(default=3600, ge=1)
    container_max_age_seconds: int = Field(default=30 * 24 * 3600, ge=1)
    container_hour_price: str = "0.05"  # USD per container-hour of sandbox time
    sandbox_cpu_seconds: int = Field(default=60, ge=1)
    sandbox_wall_seconds: float = Field(default=120.0, gt=0)
    sandbox_memory_bytes: int = Field(default=2 * 1024**3, ge=64 * 1024**2)
    sandbox_processes: int = Field(default=128, ge=4)
    sandbox_open_files: int = Field(default=1024, ge=16)
    sandbox_disk_bytes: int = Field(default=1024**3, ge=1024**2)
    sandbox_uid: int = Field(default=65534, ge=1)  # the sandbox's user when the server runs as root
    sandbox_ro_paths: list[str] = Field(default_factory=list)  # more host paths, mounted read-only
    sandbox_python_path: list[str] = Field(default_factory=list)  # PYTHONPATH inside the sandbox
    sandbox_cpus: float = Field(default=1.0, gt=0)  # CPUs one call may use (its cgroup's CPU quota)
    sandbox_max_running: int = Field(default=4, ge=1)  # calls running at once; the others wait
    # Without a usable cgroup or tmpfs mount, run code with rlimits only instead of refusing it.
    sandbox_allow_soft_limits: bool = False
    containers_per_workspace: int = Field(default=10, ge=1)  # live containers per workspace
    container_total_bytes: int = Field(default=16 * 1024**3, ge=1024**2)  # sum of disk quotas per node
    code_execution_max_output_files: int = Field(default=100, ge=0)  # Files made per call from outputs/
    node_name: str | None = None  # this node's name in scaled mode (default: the host name)

    # Requests each embedded model (``local`` backend) decodes together; each slot holds n_ctx tokens
    # of KV cache. A backend's ``slots`` option overrides it.
    embedded_slots: int = Field(default=4, ge=1, le=64)
    backends: dict[str, BackendConfig] = Field(default_factory=_default_backends)
    models: list[ModelConfig] = Field(default_factory=_default_models)
    prices: dict[str, PriceConfig] = Field(default_factory=_default_prices)

    # The web console (console/): the HMAC key of its session cookies (default: a random secret kept
    # in <data_dir>/console-secret) and how long a login lasts.
    console_secret: str | None = None
    console_session_seconds: int = Field(default=8 * 3600, ge=60)
    # Single sign-on with OpenID Connect (off while console_sso_issuer is unset).
    console_sso_issuer: str | None = None
    console_sso_client_id: str | None = None
    console_sso_client_secret: str | None = None
    console_sso_allowed_domains: list[str] = Field(default_factory=list)  # empty: any e-mail domain
    console_sso_new_users: Literal["invite", "create"] = "invite"
    console_sso_default_role: Literal["user", "developer", "billing", "claude_code_user"] = "user"
    console_public_url: str | None = None  # e.g. https://gate.example.com, for invite links and SSO

    redis_url: str | None = None
    redis_prefix: str = "wisegate"

    # Operations (docs/operations.md): the bearer token /metrics asks for (none: open), the drain on
    # SIGTERM (grace: /ready is 503 while the listener stays open, so the load balancer notices;
    # then in-flight requests get up to drain_seconds in all), and OpenTelemetry tracing (an extra).
    metrics_token: str | None = None
    drain_seconds: float = Field(default=30.0, ge=0)
    drain_grace_seconds: float = Field(default=3.0, ge=0)
    tracing: bool = False
    tracing_endpoint: str | None = None
    tracing_sample_ratio: float = Field(default=1.0, ge=0, le=1)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)

    @model_validator(mode="after")
    def _check_models(self) -> Settings:
        for model in self.models:
            for deployment in model.deployment_list():
                if deployment.backend not in self.backends:
                    raise ValueError(f"model {model.id!r} names unknown backend {deployment.backend!r}")
        served = {m.id for m in self.models} | {a for m in self.models for a in m.aliases}
        for model in self.models:
            for fallback in model.fallbacks:
                if fallback not in served and not any(fnmatch.fnmatchcase(fallback, a) for a in served):
                    raise ValueError(f"model {model.id!r} falls back to {fallback!r}, which is not served")
        if self.files_store == "s3" and not self.files_s3_bucket:
            raise ValueError("files_store = 's3' needs files_s3_bucket")
        if self.console_sso_issuer and not (self.console_sso_client_id and self.console_sso_client_secret):
            raise ValueError("console_sso_issuer needs console_sso_client_id and console_sso_client_secret")
        return self

    @property
    def resolved_database_url(self) -> str:
        """``database_url`` or an SQLite file inside ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'wisegate.db').resolve()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("WISEGATE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)
