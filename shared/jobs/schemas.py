"""Job requests and answers (pydantic): what the gateway validates and what workers re-read.

Unknown fields are refused everywhere. ``params.config`` of a preprocess job is a
:class:`~emgpose.preprocess.config.PreprocessConfig`, that of a train job a
:class:`~emgpose.train.boost.BoostConfig`, each validated in full at submission so that a typo fails
with 422 before anything is queued.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from emgpose.access import MAX_LOCATION
from emgpose.names import DatasetName, ModelName, ModelRefText, Version
from emgpose.preprocess.config import PreprocessConfig
from emgpose.train.boost import BoostConfig

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JobType = Literal["preprocess", "train", "evaluate", "benchmark", "predict"]
TERMINAL = ("succeeded", "failed", "cancelled")
DATASET_HELP = (
    "a dataset id from /v1/datasets, or a store URI (s3://bucket/prefix, file:///path) below the object store "
    "or ALLOWED_DATA_ROOTS (403 outside them)"
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PreprocessParams(Strict):
    dataset: str = Field(
        min_length=1,
        max_length=MAX_LOCATION,
        description=f"The raw dataset: {DATASET_HELP}",
        examples=["3f2a9c0e5b7d4e1f8a6b2c3d4e5f6a7b"],
    )
    config: PreprocessConfig = Field(default_factory=PreprocessConfig, description="Preprocessing settings")
    name: DatasetName | None = Field(
        default=None, description="Name of the preprocessed dataset (default: the raw one's)"
    )
    device: Literal["auto", "cpu", "cuda"] | None = Field(
        default=None,
        description="Where the chain and features run: `cuda` uses our kernels on the worker's GPU, `auto` "
        "the GPU where the worker has one; default: the worker's DEVICE setting",
    )


class TrainParams(Strict):
    dataset: str = Field(min_length=1, max_length=MAX_LOCATION, description=f"The preprocessed dataset: {DATASET_HELP}")
    name: ModelName | None = Field(default=None, description="Model name (default MODEL_NAME)")
    task: Literal["regression", "classification"] | None = Field(
        default=None, description="Default: regression where the data has joint angles, else classification"
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="XGBoost settings (BoostConfig); `device` defaults to the worker's DEVICE",
        examples=[{"num_rounds": 200, "max_depth": 6}],
    )
    promote: bool = Field(default=True, description="Point the model's `latest` at the new version")

    def boost_config(self, device: str) -> BoostConfig:
        return BoostConfig.model_validate({"device": device, **self.config})


class EvaluateParams(Strict):
    model: ModelRefText = Field(
        description="NAME (its latest version), NAME@VERSION, or the location of a model (.../models/NAME) or of "
        "a version (.../models/NAME/VERSION) below the object store or ALLOWED_DATA_ROOTS",
        examples=["emgpose@20261121T120000Z-1a2b3c"],
    )
    dataset: str = Field(min_length=1, max_length=MAX_LOCATION, description=f"A preprocessed dataset: {DATASET_HELP}")


class SyntheticSize(Strict):
    users: int = Field(default=4, ge=2, le=64)
    stages: int = Field(default=2, ge=2, le=5)
    sessions: int = Field(default=2, ge=1, le=64)
    duration_s: float = Field(default=60.0, ge=5.0, le=3600.0, description="Seconds per session")
    channels: int = Field(default=16, ge=1, le=256)


StudyConfig = Literal["cpu", "gpu-builtin", "gpu-kernels", "gpu-kernels-objective"]


class BenchmarkParams(Strict):
    dataset: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LOCATION,
        description=f"A raw dataset with joint angles: {DATASET_HELP}; default: a synthetic one of `synthetic`'s size",
    )
    synthetic: SyntheticSize = Field(default_factory=SyntheticSize)
    configs: list[StudyConfig] = Field(
        default=["cpu", "gpu-builtin", "gpu-kernels", "gpu-kernels-objective"],
        min_length=1,
        description="The study's configurations; the GPU ones are reported as skipped on a worker without one",
    )
    rounds: int = Field(default=100, ge=1, le=5000, description="XGBoost rounds of every configuration")
    xgb_windows: int = Field(
        default=0, ge=0, le=50_000_000, description="Also time XGBoost CPU vs CUDA at this many windows (0: skip)"
    )
    xgb_rounds: int = Field(default=5, ge=1, le=1000)


class PredictParams(Strict):
    """What a batch prediction reads (exactly one of ``dataset``, ``prefix``, ``files``) and with which model."""

    model: ModelRefText = Field(
        description="NAME (its promoted `latest` version), NAME@VERSION, or the location of a model or version "
        "below the object store or ALLOWED_DATA_ROOTS",
        examples=["hand"],
    )
    version: Version | None = Field(default=None, description="A version of `model` (default: its `latest`)")
    dataset: str | None = Field(
        default=None, min_length=1, max_length=MAX_LOCATION, description=f"A raw dataset: {DATASET_HELP}"
    )
    split: Literal["train", "val", "test"] | None = Field(
        default=None, description="Only the dataset's sessions of this split (metadata.csv)"
    )
    prefix: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_LOCATION,
        description="A folder or S3 prefix: every .hdf5 session below it (same roots as `dataset`)",
    )
    files: list[Annotated[str, Field(min_length=1, max_length=MAX_LOCATION)]] | None = Field(
        default=None, min_length=1, max_length=1000, description="Session files (.hdf5) by location"
    )
    formats: list[Literal["csv", "parquet"]] = Field(
        default=["csv", "parquet"], min_length=1, description="Tables written per session"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PredictParams:
        given = [k for k in ("dataset", "prefix", "files") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of dataset, prefix or files (got {given or 'none'})")
        if self.split is not None and self.dataset is None:
            raise ValueError("split selects sessions of a dataset's metadata.csv: give it with dataset only")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats lists a format twice: {self.formats}")
        return self


class PreprocessJob(Strict):
    type: Literal["preprocess"]
    params: PreprocessParams


class TrainJob(Strict):
    type: Literal["train"]
    params: TrainParams


class EvaluateJob(Strict):
    type: Literal["evaluate"]
    params: EvaluateParams


class BenchmarkJob(Strict):
    type: Literal["benchmark"]
    params: BenchmarkParams


class PredictJob(Strict):
    type: Literal["predict"]
    params: PredictParams


JobCreate = Annotated[PreprocessJob | TrainJob | EvaluateJob | BenchmarkJob | PredictJob, Field(discriminator="type")]


class JobError(BaseModel):
    type: str = Field(examples=["DataFormatError"])
    message: str = Field(examples=["raw/x/metadata.csv:3: column 'split' must be train, val or test, got 'tset'"])


class JobPublic(BaseModel):
    id: str
    type: JobType
    state: JobState
    progress: float = Field(description="Percent done, 0-100")
    stage: str = Field(examples=["windows"])
    params: dict[str, Any]
    dataset_id: str | None = Field(default=None, description="The dataset the job reads")
    result: dict[str, Any] = Field(description="Links to what the job produced (dataset, model version, report)")
    error: JobError | None = None
    cancel_requested: bool
    api_key_id: str | None = Field(default=None, description="The API key that submitted it (null with auth off)")
    attempts: int = Field(description="Times a worker started one of the job's units")
    requeues: int = Field(description="Units the reaper sent again after a worker or a message was lost")
    heartbeat_at: datetime | None = Field(description="The newest heartbeat of a worker running the job")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime


class JobsPublic(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


def public(job: Any) -> JobPublic:
    """A job row as the API shows it."""
    error = JobError(type=job.error_type, message=job.error_message or "") if job.error_type else None
    return JobPublic(
        id=job.id,
        type=job.type,
        state=job.state,
        progress=round(job.progress, 1),
        stage=job.stage,
        params=job.params,
        dataset_id=job.dataset_id,
        result=job.result,
        error=error,
        cancel_requested=job.cancel_requested,
        api_key_id=job.api_key_id,
        attempts=job.attempts or 0,
        requeues=job.requeues or 0,
        heartbeat_at=job.heartbeat_at,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
    )
