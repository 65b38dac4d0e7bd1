"""Batch prediction: one model over stored sessions, one table per session and ``summary.json`` in the store.

Each session file is read in chunks through a fresh :class:`~emgpose.train.predict.Predictor` (the model's own
preprocessing and statistics from its bundle), after the same filter pre-roll the offline pipeline reads
before a metadata time range, so a session's rows are those :func:`~emgpose.train.predict.predict` gives for
it. Tables go to ``<prefix>/<session>.csv`` and ``.parquet``; every object is written whole (a temporary file
moved into place on a local store, one PUT on S3), and ``summary.json`` is written last: where it exists the
outputs are complete. The keys depend only on the job, so a re-run after a crash rewrites the same objects.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError
from emgpose.formats.session import SessionReader
from emgpose.store import ObjectStore
from emgpose.train.bundle import Bundle
from emgpose.train.coverage import FLAG_SHARE, flagged
from emgpose.train.predict import Prediction, Predictor

SUMMARY = "summary.json"
FORMATS = ("csv", "parquet")
TIME_COLUMN = "t_end_s"  # the window's last sample on the file's clock, seconds
INDEX_COLUMN = "window_end_sample"  # the window's last sample, counted from the file's first sample
CHUNK_SAMPLES = 65536

Progress = Callable[[float, str], None]  # (fraction done 0-1, stage)


@dataclass(frozen=True)
class SessionSource:
    """One session file to predict: ``name`` names its outputs; ``start``/``end`` cut it (NaN = open)."""

    name: str
    store: ObjectStore
    key: str
    start: float = math.nan
    end: float = math.nan

    @property
    def url(self) -> str:
        return self.store.url(self.key)


@dataclass
class SessionOutcome:
    """What predicting one session gave: the rows, and the angles the file holds at each window's end."""

    prediction: Prediction
    first: int  # file index of the first predicted sample (the start of the time range)
    targets: np.ndarray | None  # (n, J) radians at each window's end, where the file has the model's joints
    samples: int
    seconds: float = 0.0
    files: dict[str, str] = field(default_factory=dict)


def columns(prediction: Prediction, first: int) -> pa.Table:
    """The session's table: window end time and index, then degrees per joint or probabilities and class."""
    data: dict[str, Any] = {
        TIME_COLUMN: pa.array(prediction.t_end, pa.float64()),
        INDEX_COLUMN: pa.array(first + prediction.window_end.astype(np.int64), pa.int64()),
    }
    if prediction.task == "regression":
        degrees = prediction.degrees
        for j, name in enumerate(prediction.names):
            data[f"{name}_deg"] = pa.array(degrees[:, j], pa.float64())
    else:
        for j, name in enumerate(prediction.names):
            data[f"p_{name}"] = pa.array(prediction.values[:, j], pa.float64())
        data["class"] = pa.array(prediction.classes, pa.string())
    if prediction.out_of_range is not None:
        data["out_of_range"] = pa.array(prediction.out_of_range, pa.float64())
    return pa.table(data)


def _concat(parts: list[Prediction], bundle: Bundle) -> Prediction:
    def cat(attr: str, empty: np.ndarray) -> np.ndarray:
        arrays = [getattr(p, attr) for p in parts]
        return np.concatenate(arrays) if arrays else empty

    names = bundle.joint_names if bundle.task == "regression" else bundle.class_names
    ranged = bundle.feature_range is not None
    return Prediction(
        model=bundle.name,
        version=bundle.version,
        task=bundle.task,
        names=names,
        window_end=cat("window_end", np.zeros(0, np.int64)),
        t_end=cat("t_end", np.zeros(0)),
        values=cat("values", np.zeros((0, len(names)))),
        out_of_range=cat("out_of_range", np.zeros(0)) if ranged else None,
    )


def predict_session(source: SessionSource, bundle: Bundle, tick: Callable[[float], None]) -> SessionOutcome:
    """The model over one session file (its time range, after the pre-roll); ``tick`` gets the share read."""
    with source.store.local_path(source.key) as path, SessionReader(path) as reader:
        info = reader.info
        if info.sample_rate != bundle.sample_rate or info.num_channels != bundle.num_channels:
            raise DataFormatError(
                f"{source.url}: {info.num_channels} channels at {info.sample_rate:g} Hz, but model {bundle.name} "
                f"{bundle.version} takes {bundle.num_channels} channels at {bundle.sample_rate:g} Hz"
            )
        first, stop = reader.index_range(
            None if math.isnan(source.start) else source.start, None if math.isnan(source.end) else source.end
        )
        if stop <= first:
            raise DataFormatError(f"{source.url}: the time range [{source.start}, {source.end}] selects no samples")
        keep = bundle.task == "regression" and tuple(info.joint_names) == tuple(bundle.joint_names)
        predictor = Predictor(bundle, source=source.url)
        parts: list[Prediction] = []
        targets: list[np.ndarray] = []
        preroll = round(bundle.config.preroll_ms * info.sample_rate / 1000.0)
        for chunk in reader.iter_chunks(CHUNK_SAMPLES, max(0, first - preroll), stop):
            k = max(0, first - chunk.offset)  # samples before the range: filter warm-up only
            if k:
                predictor.warm_up(chunk.emg[:k])
            if k < len(chunk):
                part = predictor.push(chunk.emg[k:], chunk.time[k:])
                parts.append(part)
                if keep and chunk.joint_angles is not None:
                    targets.append(chunk.joint_angles[k:][part.window_end + first - chunk.offset - k])
            tick((chunk.offset + len(chunk) - first) / (stop - first))
    prediction = _concat(parts, bundle)
    target = np.concatenate(targets) if keep and targets else None
    return SessionOutcome(prediction, first, target, stop - first)


