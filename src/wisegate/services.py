"""The explicit container of everything a request may need, built once per app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from wisegate.backends.base import Backend
from wisegate.backends.local import slot_count
from wisegate.backends.local.supervisor import with_runner_sockets
from wisegate.backends.registry import BackendRegistry
from wisegate.domain.accounts import AccountService
from wisegate.domain.attachments import Attachments
from wisegate.domain.batches import BatchService
from wisegate.domain.catalog import ModelCatalog
from wisegate.domain.clock import Clock, SystemClock
from wisegate.domain.code_execution.containers import ContainerService
from wisegate.domain.code_execution.loop import CodeExecution
from wisegate.domain.code_execution.sandbox import Sandbox, SandboxLimits
from wisegate.domain.drain import Drain
from wisegate.domain.files import BlobStore, FileService, LocalBlobStore, S3BlobStore, Staging
from wisegate.domain.health import HealthService
from wisegate.domain.keys import KeyService
from wisegate.domain.limits import LimitService, build_limiter
from wisegate.domain.limits.accounts import BillingAccounts
from wisegate.domain.messages import MessageService
from wisegate.domain.models import ModelPages
from wisegate.domain.pdf_text import PdfLimits
from wisegate.domain.people import PeopleService
from wisegate.domain.pricing import PriceTable
from wisegate.domain.rate_limits import RateLimitService
from wisegate.domain.rbac import RbacService
from wisegate.domain.reports import ReportService
from wisegate.domain.request_log import RequestLogService
from wisegate.domain.secret import ConsoleSecret
from wisegate.domain.service_accounts import ServiceAccountService
from wisegate.domain.skills import SkillService
from wisegate.domain.spend_limits import SpendLimitService
from wisegate.domain.sso import SingleSignOn
from wisegate.domain.tenancy import TenancyService
from wisegate.domain.threads import ThreadService
from wisegate.domain.usage import UsageService
from wisegate.domain.workbench import WorkbenchService
from wisegate.settings import Settings
from wisegate.storage.accounts import AccountRepo
from wisegate.storage.batches import BatchRepo
from wisegate.storage.billing import BillingRepo
from wisegate.storage.containers import ContainerRepo
from wisegate.storage.db import Database
from wisegate.storage.directory import DirectoryRepo
from wisegate.storage.files import FileRepo, SkillRepo
from wisegate.storage.ledger import LedgerJournal
from wisegate.storage.principals import ServiceAccountRepo, SpendRequestRepo
from wisegate.storage.prompts import PromptRepo
from wisegate.storage.reports import UsageReportRepo
from wisegate.storage.repos import TenancyRepo, UsageRepo
from wisegate.storage.request_log import RequestLogRepo
from wisegate.storage.threads import ThreadRepo


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: BackendRegistry
    keys: KeyService
    usage: UsageService
    messages: MessageService
    files: FileService
    skills: SkillService
    catalog: ModelCatalog
    models: ModelPages
    tenancy: TenancyService
    people: PeopleService
    reports: ReportService
    limits: LimitService
    billing: BillingAccounts
    batches: BatchService
    threads: ThreadService
    drain: Drain
    health: HealthService
    secret: ConsoleSecret
    accounts: AccountService
    sso: SingleSignOn | None
    rate_limits: RateLimitService
    spend_limits: SpendLimitService
    service_accounts: ServiceAccountService
    rbac: RbacService
    request_log: RequestLogService
    workbench: WorkbenchService
    code_execution: CodeExecution
    organization_id: str | None = field(default=None)

    @classmethod
    def from_settings(
        cls, settings: Settings, backends: dict[str, Backend] | None = None, clock: Clock | None = None
    ) -> Services:
        """Wire the services; ``backends`` replaces configured backends by name (tests, embedding)."""
        db = Database(settings.resolved_database_url)
        registry = BackendRegistry(with_runner_sockets(settings), settings.models, backends)
        files, skills = _files_and_skills(settings, db)
        attachments = Attachments(
            files,
            skills,
            settings.max_messages_request_bytes,
            PdfLimits(settings.pdf_max_pages, settings.pdf_max_text_chars, settings.pdf_extract_seconds),
        )
        keys = KeyService(TenancyRepo(db), settings.key_cache_seconds)
        directory = DirectoryRepo(db)
        catalog = ModelCatalog(registry, _allow_list(directory), settings.key_cache_seconds)
        display_names = {m.id: m.display_name or m.id for m in settings.models}
        prices = PriceTable(settings.prices, settings.container_hour_price)
        journal = LedgerJournal(settings.data_dir / "ledger-journal") if settings.ledger_journal else None
        billing = BillingRepo(db, journal)
        limiter = build_limiter(settings)
        limits = LimitService(settings.limits, limiter, billing, prices)
        billing_accounts = BillingAccounts(limits)
        drain = Drain()
        clock = clock or SystemClock()
        secret = ConsoleSecret(settings.console_secret, settings.data_dir)
        people = PeopleService(directory, TenancyRepo(db), secret)
        accounts = AccountService(
            AccountRepo(db), directory, TenancyRepo(db), keys, people, clock, settings.console_session_seconds
        )
        code_execution = _code_execution(settings, db, files, skills, attachments)
        messages = MessageService(
            registry, limits, catalog=catalog, attachments=attachments, code_execution=code_execution
        )
        threads = ThreadService(ThreadRepo(db), messages, clock, settings.thread_retention_seconds)
        tenancy = TenancyService(
            TenancyRepo(db), directory, keys, catalog, on_archive=threads.forget_workspace
        )
        return cls(
            settings=settings,
            db=db,
            registry=registry,
            keys=keys,
            usage=UsageService(UsageRepo(db), billing.drain),
            messages=messages,
            files=files,
            skills=skills,
            catalog=catalog,
            tenancy=tenancy,
            people=people,
            reports=ReportService(
                UsageReportRepo(db), prices, lambda m: display_names.get(m, m), settled=billing.drain
            ),
            limits=limits,
            billing=billing_accounts,
            batches=BatchService(
                BatchRepo(db),
                clock,
                billing_accounts.unsettle,
                settings.batch_lease_seconds,
                settings.batch_max_crashes,
            ),
            models=ModelPages(catalog),
            threads=threads,
            drain=drain,
            health=HealthService(db, limiter, registry, drain, redis=settings.redis_url is not None),
            secret=secret,
            accounts=accounts,
            sso=SingleSignOn.from_settings(settings, secret),
            rate_limits=RateLimitService(limits, billing_accounts, tenancy, catalog),
            spend_limits=SpendLimitService(
                SpendRequestRepo(db),
                directory,
                limits,
                billing_accounts,
                tenancy,
                RequestLogRepo(db),
                clock,
                settled=billing.drain,
            ),
            service_accounts=ServiceAccountService(ServiceAccountRepo(db), tenancy),
            rbac=RbacService(people),
            request_log=RequestLogService(RequestLogRepo(db), settled=billing.drain),
            workbench=WorkbenchService(PromptRepo(db)),
            code_execution=code_execution,
        )

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """Start the backends and learn the default organization; release everything on shutdown."""
        try:
            self.drain.bind()
            org = await self.keys.bootstrap()
            self.organization_id = org.id
            await self.accounts.forget_old()
            self.files.staging.sweep(older_than=3600)
            await anyio.to_thread.run_sync(self._warn_soft_limits)
            await anyio.to_thread.run_sync(self._remove_stale_groups)
        except BaseException:
            await self.close()
            raise
        async with self.running(), batch_worker(self), sampling(self):
            yield

    def _warn_soft_limits(self) -> None:
        """Log a warning when code execution will run with rlimits only (the operator allowed it)."""
        sandbox = self.code_execution.containers.sandbox
        if sandbox.allow_soft_limits and (reason := sandbox.soft_reason()) is not None:
            logging.getLogger("wisegate.sandbox").warning(
                "code execution runs with soft limits (rlimits only, "
                "WISEGATE_SANDBOX_ALLOW_SOFT_LIMITS=true): %s",
                reason,
            )

    def _remove_stale_groups(self) -> None:
        """Delete the sandbox call groups a killed server left behind, when code execution can run."""
        sandbox = self.code_execution.containers.sandbox
        if shutil.which(sandbox.bwrap) is None:
            return
        removed = sandbox.remove_stale_groups()
        if removed:
            logging.getLogger("wisegate.sandbox").info("removed %d stale sandbox cgroups", removed)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The backends and the limit service started (dead processes' ledger journals replayed, this
        process's spend leases renewed) while the block runs; everything closed after it, also when
        starting failed. The server's lifespan and ``wisegate worker`` both run in it."""
        try:
            await self.registry.start()
            await self.limits.start()
            yield
        finally:
            await self.close()

    async def close(self) -> None:
        """Give unused lease room back, commit settlements, stop the backends, close the database."""
        await self.limits.close()
        await self.registry.close()
        await self.health.close()
        await self.db.close()


