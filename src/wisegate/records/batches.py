"""Message batches and the claimed requests of their durable queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from wisegate.records.tenancy import ApiKey


@dataclass(frozen=True, slots=True)
class RequestCounts:
    processing: int = 0
    succeeded: int = 0
    errored: int = 0
    canceled: int = 0
    expired: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    organization_id: str
    workspace_id: str
    api_key_id: str
    processing_status: str
    request_counts: RequestCounts
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    cancel_initiated_at: datetime | None
    archived_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewBatch:
    id: str
    organization_id: str
    workspace_id: str
    api_key_id: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A queued request this worker now holds a lease on."""

    id: int
    batch_id: str
    position: int
    custom_id: str
    params: str
    attempts: int
    crashes: int = 0


@dataclass(frozen=True, slots=True)
class BatchOwner:
    """What a worker needs to run a batch's requests: the key that created it and its deadline."""

    key: ApiKey
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class Completion:
    """The final state of one claimed request; ``result`` is the JSON of its ``result`` object."""

    request_id: int
    status: str
    result: str | None