def _write(store: ObjectStore, key: str, write: Callable[[str], None], tmp: str) -> None:
    path = os.path.join(tmp, os.path.basename(key))
    write(path)
    store.put_file(key, path)  # whole or not at all: a local store moves a temporary file into place
    os.unlink(path)


def write_tables(
    outcome: SessionOutcome, out: ObjectStore, prefix: str, name: str, formats: Sequence[str]
) -> dict[str, str]:
    """The session's tables in ``formats``, under ``prefix/name.<format>``; returns format -> URI."""
    table = columns(outcome.prediction, outcome.first)
    writers: dict[str, Callable[[str], None]] = {
        "csv": lambda path: pacsv.write_csv(table, path),
        "parquet": lambda path: pq.write_table(table, path, compression="zstd"),
    }
    files: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="emgpose-predict-") as tmp:
        for fmt in formats:
            key = f"{prefix}/{name}.{fmt}"
            _write(out, key, writers[fmt], tmp)
            files[fmt] = out.url(key)
    return files


def _mae_deg(outcome: SessionOutcome) -> tuple[float, int] | None:
    """Mean absolute error in degrees over the finite target angles, and how many there were."""
    if outcome.targets is None:
        return None
    truth = outcome.targets
    ok = np.isfinite(truth)
    if not ok.any():
        return None
    error = np.abs(np.degrees(outcome.prediction.values[ok]) - np.degrees(truth[ok]))
    return float(error.mean()), int(ok.sum())


def session_summary(source: SessionSource, outcome: SessionOutcome) -> dict[str, Any]:
    pred = outcome.prediction
    mae = _mae_deg(outcome)
    return {
        "name": source.name,
        "source": source.url,
        "windows": len(pred),
        "samples": outcome.samples,
        "flagged_windows": None if pred.out_of_range is None else flagged(pred.out_of_range),
        "mae_deg": None if mae is None else round(mae[0], 6),
        "angles_compared": 0 if mae is None else mae[1],
        "seconds": round(outcome.seconds, 3),
        "files": outcome.files,
    }


def run_batch(
    sources: Sequence[SessionSource],
    bundle: Bundle,
    out: ObjectStore,
    prefix: str,
    formats: Sequence[str] = FORMATS,
    progress: Progress | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Predicts every session, writes its tables, then ``prefix/summary.json``; returns the summary."""
    started = time.monotonic()
    report = progress or (lambda _share, _stage: None)
    sessions: list[dict[str, Any]] = []
    errors: list[tuple[float, int]] = []
    for i, source in enumerate(sources):
        stage = f"predicting {source.name} ({i + 1}/{len(sources)})"
        t0 = time.monotonic()
        outcome = predict_session(
            source, bundle, lambda share, i=i, stage=stage: report((i + share) / len(sources), stage)
        )
        outcome.files = write_tables(outcome, out, prefix, source.name, formats)
        outcome.seconds = time.monotonic() - t0
        mae = _mae_deg(outcome)
        if mae is not None:
            errors.append(mae)
        sessions.append(session_summary(source, outcome))
    report(1.0, "writing summary")
    ranged = bundle.feature_range is not None
    compared = sum(n for _, n in errors)
    summary = {
        "model": bundle.name,
        "version": bundle.version,
        "task": bundle.task,
        "formats": list(formats),
        "sessions": sessions,
        "windows": sum(s["windows"] for s in sessions),
        "flag_share": FLAG_SHARE if ranged else None,
        "flagged_windows": sum(s["flagged_windows"] for s in sessions) if ranged else None,
        "mae_deg": round(sum(m * n for m, n in errors) / compared, 6) if compared else None,
        "durations_s": {
            "total": round(time.monotonic() - started, 3),
            "sessions": round(sum(s["seconds"] for s in sessions), 3),
        },
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    out.put_bytes(f"{prefix}/{SUMMARY}", json.dumps(summary, indent=2).encode())  # last: marks the outputs complete
    return summary
