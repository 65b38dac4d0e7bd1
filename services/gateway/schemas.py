"""Public request and response shapes of the gateway (datasets, models, health).

Job shapes live in :mod:`emgpose.jobs.schemas` (the workers read them too). Tables are in
:mod:`emgpose.db.models`; these classes are what the API shows (STYLE.md, habit 4).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from emgpose.access import MAX_LOCATION
from emgpose.api import ErrorResponse as ErrorResponse  # every 4xx/5xx body, re-exported for the routes
from emgpose.auth import NAME_MAX, Scope
from emgpose.db.models import Dataset
from emgpose.jobs.schemas import JobState
from emgpose.names import DatasetName, Version

DATASET_ID = "3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b"
VERSION = "20261121T133904Z-a11a4b"
KEY_ID = "5f0c2a9d8e7b6c41"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- datasets -----------------------------------------------------------------------------------------


class DatasetRegister(Strict):
    name: DatasetName
    uri: str = Field(
        min_length=1,
        max_length=MAX_LOCATION,
        description="A folder holding metadata.csv and the session files it lists (s3://bucket/prefix, "
        "file:///path, or an absolute path on the gateway's machine), below the object store or a root in "
        "ALLOWED_DATA_ROOTS",
        examples=["s3://emgpose/raw/lab-2026-11"],
    )


class DatasetPublic(BaseModel):
    id: str = Field(examples=[DATASET_ID])
    name: str = Field(examples=["lab-2026-11"])
    kind: Literal["raw", "preprocessed"]
    source: Literal["upload", "registered", "job"]
    uri: str = Field(description="Where the files are", examples=[f"s3://emgpose/raw/{DATASET_ID}"])
    state: Literal["uploading", "ready", "failed"]
    files: int = Field(description="Files in the dataset (sessions plus metadata.csv)")
    bytes: int | None = Field(description="Total size of the uploaded files; null where not measured")
    info: dict[str, Any] = Field(
        description="What validation found: sessions, splits, users, channels, sample rate, joints, labels",
        examples=[{"sessions": 4, "splits": {"train": 3, "test": 1}, "num_channels": 16, "sample_rate": 2000.0}],
    )
    parent_id: str | None = Field(description="The raw dataset a preprocessed one was made from")
    job_id: str | None = Field(description="The job that produced a preprocessed dataset")
    error: str | None = Field(description="Why a failed upload was refused")
    created_at: datetime
    updated_at: datetime


class DatasetProcessing(BaseModel):
    """The latest preprocess job of a raw dataset, and what it produced."""

    job_id: str
    job: str = Field(description="The job's URL", examples=["/v1/jobs/9b1d0c7e2f3a4b5c8d6e7f8091a2b3c4"])
    state: JobState
    stage: str
    progress: float = Field(description="Percent done, 0-100")
    dataset_id: str | None = Field(description="The preprocessed dataset the job registered, once it has")
    dataset: str | None = Field(description="That dataset's URL")


class DatasetDetail(DatasetPublic):
    processing: DatasetProcessing | None = Field(description="Null for preprocessed datasets and before any job")


class DatasetsPublic(BaseModel):
    items: list[DatasetPublic]
    total: int
    limit: int
    offset: int


def dataset_public(row: Dataset) -> DatasetPublic:
    return DatasetPublic.model_validate(_dataset_fields(row))


def _dataset_fields(row: Dataset) -> dict[str, Any]:
    fields = {name: getattr(row, name) for name in DatasetPublic.model_fields}
    if row.source == "registered" and not row.bytes:
        fields["bytes"] = None  # a registered prefix is not measured
    return fields


def dataset_detail(row: Dataset, processing: DatasetProcessing | None) -> DatasetDetail:
    return DatasetDetail.model_validate({**_dataset_fields(row), "processing": processing})


# --- models -----------------------------------------------------------------------------------------


class ModelSummary(BaseModel):
    name: str = Field(examples=["emgpose"])
    latest: str | None = Field(description="The version `latest` points at", examples=[VERSION])
    versions: int = Field(description="Complete versions in the registry")
    task: str | None = Field(default=None, examples=["regression"])
    created: str | None = Field(default=None, description="When the latest version was trained (UTC, ISO 8601)")
    metrics: dict[str, Any] = Field(
        default_factory=dict,
        description="Headline metrics of the latest version",
        examples=[
            {
                "split": "test",
                "xgboost": {"mae_deg": 12.0, "rmse_deg": 16.1, "r2_mean": 0.62},
                "ridge": {"mae_deg": 12.6, "rmse_deg": 16.9, "r2_mean": 0.57},
                "verdict": {"overall": {"metric": "mae_deg", "best_baseline": "ridge", "beats_baselines": True}},
            }
        ],
    )


class ModelsPublic(BaseModel):
    items: list[ModelSummary]
    total: int


class ModelVersionSummary(BaseModel):
    version: str = Field(examples=[VERSION])
    latest: bool
    task: str | None = None
    created: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    job_id: str | None = Field(default=None, description="The train job that published it, where known")
    url: str = Field(examples=[f"/v1/models/emgpose/versions/{VERSION}"])


class ModelDetail(BaseModel):
    name: str
    latest: str | None
    items: list[ModelVersionSummary] = Field(description="Versions, newest first")
    total: int


class BundlePublic(BaseModel):
    """``bundle.json`` of a version as written by training, plus ``latest`` and ``job_id``."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    task: str
    latest: bool
    job_id: str | None = None
    created: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


class PromoteRequest(Strict):
    version: Version = Field(examples=[VERSION])


class PromoteResult(BaseModel):
    name: str
    latest: str = Field(description="The version `latest` points at now")
    previous: str | None = Field(description="Where it pointed before (promote that to roll back)")


# --- API keys ---------------------------------------------------------------------------------------


class KeyCreate(Strict):
    scope: Scope = Field(description="read < submit < admin; each includes the ones before it")
    name: str = Field(default="", max_length=NAME_MAX, description="A label: who or what uses the key")


class KeyPublic(BaseModel):
    """A key as lists show it: never the secret, never its hash."""

    id: str = Field(description="The key's public id (also the second part of the key)", examples=[KEY_ID])
    name: str = Field(examples=["ci"])
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None = Field(description="Coarse: updated at most every 10 minutes")
    revoked_at: datetime | None
    revoked: bool


class KeyCreated(KeyPublic):
    key: str = Field(
        description="The key itself, shown only in this answer: it is stored nowhere (the database keeps a "
        "keyed hash). Send it as `Authorization: Bearer <key>`.",
        examples=[f"emgp_{KEY_ID}_{'x' * 43}"],
    )


class KeysPublic(BaseModel):
    items: list[KeyPublic] = Field(description="Every key, revoked ones included, newest first")
    total: int


# --- health -----------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    ok: bool
    ms: float = Field(description="How long the check took")
    target: str = Field(description="What was checked (passwords hidden)", examples=["redis://redis:6379/0"])
    error: str | None = None
