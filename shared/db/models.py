"""Tables: datasets, jobs (with their fan-out parts), model versions and API keys (SQLAlchemy 2 typed models).

The schema is created and changed only by the Alembic migrations in ``emgpose.db.migrations``
(``emgpose db upgrade``, the pre-start step); these classes must match the newest revision, which a
test checks.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone; it is restored on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store UTC-aware datetimes")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Dataset(Base):
    """A raw dataset (uploaded or registered) or a preprocessed one (a preprocess job's output)."""

    __tablename__ = "datasets"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # raw | preprocessed
    source: Mapped[str] = mapped_column(String(20))  # upload | registered | job
    uri: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(20))  # uploading | ready | failed
    files: Mapped[int] = mapped_column(Integer, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)  # sessions, channels, sample rate, ...
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None)
    job_id: Mapped[str | None] = mapped_column(String(32), default=None)  # the job that produced it
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Job(Base):
    """One submitted job; the row is committed before its Celery task is sent."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(20), index=True)  # preprocess | train | evaluate
    state: Mapped[str] = mapped_column(String(20), index=True)  # queued | running | succeeded | failed | cancelled
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # percent
    stage: Mapped[str] = mapped_column(String(40), default="queued")
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)  # links: dataset, model version, report
    error_type: Mapped[str | None] = mapped_column(String(100), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), default=None, index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True, default=None)
    # The API key that submitted it (None with AUTH_ENABLED=false): MAX_JOBS_IN_FLIGHT_PER_KEY counts by it.
    api_key_id: Mapped[str | None] = mapped_column(
        ForeignKey("api_keys.id", name="fk_jobs_api_key_id"), default=None, index=True
    )
    request_digest: Mapped[str | None] = mapped_column(String(64), default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    parts_done: Mapped[int] = mapped_column(Integer, default=0)  # of the current phase: one UPDATE per part
    phase: Mapped[str] = mapped_column(String(20), default="")  # fan-out phase the parts belong to
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requeues: Mapped[int] = mapped_column(Integer, default=0)  # units the reaper sent again, in all
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)  # newest heartbeat of any unit
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class JobPart(Base):
    """One unit of work of a job, run by one task: a preprocess job's plan, statistics part, merge,
    windows part or gather; a train or evaluate job's run.

    A worker leases a unit (``state`` running, ``worker``) and refreshes ``heartbeat_at`` while it works;
    the reaper sends a unit whose heartbeat is too old again. ``due_at`` is when a queued unit's message
    was (or will be, for a retry with a countdown) sent.
    """

    __tablename__ = "job_parts"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    phase: Mapped[str] = mapped_column(String(20), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(10), default="queued", index=True)  # queued | running | done
    weight: Mapped[int] = mapped_column(BigInteger, default=1)  # samples, for progress
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    due_at: Mapped[datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    requeues: Mapped[int] = mapped_column(Integer, default=0)  # times the reaper sent this unit again


class ApiKey(Base):
    """An API key (:mod:`emgpose.auth`): its public id, scope and a keyed hash of the whole key, never the key.

    Keys are revoked, never deleted, so that the jobs they submitted keep naming them.
    """

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the public part of the key
    name: Mapped[str] = mapped_column(String(100), default="")
    scope: Mapped[str] = mapped_column(String(10))  # read | submit | admin
    digest: Mapped[str] = mapped_column(String(64))  # hex HMAC-SHA256(AUTH_PEPPER, key)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)  # coarse: written at most every 10 min
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class ModelVersion(Base):
    """A model version a train job published (the object-store registry stays the source of truth)."""

    __tablename__ = "model_versions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(Text)
    task: Mapped[str] = mapped_column(String(20))
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"), default=None)
    dataset_uri: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
