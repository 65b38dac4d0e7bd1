"""The preprocessing job cut into parts that separate workers can run (the preprocessor's fan-out).

``plan`` opens and validates the whole dataset once; ``stats_part`` (one training session) and
``windows_part`` (one session) each open only their own file; ``gather`` builds the master table and the
summary from the staged session tables and promotes everything, ``summary.json`` last. Parts write to
deterministic keys under ``.staging/<job id>/`` of the output store, so a part that runs twice (a
redelivered task) writes the same bytes again. The outputs equal :func:`run_preprocess`'s.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset, DatasetLayout
from emgpose.preprocess.job import build_summary, session_key, session_record
from emgpose.preprocess.kernel_path import Device
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.pipeline import (
    MASTER_KEY,
    STATS_KEY,
    SUMMARY_KEY,
    SessionStats,
    TableWriter,
    process_session,
    session_stats,
)
from emgpose.preprocess.signal import CausalChain
from emgpose.store import open_store

Tick = Callable[[int], None]


@dataclass(frozen=True)
class Plan:
    """What every part needs to know about the job, as plain JSON-able data."""

    data_uri: str
    out_uri: str
    staging: str  # prefix in the output store
    config: dict[str, Any]
    layout: dict[str, Any]
    metadata_sha256: str
    window: tuple[int, int]
    sessions: list[dict[str, Any]]  # filename, split, samples; in metadata order

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(**{**data, "window": tuple(data["window"])})

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.model_validate(self.config)

    @property
    def dataset_layout(self) -> DatasetLayout:
        return DatasetLayout(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.layout.items()})

    def train_parts(self) -> list[int]:
        """Indices of the sessions the z-score statistics come from (none when z-scoring is off)."""
        if not self.preprocess_config.zscore:
            return []
        return [i for i, s in enumerate(self.sessions) if s["split"] == "train"]


def plan(data_uri: str, out_uri: str, staging: str, config: PreprocessConfig) -> Plan:
    """Validates the dataset against ``config`` (every file, the band, a training split) and plans the parts."""
    with Dataset(data_uri) as dataset:
        layout = dataset.layout
        CausalChain(config, layout.sample_rate, layout.num_channels, dataset.store.url(dataset.rows[0].file))
        if config.zscore and not dataset.split("train"):
            raise DataFormatError(f"{dataset.uri}: metadata.csv has no session with split 'train' for statistics")
        return Plan(
            data_uri=data_uri,
            out_uri=out_uri,
            staging=staging,
            config=config.model_dump(mode="json"),
            layout=dataclasses.asdict(layout),
            metadata_sha256=dataset.metadata_sha256,
            window=config.window.samples(layout.sample_rate),
            sessions=[
                {"filename": e.row.filename, "split": e.row.split, "samples": e.samples} for e in dataset.sessions
            ],
        )


def _running_to_dict(r: RunningStats) -> dict[str, list[float]]:
    return {"count": r.count.tolist(), "mean": r.mean.tolist(), "m2": r.m2.tolist()}


def _running_from_dict(d: dict[str, list[float]]) -> RunningStats:
    r = RunningStats(len(d["count"]))
    r.count, r.mean, r.m2 = (np.asarray(d[k], dtype=np.float64) for k in ("count", "mean", "m2"))
    return r


def stats_part(p: Plan, index: int, tick: Tick | None = None, device: Device = "cpu") -> dict[str, Any]:
    """Pass 1 over one training session: running statistics as JSON-able data."""
    with Dataset(p.data_uri, only=[p.sessions[index]["filename"]]) as dataset:
        acc = session_stats(dataset.sessions[0], p.dataset_layout, p.preprocess_config, tick, device)
    return {
        "filtered": _running_to_dict(acc.filtered),
        "envelope": _running_to_dict(acc.envelope),
        "target": _running_to_dict(acc.target),
        "samples": acc.samples,
    }


def merge_stats(p: Plan, parts: list[dict[str, Any]]) -> NormStats:
    """The z-score statistics of the training split, from the stats parts in session order."""
    layout = p.dataset_layout
    if not p.preprocess_config.zscore:
        return NormStats.identity(layout.num_channels, len(layout.joint_names))
    merged: SessionStats | None = None
    for part in parts:
        acc = SessionStats(*(_running_from_dict(part[k]) for k in ("filtered", "envelope", "target")), part["samples"])
        if merged is None:
            merged = acc
        else:
            merged.merge(acc)
    if merged is None:
        raise DataFormatError(f"{p.data_uri}: no training session to compute statistics from")
    return merged.norm_stats()


def windows_part(
    p: Plan, index: int, stats: NormStats, tick: Tick | None = None, device: Device = "cpu"
) -> dict[str, Any]:
    """Pass 2 over one session: its table staged in the output store; returns the session's record."""
    out = open_store(p.out_uri)
    with (
        Dataset(p.data_uri, only=[p.sessions[index]["filename"]]) as dataset,
        tempfile.TemporaryDirectory(prefix="emgpose-part-") as tmp,
    ):
        entry = dataset.sessions[0]
        result = process_session(entry, p.dataset_layout, p.preprocess_config, stats, tmp, tick, device)
        for path, key in ((result.parquet, session_key(entry)), (result.csv, session_key(entry, "csv"))):
            if path:
                out.put_file(f"{p.staging}/{key}", path)
        return session_record(result, device)


def gather(p: Plan, stats: NormStats, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Master table, statistics and summary from the staged parts; promotes them, ``summary.json`` last."""
    out = open_store(p.out_uri)
    keys = [r["output"] for r in records]
    if p.preprocess_config.output.csv:
        keys += [k.removesuffix(".parquet") + ".csv" for k in keys]
    with tempfile.TemporaryDirectory(prefix="emgpose-gather-") as tmp:
        master_path = os.path.join(tmp, MASTER_KEY)
        master: TableWriter | None = None
        try:
            for record in records:
                local = os.path.join(tmp, "session.parquet")
                out.get_file(f"{p.staging}/{record['output']}", local)
                parquet = pq.ParquetFile(local)
                if master is None:
                    master = TableWriter(master_path, parquet.schema_arrow)
                for batch in parquet.iter_batches():
                    master.write(pa.Table.from_batches([batch]))
                parquet.close()
        finally:
            if master is not None:
                master.close()
        out.put_file(f"{p.staging}/{MASTER_KEY}", master_path)
    layout = p.dataset_layout
    summary = build_summary(
        p.data_uri, p.metadata_sha256, layout, p.preprocess_config, stats, records, p.window, p.out_uri
    )
    summary["workers"] = "distributed"
    out.put_bytes(f"{p.staging}/{STATS_KEY}", json.dumps(stats.to_dict(), indent=2).encode())
    out.put_bytes(f"{p.staging}/{SUMMARY_KEY}", json.dumps(summary, indent=2).encode())
    for key in [*keys, MASTER_KEY, STATS_KEY]:
        out.move(f"{p.staging}/{key}", key)
    out.move(f"{p.staging}/{SUMMARY_KEY}", SUMMARY_KEY)
    out.sweep(p.staging)  # what a worker killed mid-write left behind
    return summary


def discard(p: Plan) -> None:
    """Removes a failed or cancelled job's staged objects; the promoted outputs stay as they were."""
    open_store(p.out_uri).sweep(p.staging)
