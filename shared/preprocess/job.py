"""``run_preprocess``: the whole job, from a dataset URI to outputs in an object store.

Outputs (under the output store): ``sessions/<filename>.parquet`` (and ``.csv`` on request),
``master.parquet``, ``stats.json`` and ``summary.json``. They are first written under a staging prefix
and moved to their final keys only when every session succeeded, ``summary.json`` last, so a failed run
leaves nothing half-written and the previous outputs untouched. Re-running the same job writes the
same keys.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed, wait
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import emgpose
from emgpose.devices import usable_cpus
from emgpose.errors import DataFormatError
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset, DatasetLayout, SessionEntry
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.pipeline import (
    MASTER_KEY,
    STATS_KEY,
    SUMMARY_FORMAT,
    SUMMARY_KEY,
    Columns,
    Progress,
    SessionResult,
    TableWriter,
    no_progress,
    process_session,
    session_stats,
)
from emgpose.preprocess.signal import CausalChain
from emgpose.store import ObjectStore, open_store

log = logging.getLogger(__name__)


POOL_MIN_CHANNEL_SAMPLES = 20_000_000  # about 10 minutes of 16-channel EMG at 2 kHz


def session_key(entry: SessionEntry, suffix: str = "parquet") -> str:
    return f"sessions/{entry.row.filename}.{suffix}"


def default_workers() -> int:
    """One worker process per CPU this process may use (affinity and cgroup quota)."""
    return usable_cpus()


class _Runner:
    """Runs per-session work inline (one worker) or in a process pool, results in input order.

    The pool uses the ``forkserver`` start method: workers never inherit the parent's threads or an
    initialised CUDA context. Progress is reported per sample inline and per session from a pool.
    """

    def __init__(self, workers: int, progress: Progress, total: int) -> None:
        self.workers = workers
        self.progress = progress
        self.total = total
        self.done = 0
        self._pool: ProcessPoolExecutor | None = None

    def tick(self, n: int, stage: str) -> None:
        self.done += n
        self.progress(self.done, self.total, stage)

    def map(self, fn: Callable[..., Any], entries: list[SessionEntry], stage: str, *args: Any) -> list[Any]:
        if self.workers <= 1 or len(entries) <= 1:
            return [fn(entry, *args, tick=lambda n: self.tick(n, stage)) for entry in entries]
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["emgpose.preprocess.pipeline"])  # import once, fork warm
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        futures = {self._pool.submit(fn, entry, *args): i for i, entry in enumerate(entries)}
        results: list[Any] = [None] * len(entries)
        try:
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                self.tick(entries[i].samples, stage)
        except BaseException:
            for future in futures:
                future.cancel()
            # Sessions already running keep writing into the output folder: wait for them, so that the
            # caller's clean-up of that folder does not race a writer ("Directory not empty").
            wait(futures)
            raise
        return results

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def run_preprocess(
    data_uri: str,
    out_uri: str,
    config: PreprocessConfig | None = None,
    progress: Progress = no_progress,
    workers: int | None = None,
) -> dict[str, Any]:
    """Preprocesses the dataset at ``data_uri`` into ``out_uri``; returns the processing summary.

    ``workers`` processes share the sessions (default: one per CPU core for datasets of at least
    ``POOL_MIN_CHANNEL_SAMPLES`` channel-samples, else one); the outputs do not depend on it.
    """
    config = config or PreprocessConfig()
    started = time.perf_counter()
    out = open_store(out_uri)
    with Dataset(data_uri) as dataset:
        layout = dataset.layout
        # Refuse a band the data cannot carry before any work is done, naming the first file.
        CausalChain(config, layout.sample_rate, layout.num_channels, dataset.store.url(dataset.rows[0].file))
        window = config.window.samples(layout.sample_rate)
        train = dataset.split("train")
        if config.zscore and not train:
            raise DataFormatError(f"{dataset.uri}: metadata.csv has no session with split 'train' for statistics")
        total = sum(e.samples for e in train) * config.zscore + sum(e.samples for e in dataset.sessions)
        if workers is None:  # a pool's start (about a second) pays off only on larger datasets
            workers = default_workers() if total * layout.num_channels >= POOL_MIN_CHANNEL_SAMPLES else 1
        runner = _Runner(workers, progress, total)
        staging = f".staging/{uuid.uuid4().hex}"
        staged: list[str] = []
        try:
            stats = _statistics(runner, dataset, config)
            t_stats = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="emgpose-out-") as tmp:
                results = runner.map(process_session, dataset.sessions, "windows", layout, config, stats, tmp)
                t_windows = time.perf_counter()
                _stage_tables(out, staging, staged, results, tmp)
            out.put_bytes(f"{staging}/{STATS_KEY}", json.dumps(stats.to_dict(), indent=2).encode())
            staged.append(STATS_KEY)
            records = [session_record(r) for r in results]
            summary = build_summary(
                dataset.uri, dataset.metadata_sha256, layout, config, stats, records, window, out_uri
            )
            summary["timings_s"] = {
                "statistics": round(t_stats - started, 3),
                "windows": round(t_windows - t_stats, 3),
                "total": round(time.perf_counter() - started, 3),
            }
            summary["workers"] = runner.workers
            summary["throughput_channel_samples_per_s"] = round(
                total * layout.num_channels / max(summary["timings_s"]["total"], 1e-9)
            )
            out.put_bytes(f"{staging}/{SUMMARY_KEY}", json.dumps(summary, indent=2).encode())
            for key in staged:  # promote; the summary, last, marks the outputs complete
                out.move(f"{staging}/{key}", key)
            out.move(f"{staging}/{SUMMARY_KEY}", SUMMARY_KEY)
        except BaseException:
            for key in [*staged, SUMMARY_KEY]:
                out.delete(f"{staging}/{key}")
            raise
        finally:
            runner.close()
    log.info("preprocessed %s -> %s in %.1f s", data_uri, out_uri, summary["timings_s"]["total"])
    return summary


def _statistics(runner: _Runner, dataset: Dataset, config: PreprocessConfig) -> NormStats:
    """Pass 1: z-score statistics from the training split only."""
    layout = dataset.layout
    if not config.zscore:
        return NormStats.identity(layout.num_channels, len(layout.joint_names))
    parts = runner.map(session_stats, dataset.split("train"), "statistics", layout, config)
    merged = parts[0]
    for part in parts[1:]:
        merged.merge(part)
    return merged.norm_stats()


def _stage_tables(out: ObjectStore, staging: str, staged: list[str], results: list[SessionResult], tmp: str) -> None:
    """Uploads each session's table and the master table (the sessions' rows, in metadata order)."""
    master_path = os.path.join(tmp, MASTER_KEY)
    master: pq.ParquetWriter | None = None
    try:
        for result in results:
            parquet = pq.ParquetFile(result.parquet)
            if master is None:
                master = TableWriter(master_path, parquet.schema_arrow)
            for batch in parquet.iter_batches():
                master.write(pa.Table.from_batches([batch]))
            parquet.close()
            keys = (session_key(result.entry), session_key(result.entry, "csv"))
            for path, key in zip((result.parquet, result.csv), keys, strict=True):
                if path:
                    out.put_file(f"{staging}/{key}", path)
                    staged.append(key)
                    os.remove(path)
    finally:
        if master is not None:
            master.close()
    out.put_file(f"{staging}/{MASTER_KEY}", master_path)
    staged.append(MASTER_KEY)


def session_record(result: SessionResult, device: str = "cpu") -> dict[str, Any]:
    entry, counts = result.entry, result.counts
    row = entry.row
    return {
        "filename": row.filename,
        "split": row.split,
        "user": row.user,
        "session": row.session,
        "stage": row.stage,
        "generalization": row.generalization,
        "range": [entry.start_index, entry.stop_index],
        "samples": counts.samples,
        "invalid_emg_fraction": round(counts.invalid_emg_samples / max(counts.samples, 1), 6),
        "windows_kept": counts.windows_kept,
        "windows_dropped": counts.dropped,
        "output": session_key(entry),
        "device": device,  # where the chain and the features ran
    }


def _window_summary(config: PreprocessConfig, sample_rate: float, window: tuple[int, int]) -> dict[str, int]:
    """Window length and stride in samples; ``span_samples`` too when a row reads more than one window
    (extra lengths or temporal context), which training's validation gaps must then cover."""
    summary = {"length_samples": window[0], "stride_samples": window[1]}
    span = config.span_samples(sample_rate)
    if span != window[0]:
        summary["span_samples"] = span
    return summary


