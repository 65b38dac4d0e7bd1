"""Shared fixtures. Each group sits under its own header; add new groups below the existing ones."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from emgpose.preprocess.job import run_preprocess
from emgpose.settings import get_settings
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.boost import BoostConfig
from emgpose.train.job import run_train

# ---------------------------------------------------------------------------------------------------
# Object store: a real moto S3 server (a subprocess speaking HTTP) and store URIs for both backends
# ---------------------------------------------------------------------------------------------------

_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,  # never read a developer's real profile
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(url: str, proc: subprocess.Popen, log_path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    pytest.fail(f"moto server at {url} did not answer within {timeout}s:\n{log_path.read_text()}")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Endpoint URL of a moto S3 server in a subprocess; dummy AWS credentials for the session."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "server.log"
    with pytest.MonkeyPatch.context() as mp:
        for name, value in _AWS_ENV.items():
            mp.setenv(name, value)
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        endpoint = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(endpoint, proc, log_path)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def s3_client(s3_server: str):
    """A plain boto3 client on the moto server, for setting up and inspecting buckets directly."""
    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


@pytest.fixture
def s3_store_uri(s3_server: str, s3_client, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``s3://<fresh bucket>/prefix`` on the moto server; S3_ENDPOINT_URL points there for the test."""
    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3_client.create_bucket(Bucket=bucket)
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_server)
    get_settings.cache_clear()
    yield f"s3://{bucket}/prefix"
    get_settings.cache_clear()


@pytest.fixture(params=["file", "s3"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store root of each kind, so store tests run the same bodies on both backends."""
    if request.param == "s3":
        return request.getfixturevalue("s3_store_uri")
    return (tmp_path / "store").as_uri()


@pytest.fixture
def free_tcp_port() -> int:
    """A port on 127.0.0.1 where nothing listens (for testing unreachable endpoints)."""
    return free_port()


TRAIN_SYNTH = SynthConfig(users=3, stages=2, sessions=2, duration_s=8.0, chunk_samples=4096)
TRAIN_FAST = BoostConfig(num_rounds=30, max_depth=4, learning_rate=0.3, nthread=2)


@pytest.fixture(scope="session")
def train_synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (``data/``) and its preprocessing output (``pre/``), shared read-only."""
    root = tmp_path_factory.mktemp("train")
    write_dataset(TRAIN_SYNTH, str(root / "data"))
    run_preprocess(str(root / "data"), str(root / "pre"))
    return root


@pytest.fixture(scope="session")
def train_model(train_synth: Path) -> tuple[dict, str]:
    """A model ``hand`` trained on :func:`train_synth` (result, store URI); tests may add versions."""
    store = str(train_synth / "store")
    return run_train(str(train_synth / "pre"), store, "hand", config=TRAIN_FAST), store
