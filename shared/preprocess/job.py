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
import os
import platform
import tempfile
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np

import emgpose
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset, SessionEntry
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.pipeline import (
    MASTER_KEY,
    STATS_KEY,
    SUMMARY_FORMAT,
    SUMMARY_KEY,
    Columns,
    Progress,
    SessionCounts,
    TableWriter,
    check_invalid_share,
    compute_stats,
    no_progress,
    preroll_start,
)
from emgpose.preprocess.signal import CausalChain
from emgpose.preprocess.windows import WindowStream
from emgpose.store import ObjectStore, open_store

log = logging.getLogger(__name__)


def session_key(entry: SessionEntry, suffix: str = "parquet") -> str:
    return f"sessions/{entry.row.filename}.{suffix}"


def _process_session(
    dataset: Dataset,
    entry: SessionEntry,
    config: PreprocessConfig,
    stats: NormStats,
    columns: Columns,
    writers: list[TableWriter],
    tick: Progress,
) -> SessionCounts:
    layout = dataset.layout
    stream = WindowStream(
        config,
        layout.sample_rate,
        layout.num_channels,
        stats,
        num_targets=len(layout.joint_names),
        with_label=layout.has_label,
        source=entry.url,
    )
    counts = SessionCounts()
    with dataset.open(entry) as reader:
        for chunk in reader.iter_chunks(config.chunk_samples, preroll_start(entry, config), entry.stop_index):
            k = max(0, entry.start_index - chunk.offset)  # samples before the range: warm-up only
            if k:
                stream.warm_up(chunk.emg[:k])
            if k == len(chunk):
                continue
            emg = chunk.emg[k:]
            targets = None if chunk.joint_angles is None else chunk.joint_angles[k:]
            label = None if chunk.label is None else chunk.label[k:]
            batch = stream.push(emg, chunk.time[k:], targets, label)
            counts.samples += len(emg)
            counts.invalid_emg_samples += int((~np.isfinite(emg).all(axis=1)).sum())
            counts.add(batch)
            if batch.kept.any():
                table = columns.table(entry, batch, stats, offset=entry.start_index)
                for writer in writers:
                    writer.write(table)
            tick(len(emg), 0, "windows")
    check_invalid_share(entry, counts.invalid_emg_samples, config)
    return counts


def run_preprocess(
    data_uri: str,
    out_uri: str,
    config: PreprocessConfig | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """Preprocesses the dataset at ``data_uri`` into ``out_uri``; returns the processing summary."""
    config = config or PreprocessConfig()
    started = time.perf_counter()
    out = open_store(out_uri)
    with Dataset(data_uri) as dataset:
        layout = dataset.layout
        # Refuse a band the data cannot carry before any work is done, naming the first file.
        CausalChain(config, layout.sample_rate, layout.num_channels, dataset.store.url(dataset.rows[0].file))
        length, stride = config.window.samples(layout.sample_rate)
        train_samples = sum(e.samples for e in dataset.split("train")) if config.zscore else 0
        total = train_samples + sum(e.samples for e in dataset.sessions)
        stats = compute_stats(dataset, config, progress, 0, total)
        t_stats = time.perf_counter()

        done = [train_samples]

        def tick(n: int, _total: int, stage: str) -> None:
            done[0] += n
            progress(done[0], total, stage)

        staging = f".staging/{uuid.uuid4().hex}"
        staged: list[str] = []
        try:
            per_session, t_windows = _write_tables(dataset, config, stats, out, staging, staged, tick)
            stats_doc = json.dumps(stats.to_dict(), indent=2).encode()
            out.put_bytes(f"{staging}/{STATS_KEY}", stats_doc)
            staged.append(STATS_KEY)
            summary = _summary(dataset, config, stats, per_session, (length, stride), out_uri)
            summary["timings_s"] = {
                "statistics": round(t_stats - started, 3),
                "windows": round(t_windows - t_stats, 3),
                "total": round(time.perf_counter() - started, 3),
            }
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
    log.info("preprocessed %s -> %s in %.1f s", data_uri, out_uri, summary["timings_s"]["total"])
    return summary


def _write_tables(
    dataset: Dataset,
    config: PreprocessConfig,
    stats: NormStats,
    out: ObjectStore,
    staging: str,
    staged: list[str],
    tick: Progress,
) -> tuple[list[dict[str, Any]], float]:
    columns = Columns.for_layout(dataset.layout, config)
    per_session = []
    with tempfile.TemporaryDirectory(prefix="emgpose-out-") as tmp:
        master = TableWriter(os.path.join(tmp, MASTER_KEY), columns.schema)
        for entry in dataset.sessions:
            local = os.path.join(tmp, "session.parquet")
            local_csv = os.path.join(tmp, "session.csv") if config.output.csv else None
            writer = TableWriter(local, columns.schema, local_csv)
            try:
                counts = _process_session(dataset, entry, config, stats, columns, [writer, master], tick)
            finally:
                writer.close()
            for path, key in ((local, session_key(entry)), (local_csv, session_key(entry, "csv"))):
                if path:
                    out.put_file(f"{staging}/{key}", path)
                    staged.append(key)
            per_session.append(_session_record(entry, counts))
        master.close()
        t_windows = time.perf_counter()
        out.put_file(f"{staging}/{MASTER_KEY}", os.path.join(tmp, MASTER_KEY))
        staged.append(MASTER_KEY)
    return per_session, t_windows


def _session_record(entry: SessionEntry, counts: SessionCounts) -> dict[str, Any]:
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
    }


def _summary(dataset, config, stats, per_session, window, out_uri) -> dict[str, Any]:
    layout = dataset.layout
    splits: dict[str, dict[str, Any]] = {}
    for rec in per_session:
        agg = splits.setdefault(
            rec["split"], {"sessions": 0, "samples": 0, "windows_kept": 0, "windows_dropped": {}}
        )
        agg["sessions"] += 1
        agg["samples"] += rec["samples"]
        agg["windows_kept"] += rec["windows_kept"]
        for reason, n in rec["windows_dropped"].items():
            agg["windows_dropped"][reason] = agg["windows_dropped"].get(reason, 0) + n
    return {
        "format": SUMMARY_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": {
            "uri": dataset.uri,
            "metadata_sha256": dataset.metadata_sha256,
            "sessions": len(per_session),
        },
        "output": {"uri": out_uri, "master": MASTER_KEY, "stats": STATS_KEY},
        "config": config.model_dump(mode="json"),
        "sample_rate": layout.sample_rate,
        "num_channels": layout.num_channels,
        "channel_names": list(layout.channel_names),
        "joint_names": list(layout.joint_names),
        "label_names": list(layout.label_names),
        "has_label": layout.has_label,
        "window": {"length_samples": window[0], "stride_samples": window[1]},
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