def build_summary(
    data_uri: str,
    metadata_sha256: str,
    layout: DatasetLayout,
    config: PreprocessConfig,
    stats: NormStats,
    per_session: list[dict[str, Any]],
    window: tuple[int, int],
    out_uri: str,
) -> dict[str, Any]:
    """``summary.json`` content from the per-session records (in metadata order)."""
    splits: dict[str, dict[str, Any]] = {}
    for rec in per_session:
        agg = splits.setdefault(rec["split"], {"sessions": 0, "samples": 0, "windows_kept": 0, "windows_dropped": {}})
        agg["sessions"] += 1
        agg["samples"] += rec["samples"]
        agg["windows_kept"] += rec["windows_kept"]
        for reason, n in rec["windows_dropped"].items():
            agg["windows_dropped"][reason] = agg["windows_dropped"].get(reason, 0) + n
    return {
        "format": SUMMARY_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {
            "uri": data_uri,
            "metadata_sha256": metadata_sha256,
            "sessions": len(per_session),
        },
        "output": {"uri": out_uri, "master": MASTER_KEY, "stats": STATS_KEY},
        "config": config.model_dump(mode="json"),
        "sample_rate": layout.sample_rate,
        "num_channels": layout.num_channels,
        "channel_names": list(layout.channel_names),
        "joint_names": list(layout.joint_names),
        "ik_failure_rule": (
            f"every joint within {config.ik_failure_tol:g} rad of 0"
            if len(layout.joint_names) >= 2
            else "none: with one joint an angle of 0 is a real value"
        ),
        "label_names": list(layout.label_names),
        "has_label": layout.has_label,
        "window": _window_summary(config, layout.sample_rate, window),
        "feature_names": Columns.for_layout(layout, config).features,
        "counts": splits,
        "sessions": per_session,
        "stats": stats.to_dict(),
        "versions": {
            "emgpose": emgpose.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
