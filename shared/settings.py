"""Process settings, read once from the environment (STYLE.md, habit 1).

Variable names are the field names in upper case, without a prefix (``STORE_URI``, ``LOG_LEVEL``);
the S3 region is read from ``S3_REGION`` or, failing that, ``AWS_DEFAULT_REGION``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything a process reads from its environment."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    store_uri: str = "file://./runs/store"
    s3_endpoint_url: str | None = None  # MinIO, moto; None means AWS itself
    s3_region: str = Field(default="us-east-1", validation_alias=AliasChoices("S3_REGION", "AWS_DEFAULT_REGION"))
    s3_connect_timeout: float = Field(default=10.0, gt=0)
    s3_max_attempts: int = Field(default=5, ge=1)
    log_level: str = "INFO"


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read on first call; tests call ``get_settings.cache_clear()``."""
    return Settings()
