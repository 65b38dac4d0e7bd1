"""Helpers for the gateway tests: a fresh PostgreSQL database, the gateway served for real (uvicorn in a
thread) against chosen settings, synthetic datasets, and a look into the broker's queue."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest
from servers import UvicornThread
from sqlalchemy import text

from emgpose.db.engine import get_engine, reset_engines
from emgpose.db.migrate import upgrade
from emgpose.formats.joints import EMG2POSE_JOINTS
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import feature_names
from emgpose.preprocess.normalize import NormStats
from emgpose.settings import Settings, get_settings
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.bundle import Registry
from emgpose_gateway.main import create_app

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
SMALL = SynthConfig(users=2, stages=2, sessions=1, duration_s=3.0, chunk_samples=4096)
TABLES = "job_parts, model_versions, jobs, datasets, api_keys"


@contextmanager
def postgres_database() -> Iterator[str]:
    """``postgresql+psycopg://`` URL of a new database at the head revision; dropped afterwards."""
    name = f"emgpose_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}")
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        reset_engines()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def empty_tables(url: str) -> None:
    with get_engine(url).begin() as connection:
        if url.startswith("postgresql"):
            connection.execute(text(f"TRUNCATE {TABLES} CASCADE"))
        else:
            for table in TABLES.split(", "):
                connection.execute(text(f"DELETE FROM {table}"))


def queued(broker_dir: Path, queue: str = "preprocess") -> int:
    """Messages waiting in a queue of Celery's filesystem transport (files ``<id>.<queue>.msg``)."""
    folder = broker_dir / "queue"
    if not folder.is_dir():
        return 0
    return sum(1 for name in os.listdir(folder) if name.partition(".")[2] == f"{queue}.msg")


def stored(root: Path) -> list[str]:
    """Every file below a local store root, temporary ones included, relative and sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


def publish_tiny(store_uri: str, name: str, version: str, created: str, mae: float, promote: bool = True) -> str:
    """Publishes a small but complete regression bundle (16 channels, the 20 emg2pose joints, default
    preprocessing, a 2-round booster) without the training pipeline; returns the version."""
    import xgboost as xgb

    config = PreprocessConfig()
    features = feature_names(config.features, 16)
    rng = np.random.default_rng(0)
    data = xgb.DMatrix(rng.normal(size=(64, len(features))), label=rng.normal(size=(64, 20)))
    booster = xgb.train({"max_depth": 2, "nthread": 1, "tree_method": "hist"}, data, num_boost_round=2)
    window = config.window.samples(2000.0)
    meta = {
        "name": name,
        "version": version,
        "task": "regression",
        "joint_names": list(EMG2POSE_JOINTS),
        "class_names": [],
        "num_channels": 16,
        "channel_names": [],
        "sample_rate": 2000.0,
        "window": {"length_samples": window[0], "stride_samples": window[1]},
        "preprocess": config.model_dump(mode="json"),
        "stats": NormStats.identity(16, 20).to_dict(),
        "feature_names": features,
        "metrics": {"split": "test", "xgboost": {"mae_deg": mae}, "verdict": {}},
        "created": created,
    }
    return Registry(store_uri).publish(meta, booster, files={}, promote=promote)


@dataclass
class Gateway:
    url: str
    settings: Settings
    store_root: Path
    broker_dir: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def queued(self, queue: str = "preprocess") -> int:
        return queued(self.broker_dir, queue)


@contextmanager
def serve_gateway(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, database_url: str, empty: bool = True, **env: str | None
) -> Iterator[Gateway]:
    """The gateway app under uvicorn, with its settings taken from the environment set here.

    Defaults: a local store and the filesystem broker below ``tmp``, no Redis, no ALLOWED_DATA_ROOTS (data
    only in the store, the production default); ``env`` overrides (``None`` removes a variable). The
    database's tables are emptied first unless ``empty`` is false.
    """
    values: dict[str, str | None] = {
        "DATABASE_URL": database_url,
        "STORE_URI": (tmp / "store").as_uri(),
        "BROKER_DIR": str(tmp / "broker"),
        "REDIS_URL": None,
        "ALLOWED_DATA_ROOTS": None,
        "AUTH_ENABLED": None,  # off unless a test turns it on (tests/test_auth.py)
        "LOG_LEVEL": "WARNING",
        **env,
    }
    for key, value in values.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    if empty:
        empty_tables(settings.database_url)
    with UvicornThread(create_app(settings)) as server:
        yield Gateway(server.url, settings, tmp / "store", Path(settings.broker_dir))
    get_settings.cache_clear()


def synth_dataset(folder: Path) -> Path:
    write_dataset(SMALL, str(folder))
    return folder


def upload_parts(folder: Path, names: list[str] | None = None) -> list[tuple[str, tuple[str, bytes, str]]]:
    """``files`` parts for httpx: metadata.csv first, then the sessions (or just ``names``)."""
    names = names if names is not None else ["metadata.csv", *sorted(p.name for p in folder.glob("*.hdf5"))]
    kinds = {".csv": "text/csv", ".hdf5": "application/x-hdf5"}
    return [("files", (name, (folder / name).read_bytes(), kinds[Path(name).suffix])) for name in names]
