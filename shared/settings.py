"""Process settings, read once from the environment (STYLE.md, habit 1).

Variable names are the field names in upper case, without a prefix (``STORE_URI``, ``LOG_LEVEL``);
the S3 region is read from ``S3_REGION`` or, failing that, ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a process reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    store_uri: str = "file://./runs/store"
    s3_endpoint_url: str | None = None  # MinIO, moto; None means AWS itself
    s3_region: str = Field(default="us-east-1", validation_alias=AliasChoices("S3_REGION", "AWS_DEFAULT_REGION"))
    s3_connect_timeout: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=5, ge=1)
    log_level: str = "INFO"
    # LOG_FORMAT: json (one JSON object a line, with the request or job id; compose's default) or text.
    log_format: Literal["json", "text"] = "text"
    # A Celery worker serves its job metrics and the queue depths on METRICS_PORT (unset: no server);
    # the HTTP services serve /metrics on their own port (emgpose.metrics, docs/observability.md).
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = "0.0.0.0"

    # Services (gateway, workers, inference). Defaults are the embedded local mode of `emgpose up`:
    # SQLite, a local object-store folder and Celery's filesystem transport, no server to install.
    database_url: str = "sqlite:///./runs/emgpose.db"
    # PostgreSQL: connect and pool-checkout timeout; statements are cut server-side after 10x this; the
    # gateway answers 503 to a database request that has not answered after DB_TIMEOUT_S + 1 s.
    db_timeout_s: float = Field(default=3.0, gt=0)
    redis_url: str | None = None  # the Celery broker; None means the filesystem transport below
    broker_dir: str = "./runs/broker"
    model_name: str = "emgpose"  # the model the inference service serves (its `latest` version)
    reload_interval_s: float = Field(default=5.0, gt=0)  # how often inference checks `latest`
    inference_url: str = "http://127.0.0.1:8001"  # where the gateway forwards /v1/predict
    inference_timeout_s: float = Field(default=30.0, gt=0)
    max_upload_mb: float = Field(default=4096.0, gt=0)  # per uploaded file
    max_request_mb: float = Field(default=64.0, gt=0)  # per prediction request body
    # Bounded predictions (emgpose_inference.admission): samples one /v1/predict or OIP request may carry
    # (checked before its body is read), the memory that requests being decoded and computed may hold
    # together (others wait, unread, until the deadline), and the deadline itself, shortened by the
    # gateway's X-Request-Timeout; past it, inference stops computing and answers 504.
    max_predict_samples: int = Field(default=120_000, gt=0)  # 60 s at 2 kHz
    predict_memory_mb: float = Field(default=768.0, gt=0)
    predict_timeout_s: float = Field(default=30.0, gt=0)
    body_idle_timeout_s: float = Field(default=30.0, gt=0)  # a request body silent this long is cut (408)
    # The booster behind Predictor (emgpose.train.compiled): XGBoost's inplace_predict, the booster compiled
    # to C with gcc (built once per booster into COMPILED_CACHE_DIR, default ~/.cache/emgpose/compiled), or
    # auto: both timed at load, the faster kept.
    model_backend: Literal["xgboost", "compiled", "auto"] = "xgboost"
    compiled_cache_dir: str | None = None
    # Dynamic batching (emgpose_inference.batching): the windows of concurrent requests and streams go
    # through one booster call of at most BATCH_MAX_WINDOWS rows; a batch waits at most BATCH_MAX_WAIT_MS
    # for requests already being read, and never when none is. INFERENCE_WORKERS: uvicorn processes
    # (emgpose_inference.serve); unset, one per usable CPU (affinity and cgroup quota).
    batch_max_windows: int = Field(default=64, ge=1)
    batch_max_wait_ms: float = Field(default=1.0, ge=0)
    inference_workers: int | None = Field(default=None, ge=1)
    # Where data and models named in requests may live besides STORE_URI (always allowed): s3://bucket/prefix
    # and local folders (/path, file:///path), comma-separated or a JSON list (emgpose.access). Empty: the store only.
    allowed_data_roots: Annotated[list[str], NoDecode] = Field(default_factory=list)
    device: Literal["auto", "cpu", "cuda"] = "auto"  # workers: auto uses the GPU where one exists
    job_time_limit_s: int = Field(default=6 * 3600, gt=0)
    task_max_retries: int = Field(default=5, ge=0)  # retries of a task after a transient store/broker/db error
    task_retry_backoff_s: float = Field(default=2.0, gt=0)  # first retry delay; doubles, capped at 120 s
    # Heartbeats and the reaper (emgpose.jobs.reaper): a worker refreshes each unit it runs every
    # HEARTBEAT_S; a unit silent for HEARTBEAT_TIMEOUT_S is sent again from its last checkpoint, at most
    # REAPER_MAX_REQUEUES times per unit, then the job fails naming the lost worker.
    heartbeat_s: float = Field(default=5.0, gt=0)
    heartbeat_timeout_s: float = Field(default=30.0, gt=0)
    reaper_interval_s: float = Field(default=5.0, ge=0)  # 0: this process runs no reaper
    reaper_max_requeues: int = Field(default=3, ge=0)
    # Redis redelivers an unacknowledged message after this long (the second line behind the reaper).
    visibility_timeout_s: int = Field(default=1800, gt=0)
    # API keys (emgpose.auth). Off by default (tests, a laptop); compose and `emgpose up` turn it on. Keys are
    # stored as HMAC-SHA256(AUTH_PEPPER, key): the gateway, inference and `emgpose keys` need the same pepper.
    auth_enabled: bool = False
    auth_pepper: SecretStr | None = None  # at least 32 characters; never logged (SecretStr)
    auth_cache_s: float = Field(default=30.0, ge=0)  # a verified key is trusted this long without a database read
    max_jobs_in_flight_per_key: int = Field(default=8, ge=1)  # queued + running jobs one key may have

    @field_validator("s3_endpoint_url", "redis_url", "auth_pepper", "metrics_port", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``S3_ENDPOINT_URL=`` (compose passes empty values) means unset, not an empty endpoint."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_data_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        """``ALLOWED_DATA_ROOTS``: ``a,b`` or ``["a", "b"]``; blank entries (a trailing comma) are dropped."""
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list | tuple):
            return [item.strip() if isinstance(item, str) else item for item in value]
        return value

    @field_validator("allowed_data_roots")
    @classmethod
    def _check_roots(cls, roots: list[str]) -> list[str]:
        """Every root is a usable location (emgpose.access rules), so a typo stops the process at start."""
        roots = [root for root in roots if root]
        if roots:  # emgpose.access reaches h5py: only where there is something to check (the quick CLI)
            from emgpose.access import parse_root  # noqa: PLC0415 - emgpose.access imports this module's users

            for root in roots:
                parse_root(root)
        return roots

    @property
    def broker_url(self) -> str:
        return self.redis_url or "filesystem://"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read on first call; tests call ``get_settings.cache_clear()``."""
    return Settings()
