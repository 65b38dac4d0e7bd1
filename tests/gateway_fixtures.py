"""Fixtures of the gateway tests, loaded with ``pytest_plugins = ["gateway_fixtures"]`` (never imported
directly, so that pytest can rewrite its assertions); the helpers they use are in ``gateway_support``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import Gateway, postgres_database, serve_gateway, synth_dataset


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the module (tables are emptied before each gateway starts)."""
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic raw dataset (4 sessions of 3 s) on disk, shared read-only."""
    return synth_dataset(tmp_path_factory.mktemp("gateway-synth") / "data")


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path) -> Iterator[Gateway]:
    """The gateway on PostgreSQL, a local store and the filesystem broker; ALLOWED_DATA_ROOTS holds the
    test's own folder and the shared synthetic dataset (so that tests can register them)."""
    roots = f"{tmp_path.as_uri()},{synth_folder.as_uri()}"
    with serve_gateway(monkeypatch, tmp_path, pg_url, ALLOWED_DATA_ROOTS=roots) as server:
        yield server
