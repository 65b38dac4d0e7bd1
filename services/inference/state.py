"""The served model and the watcher that hot-swaps it.

:class:`ModelHolder` keeps ONE reference, ``current``: an immutable :class:`Loaded` (bundle, version,
window size). A request reads ``current`` once at its start and uses that object to the end, so a swap
never fails a request or mixes two versions in one answer. The watcher thread reads the ``latest``
pointer every ``interval`` seconds; on a new version it loads it completely (``Registry.load`` checks
``bundle.json``, the SHA-256 and the feature list), runs one warm-up prediction, and only then assigns
``current`` (one reference assignment, atomic in Python).

A version that fails to load is refused: the old one keeps serving, the error is logged, kept in
``last_error`` (shown by ``/readyz``) and counted in ``/metrics``. It is not retried on every tick:
only when the pointer moves to another version, or after a backoff (doubling from ``interval`` for a
store outage, :data:`REFUSED_RETRY_S` for a broken version, since versions are immutable).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from emgpose.errors import DataFormatError, EmgPoseError, StoreError
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.predict import Predictor, predict
from emgpose_inference.errors import ModelUnavailable
from emgpose_inference.metrics import Metrics

log = logging.getLogger(__name__)

REFUSED_RETRY_S = 600.0  # a broken version is retried after this long (it may have been re-uploaded)
MAX_STORE_BACKOFF_S = 60.0  # a version that failed on a store error is retried at most this far apart


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _message(exc: BaseException) -> str:
    return exc.message if isinstance(exc, EmgPoseError) else f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Loaded:
    """One loaded, validated, warmed-up model version; never changed after it is built."""

    bundle: Bundle
    loaded_at: str
    window_length: int  # samples per window
    window_stride: int  # samples between window ends

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.version

    @classmethod
    def warm(cls, bundle: Bundle) -> Loaded:
        """Builds the predictor once and predicts one window of zeros: a version that cannot answer is
        refused before it is swapped in.

        The booster predicts on ONE thread: a request's few rows take a fraction of a millisecond, and
        XGBoost's OpenMP team (every core by default) spins against the event loop and the other
        serving processes for them: 17 ms instead of 1 ms for one row on a busy 2-core machine. The
        processes (``INFERENCE_WORKERS``) use the cores."""
        bundle.booster.set_param({"nthread": 1})
        predictor = Predictor(bundle, source=f"warm-up of {bundle.name} {bundle.version}")
        emg = np.zeros((predictor.window_length, bundle.num_channels), dtype=np.float32)
        result = predict(bundle, emg)
        if result.values.shape != (1, bundle.outputs) or not np.isfinite(result.values).all():
            raise DataFormatError(
                f"model {bundle.name} {bundle.version}: the warm-up prediction gave shape {result.values.shape} "
                f"(finite: {bool(np.isfinite(result.values).all())}), expected (1, {bundle.outputs}) finite values"
            )
        return cls(bundle, _now(), predictor.window_length, predictor.stream.stride)


@dataclass(frozen=True)
class ReloadFailure:
    version: str
    message: str
    at: str

    def as_dict(self) -> dict[str, str]:
        return {"version": self.version, "message": self.message, "at": self.at}


@dataclass(frozen=True)
class StoreStatus:
    reachable: bool
    checked_at: str | None
    error: str | None


@dataclass
class _Refusal:
    version: str
    failures: int
    retry_at: float  # time.monotonic()


class ModelHolder:
    """The served model of ``name`` in ``registry``, kept current by :meth:`check` (see the module doc)."""

    def __init__(self, registry: Registry, name: str, interval: float, metrics: Metrics) -> None:
        self.registry = registry
        self.name = name
        self.interval = interval
        self.metrics = metrics
        self.current: Loaded | None = None
        self.last_error: ReloadFailure | None = None
        self.store_status = StoreStatus(reachable=False, checked_at=None, error="not checked yet")
        self._pointer: str | None = None  # the version `latest` named at the last check
        self._refusal: _Refusal | None = None
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._checked = threading.Event()  # set after the first check
        self._thread: threading.Thread | None = None

    # --- what requests use -------------------------------------------------------------------

    def require(self) -> Loaded:
        """The model to answer with (read once per request), or 503 saying what is missing."""
        loaded = self.current
        if loaded is None:
            raise ModelUnavailable(self.unavailable_reason())
        return loaded

    def unavailable_reason(self) -> str:
        where = self.registry.store.url(f"models/{self.name}")
        if not self.store_status.reachable:
            return f"no model loaded: the object store is not reachable ({self.store_status.error})"
        if self._pointer is None:
            return f"no model {self.name!r} is published yet (nothing at {where}/latest); train one and promote it"
        failure = f": {self.last_error.message}" if self.last_error else ""
        return f"no model loaded: model {self.name!r} version {self._pointer!r} could not be loaded{failure}"

    @property
    def ready(self) -> bool:
        return self.current is not None and self.store_status.reachable

    # --- the watcher ----------------------------------------------------------------------------

    def check(self) -> None:
        """Reads the pointer and loads a new version if there is one; never raises."""
        with self._check_lock:
            try:
                target = self.registry.latest(self.name)
            except Exception as exc:  # an unreadable pointer is a store problem, whatever raised it
                changed = self.store_status.error != _message(exc)  # log changes, not every tick
                self.store_status = StoreStatus(False, _now(), _message(exc))
                self.metrics.store_errors.inc()
                log.log(
                    logging.WARNING if changed else logging.DEBUG,
                    "cannot read the latest pointer of model %s: %s",
                    self.name,
                    _message(exc),
                )
                return
            if not self.store_status.reachable and self.store_status.checked_at is not None:
                log.info("the store %s is reachable again", self.registry.store.uri)
            self.store_status = StoreStatus(True, _now(), None)
            if target != self._pointer:
                self._pointer, self._refusal = target, None  # the pointer moved: a fresh chance
            if target is None or (self.current is not None and self.current.version == target):
                return
            if self._refusal is not None and time.monotonic() < self._refusal.retry_at:
                return
            self._load(target)

    def _load(self, version: str) -> None:
        started = time.perf_counter()
        try:
            loaded = Loaded.warm(self.registry.load(self.name, version))
        except Exception as exc:
            self._refuse(version, exc)
            return
        previous, self.current = self.current, loaded  # the swap: one reference
        self.last_error = None
        self.metrics.reloads.inc(result="success")
        self.metrics.model_info.replace(1, model=loaded.name, version=loaded.version)
        self.metrics.model_loaded.set(1)
        log.info(
            "serving model %s version %s (loaded in %.2f s%s)",
            loaded.name,
            loaded.version,
            time.perf_counter() - started,
            f", replacing {previous.version}" if previous else "",
        )

    def _refuse(self, version: str, exc: Exception) -> None:
        failures = self._refusal.failures + 1 if self._refusal and self._refusal.version == version else 1
        transient = isinstance(exc, StoreError)
        delay = min(MAX_STORE_BACKOFF_S, self.interval * 2**failures) if transient else REFUSED_RETRY_S
        self._refusal = _Refusal(version, failures, time.monotonic() + delay)
        self.last_error = ReloadFailure(version, _message(exc), _now())
        self.metrics.reloads.inc(result="failure")
        serving = self.current.version if self.current else "nothing"
        log.error(
            "refused model %s version %s: %s (still serving %s; retry in %.0f s or when latest moves)",
            self.name,
            version,
            _message(exc),
            serving,
            delay,
            exc_info=not isinstance(exc, EmgPoseError),
        )

    def start(self) -> None:
        """Starts the watcher thread; its first check (and load) happens at once."""
        self._thread = threading.Thread(target=self._watch, name=f"model-watcher-{self.name}", daemon=True)
        self._thread.start()

    def wait_first_check(self, timeout: float) -> bool:
        """Blocks until the first check is done (True) or ``timeout`` passes (False)."""
        return self._checked.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _watch(self) -> None:
        self.check()
        self._checked.set()
        while not self._stop.wait(self.interval):
            self.check()