def _allow_list(directory: DirectoryRepo) -> Callable[[str], Awaitable[tuple[str, ...] | None]]:
    async def lookup(workspace_id: str) -> tuple[str, ...] | None:
        settings = await directory.workspace_settings(workspace_id)
        return settings.allowed_models if settings else None

    return lookup


@asynccontextmanager
async def batch_worker(services: Services) -> AsyncIterator[None]:
    """Run the in-process batch worker (embedded mode) while the app serves, when enabled; it drains
    with the server."""
    if not services.settings.batch_worker:
        yield
        return
    from wisegate.workers.batches import BatchWorker

    worker = BatchWorker(
        services.batches,
        services.messages,
        concurrency=services.settings.batch_concurrency,
        shared_backends=shared_backends(services.settings),
    )
    services.drain.on_begin(worker.drain)  # SIGTERM: no new claims, the claimed ones finish
    unsubscribe = services.drain.subscribe(worker.stop)  # the drain's cut: give back the rest
    task = asyncio.create_task(worker.run(), name="batch-worker")
    try:
        yield
    finally:
        unsubscribe()
        worker.stop()
        await task


@asynccontextmanager
async def sampling(services: Services) -> AsyncIterator[None]:
    """Every few seconds, copy this process's gauges that nothing updates on its own (ledger journal
    lag, database pool use) into the metrics."""
    from wisegate.telemetry import metrics

    async def sample() -> None:
        while True:
            metrics.JOURNAL_LAG.set(services.limits.billing.uncommitted)
            pool = services.db.engine.pool
            metrics.DB_POOL_IN_USE.set(getattr(pool, "checkedout", lambda: 0)())
            metrics.DB_POOL_SIZE.set(getattr(pool, "size", lambda: 0)())
            await asyncio.sleep(_SAMPLE_SECONDS)

    task = asyncio.create_task(sample(), name="metrics-sampler")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


