"""Helpers for the inference service tests: model stores built from the session's trained model, new and
broken versions, EMG recordings, and the app served for real (uvicorn in a thread)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from servers import UvicornThread

from emgpose.settings import Settings
from emgpose.store import open_store
from emgpose.train.bundle import META_FILE, MODEL_FILE, Bundle, Registry
from emgpose_inference.main import create_app

NAME = "hand"  # the name train_model publishes under


def source_version(train_model: tuple[dict, str]) -> Path:
    """The folder of the version the session fixture trained (other tests may add versions beside it)."""
    result, store = train_model
    return Path(store) / "models" / NAME / result["version"]


def copy_model(train_model: tuple[dict, str], store_uri: str, promote: bool = True) -> str:
    """Copies the trained version into the store at ``store_uri`` (any backend); returns the version."""
    folder = source_version(train_model)
    store = open_store(store_uri)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META_FILE)
    for path in [*files, folder / META_FILE]:  # bundle.json last, as publish does
        store.put_file(f"models/{NAME}/{folder.name}/{path.relative_to(folder).as_posix()}", str(path))
    if promote:
        Registry(store).promote(NAME, folder.name)
    return folder.name


def publish_variant(store_uri: str, trees: int = 10, base: str | None = None, promote: bool = True) -> str:
    """A new, valid version whose answers differ: the booster of ``base`` (default: latest) cut to its
    first ``trees`` rounds."""
    registry = Registry(store_uri)
    bundle = registry.load(NAME, base)
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "files", "latest", "format")}
    return registry.publish(meta, bundle.booster[0:trees], files={}, promote=promote)


DAMAGES = {
    "digest": lambda folder: (folder / MODEL_FILE).write_bytes((folder / MODEL_FILE).read_bytes()[:-10] + b" " * 10),
    "missing file": lambda folder: (folder / MODEL_FILE).unlink(),
    "bundle.json": lambda folder: (folder / META_FILE).write_text('{"format": "emgpose.bundle/1", "name": '),
}


def publish_broken(store_dir: Path, base: str, damage: str = "digest") -> str:
    """A new version of ``hand`` in the local store ``store_dir``, damaged (:data:`DAMAGES`), then promoted."""
    version = publish_variant(store_dir.as_uri(), trees=5, base=base, promote=False)
    DAMAGES[damage](store_dir / "models" / NAME / version)
    Registry(store_dir.as_uri()).promote(NAME, version)
    return version


def recording(seconds: float, channels: int = 16, rate: float = 2000.0, seed: int = 0) -> np.ndarray:
    """Surface-EMG-like noise, float32 (samples, channels)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((round(seconds * rate), channels)) * 0.05).astype(np.float32)


def binary_request(emg: np.ndarray, rate: float = 2000.0) -> dict[str, Any]:
    """``httpx.post`` keyword arguments for a float32 body."""
    headers = {
        "Content-Type": "application/octet-stream",
        "X-EMG-Samples": str(emg.shape[0]),
        "X-EMG-Channels": str(emg.shape[1]),
        "X-Sample-Rate": str(rate),
    }
    return {"content": np.ascontiguousarray(emg, dtype="<f4").tobytes(), "headers": headers}


@contextmanager
def serve(store_uri: str, **settings: Any) -> Iterator[UvicornThread]:
    """The inference app for ``store_uri`` (model ``hand``), served by uvicorn in a thread."""
    options = {"store_uri": store_uri, "model_name": NAME, "reload_interval_s": 60.0, **settings}
    with UvicornThread(create_app(Settings(**options))) as server:
        yield server


@dataclass
class Served:
    url: str
    ws_url: str
    bundle: Bundle  # the version being served


@contextmanager
def serve_copy(train_model: tuple[dict, str], folder: Path, **settings: Any) -> Iterator[Served]:
    """The session's trained model copied into a store under ``folder`` and served from there."""
    store_uri = (folder / "store").as_uri()
    copy_model(train_model, store_uri)
    with serve(store_uri, **settings) as server:
        yield Served(server.url, server.ws_url, Registry(store_uri).load(NAME))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout}s")


def parse_metrics(text: str) -> dict[str, float]:
    """``series -> value`` of a Prometheus text exposition."""
    lines = [line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#")]
    return {series: float(value) for series, value in lines}
