"""The model holder's reload rules and the hand-written Prometheus exposition, without a server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from inference_support import NAME, copy_model, publish_variant

from emgpose.errors import DataFormatError, StoreError
from emgpose.train.bundle import Bundle, Registry
from emgpose_inference.metrics import Metrics
from emgpose_inference.state import ModelHolder


class FlakyRegistry(Registry):
    """A registry whose next loads (or pointer reads) fail with the given errors."""

    def __init__(self, store_uri: str) -> None:
        super().__init__(store_uri)
        self.load_errors: list[Exception] = []
        self.latest_errors: list[Exception] = []
        self.loads: list[str | None] = []

    def latest(self, name: str) -> str | None:
        if self.latest_errors:
            raise self.latest_errors.pop(0)
        return super().latest(name)

    def load(self, name: str, version: str | None = None) -> Bundle:
        self.loads.append(version)
        if self.load_errors:
            raise self.load_errors.pop(0)
        return super().load(name, version)


@pytest.fixture
def registry(train_model, tmp_path: Path) -> FlakyRegistry:
    store_uri = (tmp_path / "store").as_uri()
    copy_model(train_model, store_uri)
    return FlakyRegistry(store_uri)


def test_a_store_error_is_retried_after_a_short_backoff(registry: FlakyRegistry) -> None:
    metrics = Metrics()
    holder = ModelHolder(registry, NAME, interval=0.05, metrics=metrics)
    registry.load_errors.append(StoreError("S3 answered SlowDown"))
    holder.check()
    assert holder.current is None and "SlowDown" in holder.last_error.message
    holder.check()  # within the backoff (2 x interval): not retried
    assert len(registry.loads) == 1
    time.sleep(0.12)
    holder.check()
    assert holder.current is not None and holder.last_error is None and len(registry.loads) == 2
    assert metrics.reloads.value(result="failure") == 1 and metrics.reloads.value(result="success") == 1


def test_a_broken_version_waits_for_the_pointer_to_move(registry: FlakyRegistry) -> None:
    holder = ModelHolder(registry, NAME, interval=0.01, metrics=Metrics())
    holder.check()
    first = holder.current.version
    second = publish_variant(registry.store.uri, trees=5)
    registry.load_errors.append(DataFormatError("bundle.json lacks ['stats']"))
    for _ in range(5):
        holder.check()
        time.sleep(0.01)
    assert registry.loads == [first, second] and holder.current.version == first
    assert holder.last_error.version == second
    registry.promote(NAME, first)  # the pointer moves (a rollback) ...
    holder.check()
    registry.promote(NAME, second)  # ... and back: the version gets a fresh chance
    holder.check()
    assert registry.loads == [first, second, second] and holder.current.version == second


def test_an_unreachable_store_makes_it_unready_but_it_keeps_serving(registry: FlakyRegistry) -> None:
    metrics = Metrics()
    holder = ModelHolder(registry, NAME, interval=0.01, metrics=metrics)
    holder.check()
    assert holder.ready
    registry.latest_errors.append(StoreError("S3 at http://minio:9000 failed: connection refused"))
    holder.check()
    assert not holder.ready and holder.require() is holder.current  # answers still come from memory
    assert "not reachable (S3 at http://minio:9000 failed" in holder.unavailable_reason()
    assert metrics.store_errors.value() == 1
    holder.check()
    assert holder.ready
