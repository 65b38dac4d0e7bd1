"""The comparative study: one dataset through the CPU chain, CuPy's built-in GPU chain and our kernels.

Four configurations (:data:`CONFIGS`) run the same work on the same sessions, each in its own process
(so that peak host memory is its own):

* ``cpu``: NumPy/SciPy (:class:`~emgpose.preprocess.signal.CausalChain`, the CPU feature fast path) and
  XGBoost ``hist`` on all cores;
* ``gpu-builtin``: ``cupyx.scipy.signal.sosfilt`` and CuPy array operations, XGBoost on CUDA;
* ``gpu-kernels``: our kernels (``kernels/*.cu``), XGBoost on CUDA fed from the device arrays;
* ``gpu-kernels-objective``: the same with our pseudo-Huber objective kernel.

Every session (``S`` of them, ``C`` channels, cut to the shortest one's length ``L``) sits side by side
in one ``(L, S*C)`` matrix, so each step is one launch over all sessions. As in the preprocess job, pass 1
(the training sessions) computes the z-score statistics and pass 2 (all sessions) filters again and
applies them in the fused envelope. Stages are timed with the device synchronised at both ends:
``read, transfer, filter, envelope, features, train, predict``.

The report also measures the device's copy bandwidth and, for the fused stages of pass 2, the bytes
they move at least (each input element read once, each output element written once: the traffic of a
perfect kernel; the blocked band-pass reads its input twice and is still counted once) as a share of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset
from emgpose.preprocess.features import FEATURES, compute_stream_features
from emgpose.preprocess.kernel_path import to_host
from emgpose.preprocess.signal import CausalChain, design_sos, finite_emg, finite_rows
from emgpose.preprocess.windows import ik_failures

STAGES = ("read", "transfer", "filter", "envelope", "features", "train", "predict")
GIB = 1 << 30


@dataclass(frozen=True)
class Config:
    chain: str  # numpy | builtin | kernels
    device: str  # cpu | cuda
    objective: str = "squared_error"


CONFIGS = {
    "cpu": Config("numpy", "cpu"),
    "gpu-builtin": Config("builtin", "cuda"),
    "gpu-kernels": Config("kernels", "cuda"),
    "gpu-kernels-objective": Config("kernels", "cuda", "pseudo_huber"),
}
# The kernels' configurations on the host emulation with XGBoost on the CPU: slow, for tests of the
# study's GPU code path on machines without a GPU (not part of the default study).
EMULATED = {
    "emulate-kernels": Config("kernels-emulated", "cpu"),
    "emulate-kernels-objective": Config("kernels-emulated", "cpu", "pseudo_huber"),
}
# Accuracy must agree: same objective, MAE within 3 % (histogram bins and float order differ between
# devices); the pseudo-Huber objective optimises another loss, so within 15 % of the squared error's.
SAME_LOSS_RTOL, OTHER_LOSS_RTOL = 0.03, 0.15


@dataclass(frozen=True)
class StudyOptions:
    rounds: int = 100
    max_depth: int = 6
    nthread: int | None = None  # CPU threads for XGBoost (default: every core this process may use)
    preprocess: dict | None = None  # PreprocessConfig overrides


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# --- the three chains ---------------------------------------------------------------------------------


class NumpyChain:
    """The CPU code the preprocess job runs (CausalChain's filter and moving average, the stream features)."""

    xp = np

    def __init__(self, config: PreprocessConfig, rate: float) -> None:
        self.config, self.rate = config, rate

    def filter(self, x: np.ndarray, zi: np.ndarray) -> np.ndarray:
        return signal.sosfilt(design_sos(self.config, self.rate), x, axis=0, zi=zi)[0]

    def envelope(self, y: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        chain = CausalChain(self.config, self.rate, y.shape[1])
        return (chain._smooth(y) - mean) / std

    def sums(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x.sum(axis=0), np.einsum("ij,ij->j", x, x)

    def features(self, signals: dict[str, Any], stride: int, count: int, length: int) -> Any:
        starts = np.arange(count, dtype=np.int64) * stride
        c = self.config
        return compute_stream_features(signals, starts, length, c.features, c.zc_threshold)


class BuiltinChain(NumpyChain):
    """What a CuPy user writes with the library's calls: cupyx's sosfilt, cumsum-based sums."""

    def __init__(self, config: PreprocessConfig, rate: float) -> None:
        import cupy  # noqa: PLC0415
        import cupyx.scipy.signal  # noqa: PLC0415

        super().__init__(config, rate)
        self.xp, self._signal = cupy, cupyx.scipy.signal
        self._sos = cupy.asarray(design_sos(config, rate))

    def filter(self, x: Any, zi: Any) -> Any:
        return self._signal.sosfilt(self._sos, x, axis=0, zi=zi)[0]

    def envelope(self, y: Any, mean: Any, std: Any) -> Any:
        xp, ma = self.xp, self.config.moving_average
        total = xp.cumsum(xp.abs(y) if self.config.rectify else y, axis=0)
        total[ma:] -= total[:-ma].copy()
        return (total / ma - mean) / std

    def sums(self, x: Any) -> tuple[Any, Any]:
        return x.sum(axis=0), (x * x).sum(axis=0)

    def features(self, signals: dict[str, Any], stride: int, count: int, length: int) -> Any:
        xp, c = self.xp, self.config
        starts = xp.arange(count) * stride
        ends = starts + length - 1
        columns = []
        for name in c.features:
            feature = FEATURES[name]
            x = signals[feature.signal]
            if feature.term is None:
                columns.append(x[ends])
                continue
            terms = xp.zeros((len(x) + 1, x.shape[1]))
            terms[1 : len(x) + 1 - feature.span] = _terms(xp, name, x.astype(xp.float64), c.zc_threshold)
            prefix = xp.cumsum(terms, axis=0)
            total = prefix[xp.maximum(ends - feature.span + 1, starts)] - prefix[starts]
            columns.append(feature.finish(total, length))
        return xp.concatenate(columns, axis=1).astype(xp.float32)


def _terms(xp: ModuleType, name: str, x: Any, threshold: float) -> Any:
    """The per-sample terms of :data:`FEATURES`, written with CuPy operations."""
    if name == "env_mean":
        return x
    if name == "mav":
        return xp.abs(x)
    if name == "rms":
        return x * x
    if name == "wl":
        return xp.abs(x[1:] - x[:-1])
    if name == "zc":
        a, b = x[:-1], x[1:]
        return ((a * b < 0) & (xp.abs(a - b) >= threshold)).astype(xp.float64)
    if name == "ssc":
        mid = x[1:-1]
        return ((mid - x[:-2]) * (mid - x[2:]) > threshold).astype(xp.float64)
    raise InvalidInput(f"the built-in chain has no term for feature {name!r}")


class KernelsChain(NumpyChain):
    """Our kernels: blocked SOS scan, fused envelope, block-reduced sums, one-pass window features.

    On CuPy arrays they run on the device; on NumPy arrays (``emulate``) on the host emulation, which is
    how CI checks this configuration's code path without a GPU.
    """

    def __init__(self, config: PreprocessConfig, rate: float, emulate: bool = False) -> None:
        super().__init__(config, rate)
        if not emulate:
            import cupy  # noqa: PLC0415

            self.xp = cupy
        self._sos = design_sos(config, rate)  # on the host: the scan's transition powers are computed there

    def filter(self, x: Any, zi: Any) -> Any:
        from emgpose_kernels.sosfilt import sosfilt  # noqa: PLC0415

        return sosfilt(self._sos, x, zi)[0]

    def envelope(self, y: Any, mean: Any, std: Any) -> Any:
        from emgpose_kernels.envelope import envelope  # noqa: PLC0415

        history = self.xp.zeros((self.config.moving_average - 1, y.shape[1]))
        return envelope(y, history, mean, std, self.config.moving_average, self.config.rectify)[0]

    def sums(self, x: Any) -> tuple[Any, Any]:
        from emgpose_kernels.colstats import colstats  # noqa: PLC0415

        return colstats(x)

    def features(self, signals: dict[str, Any], stride: int, count: int, length: int) -> Any:
        from emgpose_kernels.features import window_features  # noqa: PLC0415

        c = self.config
        return window_features(signals, 0, stride, count, length, c.features, c.zc_threshold)


CHAINS: dict[str, Callable[[PreprocessConfig, float], NumpyChain]] = {
    "numpy": NumpyChain,
    "builtin": BuiltinChain,
    "kernels": KernelsChain,
    "kernels-emulated": lambda config, rate: KernelsChain(config, rate, emulate=True),
}


# --- timing and memory ----------------------------------------------------------------------------------


class Clock:
    """Seconds per stage; on a GPU the device is synchronised before and after each stage."""

    def __init__(self, xp: ModuleType) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.parts: dict[str, float] = {}
        self._sync = (lambda: xp.cuda.Device().synchronize()) if xp is not np else (lambda: None)

    @contextlib.contextmanager
    def __call__(self, stage: str, part: str | None = None) -> Iterator[None]:
        self._sync()
        started = time.perf_counter()
        yield
        self._sync()
        elapsed = time.perf_counter() - started
        self.seconds[stage] += elapsed
        if part:
            self.parts[part] = elapsed


class DeviceMemory:
    """Peak device memory in use (all allocators, XGBoost's included), sampled every 5 ms."""

    def __init__(self, cupy: ModuleType | None) -> None:
        self.cupy, self.peak, self._stop = cupy, 0, threading.Event()
        self._base = self._used() if cupy else 0
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _used(self) -> int:
        free, total = self.cupy.cuda.runtime.memGetInfo()
        return int(total - free)

    def _watch(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._used() - self._base)

    def __enter__(self) -> DeviceMemory:
        if self.cupy:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.cupy:
            self._thread.join()
            self.peak = max(self.peak, self._used() - self._base)


# --- one configuration ------------------------------------------------------------------------------


@dataclass
class Sessions:
    emg: np.ndarray  # (L, S*C) float64, sessions side by side
    angles: np.ndarray  # (S, L, J) float64
    splits: list[str]
    rate: float
    channels: int
    joints: list[str]


def read_sessions(data_uri: str) -> Sessions:
    """Every session's selected range, cut to the shortest one, as one ``(L, S*C)`` matrix."""
    with Dataset(data_uri) as dataset:
        layout, entries = dataset.layout, dataset.sessions
        if not layout.joint_names:
            raise InvalidInput(f"{data_uri}: the study trains joint angles, and this dataset has none")
        length = min(e.samples for e in entries)
        c = layout.num_channels
        emg = np.empty((length, len(entries) * c))
        angles = np.empty((len(entries), length, len(layout.joint_names)))
        from emgpose.formats.session import SessionReader  # noqa: PLC0415

        for s, entry in enumerate(entries):
            with SessionReader(entry.path) as reader:
                chunk = reader.read(entry.start_index, entry.start_index + length)
            x = chunk.emg.astype(np.float64)
            emg[:, s * c : (s + 1) * c] = finite_emg(x, c)[0]
            angles[s] = chunk.joint_angles
        return Sessions(emg, angles, [e.row.split for e in entries], layout.sample_rate, c, list(layout.joint_names))


def _per_channel(sums: Any, channels: int) -> np.ndarray:
    """Column sums over sessions side by side (``S*C`` columns) added up per channel."""
    return to_host(sums).reshape(-1, channels).sum(axis=0)


def run_config(name: str, data_uri: str, options: StudyOptions) -> dict[str, Any]:
    """One configuration, start to end, in this process: stage seconds, memory, accuracy."""
    from emgpose.train import boost  # noqa: PLC0415
    from emgpose.train.metrics import regression_metrics  # noqa: PLC0415

    spec = {**CONFIGS, **EMULATED}[name]
    config = PreprocessConfig.model_validate(options.preprocess or {})
    if cpu_only := [feature for feature in config.features if not FEATURES[feature].gpu]:
        # The study compares the GPU chains feature for feature: only features every chain computes.
        raise InvalidInput(f"features {cpu_only} are CPU-only (no GPU twin yet): the study's chains compute "
                           f"{[f for f in FEATURES if FEATURES[f].gpu]}")  # fmt: skip
    if config.context or config.window.extra_lengths:
        raise InvalidInput("the study's chains compute one window length without temporal context: "
                           "leave window.extra_lengths empty and context at 0")  # fmt: skip
    cupy = None
    if spec.device == "cuda":
        import cupy  # noqa: PLC0415
    xp = cupy or np
    clock = Clock(xp)
    with DeviceMemory(cupy) as device_memory:
        with clock("read"):
            data = read_sessions(data_uri)
        chain = CHAINS[spec.chain](config, data.rate)
        c, n_sessions = data.channels, len(data.splits)
        length, stride = config.window.samples(data.rate)
        count = (len(data.emg) - length) // stride + 1 if len(data.emg) >= length else 0
        if count < 1:
            raise InvalidInput(f"{data_uri}: sessions are shorter than one window ({length} samples)")
        train = [s for s, split in enumerate(data.splits) if split == "train"]
        columns = [s * c + k for s in train for k in range(c)]
        zi = signal.sosfilt_zi(design_sos(config, data.rate))[:, :, None] * data.emg[0][None, None, :]
        with clock("transfer", "emg to device"):
            x, zi_all = xp.asarray(data.emg), xp.asarray(zi)
        # Pass 1: statistics of the training sessions' filtered signal and raw envelope.
        with clock("filter"):
            y_train = chain.filter(x[:, columns], zi_all[:, :, columns])
        rows = len(train) * len(data.emg)
        with clock("envelope"):
            e_train = chain.envelope(y_train, xp.zeros(len(columns)), xp.ones(len(columns)))
            moments = [chain.sums(y_train), chain.sums(e_train)]
        stats = []
        for s1, s2 in moments:
            mean = _per_channel(s1, c) / rows
            var = _per_channel(s2, c) / rows - mean**2
            stats.append((np.tile(mean, n_sessions), np.tile(np.sqrt(np.maximum(var, 1e-24)), n_sessions)))
        (f_mean, f_std), (e_mean, e_std) = stats
        del y_train, e_train
        # Pass 2: every session, filtered again, z-scored, windowed.
        with clock("filter", "filter"):
            y = chain.filter(x, zi_all)
        with clock("envelope", "envelope"):
            env = chain.envelope(y, xp.asarray(e_mean), xp.asarray(e_std))
        with clock("envelope", "scale"):
            signals = {
                "filtered": ((y - xp.asarray(f_mean)) / xp.asarray(f_std)).astype(xp.float32),
                "envelope": env.astype(xp.float32),
            }
        del y, env
        with clock("features", "features"):
            matrix = chain.features(signals, stride, count, length)  # (count, F * S * C)
            n_features = len(config.features)
            matrix = matrix.reshape(count, n_features, n_sessions, c).transpose(2, 0, 1, 3)
            matrix = xp.ascontiguousarray(matrix.reshape(n_sessions * count, n_features * c))
        del signals
        ends = np.arange(count) * stride + length - 1
        targets = data.angles[:, ends].reshape(n_sessions * count, -1)
        split_of_row = np.repeat(np.asarray(data.splits), count)
        ok = finite_rows(targets) & ~ik_failures(targets, config.ik_failure_tol)
        mean_t = targets[ok & (split_of_row == "train")].mean(axis=0)
        std_t = targets[ok & (split_of_row == "train")].std(axis=0) + 1e-12
        pick = {s: np.flatnonzero(ok & (split_of_row == s)) for s in ("train", "val", "test")}
        with clock("transfer", "targets to device"):
            index = {s: xp.asarray(i) for s, i in pick.items()}
            yz = {s: xp.asarray((targets[i] - mean_t) / std_t) for s, i in pick.items()}
        boost_config = boost.BoostConfig(
            device=spec.device,
            num_rounds=options.rounds,
            max_depth=options.max_depth,
            objective=spec.objective,
            nthread=options.nthread or cores(),
            early_stopping_rounds=max(10, options.rounds // 5),
        )
        with clock("train"):
            fitted = boost.fit(
                boost_config,
                "regression",
                matrix[index["train"]],
                yz["train"],
                matrix[index["val"]] if len(pick["val"]) else None,
                yz["val"] if len(pick["val"]) else None,
            )
        with clock("predict"):
            predicted = boost.predict(fitted.booster, matrix[index["test"]], len(data.joints))
        angles = predicted * std_t + mean_t
        metrics = regression_metrics(targets[pick["test"]], angles, data.joints)
    return {
        "config": name,
        "chain": spec.chain,
        "device": spec.device,
        "objective": spec.objective,
        "seconds": {k: round(v, 4) for k, v in clock.seconds.items()},
        "parts_seconds": {k: round(v, 5) for k, v in clock.parts.items()},
        "total_seconds": round(sum(clock.seconds.values()), 4),
        "peak_host_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_device_bytes": device_memory.peak,
        "rounds": fitted.best_round,
        "windows": {s: len(i) for s, i in pick.items()},
        "shape": {"samples": len(data.emg), "sessions": n_sessions, "channels": c, "features": n_features * c},
        "accuracy": {"mae_deg": metrics["mae_deg"], "rmse_deg": metrics["rmse_deg"], "r2_mean": metrics["r2_mean"]},
    }


# --- bandwidth, XGBoost at scale ------------------------------------------------------------------------


def copy_bandwidth(nbytes: int = GIB, repeats: int = 10) -> dict[str, Any]:
    """Device-to-device copy bandwidth (bytes read + bytes written per second), median of ``repeats``."""
    import cupy  # noqa: PLC0415

    a = cupy.ones(nbytes // 4, dtype=cupy.float32)
    b = cupy.empty_like(a)
    b[...] = a  # warm up
    cupy.cuda.Device().synchronize()
    times = []
    for _ in range(repeats):
        start, stop = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        b[...] = a
        stop.record()
        stop.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, stop) / 1000.0)
    seconds = float(np.median(times))
    return {"bytes": 2 * a.nbytes, "seconds": seconds, "gb_per_s": round(2 * a.nbytes / seconds / 1e9, 1)}


def fused_traffic(result: dict[str, Any], features: int) -> dict[str, int]:
    """The least bytes each fused pass-2 stage must move (each input read once, each output written once)."""
    shape = result["shape"]
    elements = shape["samples"] * shape["sessions"] * shape["channels"]
    windows = sum(result["windows"].values())
    return {
        "filter": elements * 8 * 2,  # float64 in, float64 out
        "envelope": elements * 8 * 2,  # filtered in, z-scored envelope out
        "features": elements * 4 * 2 + windows * shape["features"] * 4,  # two float32 signals in, matrix out
    }


def xgboost_scaling(windows: int, rounds: int, features: int = 96, joints: int = 20, seed: int = 0) -> dict:
    """XGBoost ``hist`` on every CPU core against CUDA on a synthetic ``windows x features`` problem.

    Both fit the same rounds on the same rows (targets: a smooth function of a few features plus noise);
    the reply gives seconds per round (quantising included once) and both models' MAE on held-out rows.
    """
    import xgboost as xgb  # noqa: PLC0415

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((windows, features), dtype=np.float32)
    mix = rng.standard_normal((features, joints)).astype(np.float32) / np.sqrt(features)
    y = np.tanh(x @ mix) + 0.1 * rng.standard_normal((windows, joints), dtype=np.float32)
    hold = max(1, windows // 10)
    params = {"tree_method": "hist", "max_depth": 6, "learning_rate": 0.3, "max_bin": 256, "seed": seed}
    out: dict[str, Any] = {"windows": windows, "features": features, "joints": joints, "rounds": rounds}
    devices = ["cpu"]
    from emgpose.devices import gpu_available  # noqa: PLC0415

    if gpu_available():
        devices.append("cuda")
    for device in devices:
        if device == "cuda":
            import cupy  # noqa: PLC0415

            xs, ys = cupy.asarray(x), cupy.asarray(y)
            cupy.cuda.Device().synchronize()
        else:
            xs, ys = x, y
        started = time.perf_counter()
        train = xgb.QuantileDMatrix(xs[hold:], label=ys[hold:], max_bin=256)
        booster = xgb.train({**params, "device": device, "nthread": cores()}, train, num_boost_round=rounds)
        predicted = booster.inplace_predict(xs[:hold])
        predicted = predicted.get() if hasattr(predicted, "get") else predicted
        seconds = time.perf_counter() - started
        out[device] = {
            "seconds": round(seconds, 3),
            "seconds_per_round": round(seconds / rounds, 4),
            "mae": round(float(np.abs(predicted - y[:hold]).mean()), 5),
            "threads": cores() if device == "cpu" else None,
        }
        del train, booster, xs, ys
    if "cuda" in out:
        out["speedup"] = round(out["cpu"]["seconds"] / out["cuda"]["seconds"], 2)
        out["mae_relative_difference"] = round(abs(out["cuda"]["mae"] - out["cpu"]["mae"]) / out["cpu"]["mae"], 4)
    return out


# --- the whole study ----------------------------------------------------------------------------------


def device_name() -> str | None:
    from emgpose.devices import gpu_available  # noqa: PLC0415

    if not gpu_available():
        return None
    import cupy  # noqa: PLC0415

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def _run_child(name: str, data_uri: str, options: StudyOptions, workdir: str) -> dict[str, Any]:
    """:func:`run_config` in a fresh Python process, so that its peak host memory is its own."""
    out = os.path.join(workdir, f"{name}.json")
    request = {"config": name, "data": data_uri, "options": options.__dict__, "out": out}
    command = [sys.executable, "-m", "emgpose.study", json.dumps(request)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"config": name, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed",
                "log": done.stderr[-3000:]}  # fmt: skip
    return json.loads(Path(out).read_text())


def run_study(
    data_uri: str,
    configs: list[str],
    options: StudyOptions,
    *,
    xgb_windows: int = 0,
    xgb_rounds: int = 5,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every configuration in turn on ``data_uri``, then the bandwidth and the XGBoost scaling; the report."""
    unknown = [c for c in configs if c not in CONFIGS and c not in EMULATED]
    if unknown:
        raise InvalidInput(f"unknown study configurations {unknown}; choose from {sorted(CONFIGS)}")
    gpu = device_name()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="emgpose-study-") as workdir:
        for name in configs:
            if {**CONFIGS, **EMULATED}[name].device == "cuda" and gpu is None:
                results[name] = {"config": name, "skipped": "no CUDA device is usable here (CuPy sees none)"}
                continue
            if progress:
                progress(f"running {name}")
            results[name] = _run_child(name, data_uri, options, workdir)
    report: dict[str, Any] = {
        "format": "emgpose.study/1",
        "device": gpu,
        "host": {"cores": cores(), "python": sys.version.split()[0]},
        "data": data_uri,
        "options": options.__dict__,
        "configs": results,
    }
    ran = {k: v for k, v in results.items() if "seconds" in v}
    features = len(PreprocessConfig.model_validate(options.preprocess or {}).features)
    if gpu is not None:
        if progress:
            progress("measuring copy bandwidth")
        bandwidth = copy_bandwidth()
        report["bandwidth"] = {"copy": bandwidth, "fused": {}}
        for name, result in ran.items():
            if result["device"] != "cuda":
                continue
            traffic = fused_traffic(result, features)
            report["bandwidth"]["fused"][name] = {
                stage: {
                    "bytes": nbytes,
                    "seconds": result["parts_seconds"][stage],
                    "gb_per_s": round(nbytes / result["parts_seconds"][stage] / 1e9, 1),
                    "share_of_copy": round(nbytes / result["parts_seconds"][stage] / 1e9 / bandwidth["gb_per_s"], 3),
                }
                for stage, nbytes in traffic.items()
                if result["parts_seconds"].get(stage)
            }
    if xgb_windows:
        if progress:
            progress(f"XGBoost at {xgb_windows} windows")
        report["xgboost"] = xgboost_scaling(xgb_windows, xgb_rounds)
    report["comparison"] = compare(ran)
    return report


def _chain_seconds(result: dict[str, Any]) -> float:
    return sum(result["seconds"][s] for s in ("filter", "envelope", "features"))


def compare(ran: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Speed-ups against the stated targets and the accuracy agreement between configurations."""
    out: dict[str, Any] = {}
    if "gpu-kernels" in ran and "gpu-builtin" in ran:
        out["kernels_vs_builtin_chain"] = round(
            _chain_seconds(ran["gpu-builtin"]) / _chain_seconds(ran["gpu-kernels"]), 2
        )
    if "gpu-kernels" in ran and "cpu" in ran:
        out["gpu_vs_cpu_total"] = round(ran["cpu"]["total_seconds"] / ran["gpu-kernels"]["total_seconds"], 2)
        out["gpu_vs_cpu_chain"] = round(_chain_seconds(ran["cpu"]) / _chain_seconds(ran["gpu-kernels"]), 2)
    base = ran.get("cpu") or next(iter(ran.values()), None)
    if base is not None:
        agreement = {}
        for name, result in ran.items():
            reference, mine = base["accuracy"]["mae_deg"], result["accuracy"]["mae_deg"]
            tolerance = SAME_LOSS_RTOL if result["objective"] == base["objective"] else OTHER_LOSS_RTOL
            difference = abs(mine - reference) / reference
            agreement[name] = {"mae_deg": mine, "relative_difference": round(difference, 4),
                               "tolerance": tolerance, "agrees": difference <= tolerance}  # fmt: skip
        out["accuracy"] = {"reference": base["config"], "configs": agreement}
    return out


# --- plots and the report on disk -------------------------------------------------------------------------


def write_plots(report: dict[str, Any], folder: str | os.PathLike) -> list[str]:
    """``stages.png`` (seconds per stage, stacked), ``memory.png`` (peak host and device), ``accuracy.png``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    ran = {k: v for k, v in report["configs"].items() if "seconds" in v}
    if not ran:
        return []
    names = list(ran)
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    paths = []

    def figure(title: str) -> tuple[Figure, Any]:
        fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        axes = fig.add_subplot()
        axes.set_title(f"{title} ({report['device'] or 'CPU only'})", fontsize=10)
        return fig, axes

    fig, axes = figure("Wall time per stage")
    bottom = np.zeros(len(names))
    for stage in STAGES:
        values = np.array([ran[n]["seconds"][stage] for n in names])
        axes.bar(names, values, bottom=bottom, label=stage)
        bottom += values
    axes.set_ylabel("seconds")
    axes.legend(fontsize=8)
    paths.append(str(where / "stages.png"))
    fig.savefig(paths[-1])

    fig, axes = figure("Peak memory")
    x = np.arange(len(names))
    axes.bar(x - 0.2, [ran[n]["peak_host_bytes"] / GIB for n in names], 0.4, label="host")
    axes.bar(x + 0.2, [ran[n]["peak_device_bytes"] / GIB for n in names], 0.4, label="device")
    axes.set_xticks(x, names)
    axes.set_ylabel("GiB")
    axes.legend(fontsize=8)
    paths.append(str(where / "memory.png"))
    fig.savefig(paths[-1])

    fig, axes = figure("Test MAE")
    axes.bar(names, [ran[n]["accuracy"]["mae_deg"] for n in names], color="tab:green")
    axes.set_ylabel("MAE (degrees)")
    paths.append(str(where / "accuracy.png"))
    fig.savefig(paths[-1])
    return paths


def save(report: dict[str, Any], folder: str | os.PathLike, plots: bool = True) -> list[str]:
    """``report.json`` and (unless ``plots`` is false) the plots in ``folder``; returns every path written."""
    where = Path(folder)
    where.mkdir(parents=True, exist_ok=True)
    (where / "report.json").write_text(json.dumps(report, indent=2))
    return [str(where / "report.json"), *(write_plots(report, where) if plots else [])]


def main(argv: list[str]) -> None:
    """Child entry point: ``python -m emgpose.study '<json request>'`` runs one configuration."""
    request = json.loads(argv[0])
    result = run_config(request["config"], request["data"], StudyOptions(**request["options"]))
    Path(request["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
