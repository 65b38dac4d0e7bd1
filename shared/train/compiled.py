"""The booster compiled to a shared library (:mod:`emgpose.train.ccode` + gcc), called through ctypes.

One booster call through XGBoost's ``inplace_predict`` costs a fixed ~0.1-0.2 ms of dispatch before any
tree is walked; for the one to a few dozen windows a request or a batch carries, the compiled tables
answer the same float32 numbers in a fraction of that (``bench/compiled.py``, ``docs/benchmarks.md``).

The library is built once per booster: cached under ``COMPILED_CACHE_DIR`` keyed by the SHA-256 of the
booster's JSON and the generator version (a model version is immutable, so the key never goes stale;
a host-specific ``.so`` is not written into the model store), loaded once per process. A build writes
to a temporary name and renames it, so concurrent workers never load half a library.

``MODEL_BACKEND`` chooses: ``xgboost``, ``compiled`` (gcc must exist), or ``auto`` (compile, time both
on 16 rows, keep the faster; XGBoost where gcc is missing).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xgboost as xgb

from emgpose.errors import InvalidInput, Unavailable
from emgpose.settings import get_settings
from emgpose.train import boost
from emgpose.train.bundle import Bundle
from emgpose.train.ccode import GENERATOR, flatten, render_booster

log = logging.getLogger(__name__)

Runner = Callable[[np.ndarray], np.ndarray]  # feature rows -> (n, outputs) float64 raw booster output
CFLAGS = ("-O2", "-std=c99", "-shared", "-fPIC")
_loaded: dict[str, CompiledBooster] = {}
_lock = threading.Lock()


def gcc() -> str | None:
    """The C compiler used (``CC``, else ``gcc`` on PATH), or None."""
    return shutil.which(os.environ.get("CC", "gcc"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emgpose" / "compiled"


class CompiledBooster:
    """A booster's generated C loaded from a shared library; :meth:`predict` matches ``boost.predict``."""

    def __init__(self, library: Path, num_features: int, outputs: int) -> None:
        self.library, self.num_features, self.outputs = library, num_features, outputs
        self._lib = ctypes.CDLL(str(library))  # ctypes releases the GIL for the call
        self._rows = self._lib.emgpose_booster_rows
        self._rows.restype = None
        self._rows.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_void_p]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Raw output ``(n, outputs)`` float64 for ``(n, num_features)`` rows, like :func:`boost.predict`."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise InvalidInput(f"compiled model expects rows of {self.num_features} features, got shape {x.shape}")
        out = np.empty((len(x), self.outputs), dtype=np.float32)
        if len(x):
            self._rows(x.ctypes.data, len(x), self.num_features, out.ctypes.data)
        return out.astype(np.float64)


def booster_key(booster: xgb.Booster) -> str:
    raw = bytes(booster.save_raw("json"))
    return hashlib.sha256(raw + GENERATOR.encode() + " ".join(CFLAGS).encode()).hexdigest()


def compile_booster(booster: xgb.Booster, outputs: int, cache_dir: Path | None = None) -> CompiledBooster:
    """The booster's compiled library, built into ``cache_dir`` on first use and loaded once per process."""
    key = booster_key(booster)
    with _lock:
        if key in _loaded:
            return _loaded[key]
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        library = cache / f"{key[:32]}.so"
        if not library.exists():
            _build(render_booster(flatten(booster)), library)
        _loaded[key] = CompiledBooster(library, booster.num_features(), outputs)
        return _loaded[key]


def _build(source: str, library: Path) -> None:
    compiler = gcc()
    if compiler is None:
        raise Unavailable("MODEL_BACKEND=compiled needs a C compiler: gcc is not on PATH (or set CC)")
    try:
        library.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise Unavailable(f"COMPILED_CACHE_DIR {library.parent} cannot hold the compiled model: {exc}") from None
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=library.parent) as tmp:
        c_file, so_file = Path(tmp) / "model.c", Path(tmp) / "model.so"
        c_file.write_text(source)
        done = subprocess.run([compiler, *CFLAGS, "-o", str(so_file), str(c_file), "-lm"], capture_output=True)
        if done.returncode != 0:
            raise Unavailable(f"compiling the model failed ({compiler}): {done.stderr.decode()[-2000:]}")
        os.replace(so_file, library)  # atomic: a concurrent loader sees no library or a whole one
    log.info("compiled model %s in %.1f s", library.name, time.perf_counter() - started)


def _median_s(run: Runner, rows: np.ndarray, repeats: int = 15) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(rows)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def runner(booster: xgb.Booster, outputs: int, backend: str, cache_dir: Path | None = None) -> Runner:
    """The function :class:`~emgpose.train.predict.Predictor` calls for raw booster output, per ``backend``."""

    def native(x: np.ndarray) -> np.ndarray:
        return boost.predict(booster, x, outputs)

    if backend == "xgboost":
        return native
    if backend == "compiled":
        return compile_booster(booster, outputs, cache_dir).predict
    if backend != "auto":
        raise InvalidInput(f"MODEL_BACKEND must be xgboost, compiled or auto, got {backend!r}")
    if gcc() is None:
        log.info("MODEL_BACKEND=auto: no gcc, serving through XGBoost")
        return native
    try:
        compiled = compile_booster(booster, outputs, cache_dir)
    except (Unavailable, OSError) as exc:  # a failed build (disk, permissions) must not stop serving
        log.warning("MODEL_BACKEND=auto: the compiled model is unavailable (%s); serving through XGBoost", exc)
        return native
    rows = np.random.default_rng(0).standard_normal((16, booster.num_features())).astype(np.float32)
    fast, slow = _median_s(compiled.predict, rows), _median_s(native, rows)
    log.info("MODEL_BACKEND=auto: compiled %.3f ms, XGBoost %.3f ms per 16 rows", fast * 1e3, slow * 1e3)
    return compiled.predict if fast <= slow else native


def bundle_runner(bundle: Bundle, backend: str | None = None) -> Runner:
    """The bundle's runner for ``backend`` (default: ``MODEL_BACKEND``), chosen once per loaded bundle:
    a Predictor is made per request, the compile and the ``auto`` measurement happen at the first."""
    settings = get_settings()
    backend = backend or settings.model_backend
    chosen: dict[str, Runner] = bundle.__dict__.setdefault("_runners", {})
    if backend not in chosen:
        cache = None if settings.compiled_cache_dir is None else Path(settings.compiled_cache_dir)
        chosen[backend] = runner(bundle.booster, bundle.outputs, backend, cache)
    return chosen[backend]