_SAMPLE_SECONDS = 2.0


def shared_backends(settings: Settings) -> dict[str, int]:
    """Backends of one host-wide model (the embedded model), where batch work yields to interactive,
    with how many batch requests may run on it at once: all its slots but one, kept for a user (so a
    batch's requests are decoded together, and an interactive request waits behind batch work only
    with a single slot)."""
    shared: dict[str, int] = {}
    for name, config in with_runner_sockets(settings).items():  # the options the backend is built with
        if config.type == "local":
            shared[name] = max(1, slot_count(config.options) - 1)
    return shared


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _files_and_skills(settings: Settings, db: Database) -> tuple[FileService, SkillService]:
    """The blob store (local directory or S3) and the Files and Skills services on top of it."""
    blobs: BlobStore
    if settings.files_store == "s3":
        assert settings.files_s3_bucket is not None
        blobs = S3BlobStore(
            settings.files_s3_bucket,
            prefix=settings.files_s3_prefix,
            endpoint_url=settings.files_s3_endpoint_url,
            region=settings.files_s3_region,
        )
    else:
        blobs = LocalBlobStore(settings.data_dir / "files")
    staging = Staging(settings.data_dir / "files-staging")
    files = FileService(
        FileRepo(db),
        blobs,
        staging,
        max_file_bytes=settings.files_max_bytes,
        quota_bytes=settings.files_quota_bytes,
        downloadable_uploads=settings.files_downloadable_uploads,
    )
    return files, SkillService(SkillRepo(db), blobs, staging, settings.skills_max_bytes)


def sandbox_of(settings: Settings) -> Sandbox:
    """The code execution sandbox the settings describe."""
    limits = SandboxLimits(
        cpu_seconds=settings.sandbox_cpu_seconds,
        wall_seconds=settings.sandbox_wall_seconds,
        memory_bytes=settings.sandbox_memory_bytes,
        processes=settings.sandbox_processes,
        open_files=settings.sandbox_open_files,
        disk_bytes=settings.sandbox_disk_bytes,
        cpus=settings.sandbox_cpus,
        max_running=settings.sandbox_max_running,
    )
    return Sandbox(
        limits,
        settings.sandbox_uid,
        settings.sandbox_ro_paths,
        settings.sandbox_python_path,
        allow_soft_limits=settings.sandbox_allow_soft_limits,
    )


def _code_execution(
    settings: Settings, db: Database, files: FileService, skills: SkillService, attachments: Attachments
) -> CodeExecution:
    containers = ContainerService(
        ContainerRepo(db),
        sandbox_of(settings),
        files,
        skills,
        settings.data_dir.resolve() / "containers",
        settings.node_name or socket.gethostname(),
        idle_seconds=settings.container_idle_seconds,
        max_age_seconds=settings.container_max_age_seconds,
        per_workspace=settings.containers_per_workspace,
        total_bytes=settings.container_total_bytes,
        max_output_files=settings.code_execution_max_output_files,
    )
    return CodeExecution(containers, attachments.load_skills, settings.code_execution_max_rounds)
