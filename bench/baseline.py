"""The straightforward SciPy baseline the preprocessing benchmark compares against.

It computes the same outputs as :func:`emgpose.preprocess.job.run_preprocess` (the same statistics,
features and master table), the way a first script would: each session loaded whole, a per-channel
``sosfilt`` loop, ``np.convolve`` for the moving average, and a Python loop over windows for the
features. It reuses nothing of the pipeline but the feature definitions' formulas, written out here.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from scipy import signal

from emgpose.formats import SessionReader
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset

_STRINGS = ("session", "user", "stage", "split", "generalization")


def _chain(emg: np.ndarray, config: PreprocessConfig, fs: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    band = config.bandpass
    sos = signal.butter(band.order, [band.low_hz, band.high_hz], btype="bandpass", fs=fs, output="sos")
    invalid = ~np.isfinite(emg).all(axis=1)
    emg = np.where(np.isfinite(emg), emg, 0.0)
    filtered = np.empty_like(emg, dtype=np.float64)
    envelope = np.empty_like(filtered)
    kernel = np.ones(config.moving_average) / config.moving_average
    for c in range(emg.shape[1]):
        zi = signal.sosfilt_zi(sos) * emg[0, c]
        filtered[:, c], _ = signal.sosfilt(sos, emg[:, c], zi=zi)
        envelope[:, c] = np.convolve(np.abs(filtered[:, c]), kernel)[: len(emg)]
    return filtered, envelope, invalid


def _window_features(f: np.ndarray, e: np.ndarray) -> np.ndarray:
    """One window, (C, L) each: env_mean, mav, rms, wl, zc, ssc, feature-major."""
    d = np.diff(f, axis=1)
    return np.concatenate(
        [
            e.mean(axis=1),
            np.abs(f).mean(axis=1),
            np.sqrt((f**2).mean(axis=1)),
            np.abs(d).sum(axis=1),
            (f[:, :-1] * f[:, 1:] < 0).sum(axis=1),
            ((f[:, 1:-1] - f[:, :-2]) * (f[:, 1:-1] - f[:, 2:]) > 0).sum(axis=1),
        ]
    )


def run_baseline(data_uri: str, out_path: str, config: PreprocessConfig | None = None) -> int:
    """Writes the master table to ``out_path``; returns the number of windows kept."""
    config = config or PreprocessConfig()
    with Dataset(data_uri) as ds:
        fs = ds.layout.sample_rate
        length, stride = config.window.samples(fs)
        pre = round(config.preroll_ms * fs / 1000.0)

        def load(entry):
            with SessionReader(entry.path) as r:
                first = max(0, entry.start_index - pre)
                chunk = r.read(first, entry.stop_index)
            filtered, envelope, invalid = _chain(chunk.emg.astype(np.float64), config, fs)
            k = entry.start_index - first
            return chunk, filtered[k:], envelope[k:], invalid[k:], k

        fs_, es_, ys_ = [], [], []
        for entry in ds.split("train"):
            chunk, f, e, invalid, k = load(entry)
            fs_.append(f[~invalid])
            es_.append(e[~invalid])
            y = chunk.joint_angles[k:]
            ys_.append(y[np.isfinite(y).all(axis=1) & ~(np.abs(y) <= config.ik_failure_tol).all(axis=1)])
        f_mean, f_std = np.concatenate(fs_).mean(axis=0), np.concatenate(fs_).std(axis=0)
        e_mean, e_std = np.concatenate(es_).mean(axis=0), np.concatenate(es_).std(axis=0)
        y_mean, y_std = np.concatenate(ys_).mean(axis=0), np.concatenate(ys_).std(axis=0)
        del fs_, es_, ys_

        rows: dict[str, list] = {}
        for entry in ds.sessions:
            chunk, f, e, invalid, k = load(entry)
            f, e = (f - f_mean) / f_std, (e - e_mean) / e_std
            y, t = chunk.joint_angles[k:], chunk.time[k:]
            for end in range(length - 1, len(f), stride):
                s = end - length + 1
                window_y = y[s : end + 1]
                if invalid[s : end + 1].any() or not np.isfinite(y[end]).all():
                    continue
                if (np.abs(window_y) <= config.ik_failure_tol).all(axis=1).any():
                    continue
                feats = _window_features(f[s : end + 1].T, e[s : end + 1].T)
                record = {"window_end": end + entry.start_index, "t_end": t[end]}
                record.update({f"x{i}": v for i, v in enumerate(feats)})
                record.update({f"y{j}": v for j, v in enumerate(y[end])})
                record.update({f"yz{j}": v for j, v in enumerate((y[end] - y_mean) / y_std)})
                record.update(
                    zip(
                        _STRINGS,
                        (
                            entry.row.filename,
                            entry.row.user,
                            entry.row.stage,
                            entry.row.split,
                            entry.row.generalization,
                        ),
                        strict=True,
                    )
                )
                for key, value in record.items():
                    rows.setdefault(key, []).append(value)
        pq.write_table(pa.table(rows), out_path, compression="zstd")
        return len(rows.get("window_end", []))
