"""The preprocessing passes: statistics over the training split, then window tables per session.

Two streaming passes, bounded memory whatever the dataset's size, each cut into one independent work
unit per session (so a process pool, or later Celery workers, can share them):

1. :func:`session_stats`: the causal chain over one *training* session, accumulating z-score
   statistics that merge across sessions;
2. :func:`process_session`: one session through :class:`WindowStream` with those statistics, its
   window table written chunk by chunk to a local Parquet file.

:mod:`emgpose.preprocess.job` runs both, assembles the master table and writes the outputs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError
from emgpose.formats.session import SessionReader
from emgpose.preprocess import kernel_path
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import DatasetLayout, SessionEntry
from emgpose.preprocess.features import feature_names
from emgpose.preprocess.kernel_path import Device, KernelChain, KernelWindowStream
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import CausalChain, finite_rows
from emgpose.preprocess.windows import DROP_REASONS, KEPT, WindowBatch, WindowStream, ik_failures

Progress = Callable[[int, int, str], None]  # (samples done, samples total, stage)
SUMMARY_KEY, STATS_KEY, MASTER_KEY = "summary.json", "stats.json", "master.parquet"
SUMMARY_FORMAT = "emgpose.preprocess/1"


def no_progress(done: int, total: int, stage: str) -> None:
    return None


@dataclass
class SessionCounts:
    samples: int = 0
    invalid_emg_samples: int = 0
    windows_kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS[1:], 0))

    def add(self, batch: WindowBatch) -> None:
        codes = np.bincount(batch.reason, minlength=len(DROP_REASONS))
        self.windows_kept += int(codes[KEPT])
        for code, name in enumerate(DROP_REASONS[1:], start=1):
            self.dropped[name] += int(codes[code])


def check_invalid_share(entry: SessionEntry, invalid: int, config: PreprocessConfig) -> None:
    share = invalid / max(entry.samples, 1)
    if share > config.max_invalid_emg_fraction:
        raise DataFormatError(
            f"{entry.url}: {share:.1%} of EMG samples in the selected range are NaN/inf, more than "
            f"max_invalid_emg_fraction={config.max_invalid_emg_fraction:.1%}; clean the file, drop it "
            f"from metadata.csv, or raise the limit"
        )


def preroll_start(entry: SessionEntry, config: PreprocessConfig) -> int:
    """First sample to read: up to ``preroll_ms`` before the time range, for filter warm-up."""
    samples = round(config.preroll_ms * entry.info.sample_rate / 1000.0)
    return max(0, entry.start_index - samples)


@dataclass
class SessionStats:
    """Pass 1 of one training session: running statistics to merge across sessions."""

    filtered: RunningStats
    envelope: RunningStats
    target: RunningStats
    samples: int

    def merge(self, other: SessionStats) -> None:
        self.filtered.merge(other.filtered)
        self.envelope.merge(other.envelope)
        self.target.merge(other.target)
        self.samples += other.samples

    def norm_stats(self) -> NormStats:
        return NormStats.from_running(self.filtered, self.envelope, self.target)


def session_stats(
    entry: SessionEntry,
    layout: DatasetLayout,
    config: PreprocessConfig,
    tick: Callable[[int], None] | None = None,
    device: Device = "cpu",
) -> SessionStats:
    """Z-score statistics of one training session's selected range (pass 1).

    ``device`` ``cuda`` (or ``emulate``) runs the chain and the column sums on our kernels
    (:mod:`emgpose.preprocess.kernel_path`); the statistics agree with the CPU's to rounding.
    """
    n_targets = len(layout.joint_names)
    acc = SessionStats(
        RunningStats(layout.num_channels), RunningStats(layout.num_channels), RunningStats(n_targets), entry.samples
    )
    if device == "cpu":
        chain: CausalChain | KernelChain = CausalChain(config, layout.sample_rate, layout.num_channels, entry.url)
        add = RunningStats.update
    else:
        xp = kernel_path.array_module(device)
        chain = KernelChain(config, layout.sample_rate, layout.num_channels, xp, entry.url)
        add = kernel_path.add_rows
    invalid = 0
    size = kernel_path.chunk_samples(config, device)
    with SessionReader(entry.path) as reader:
        for chunk in reader.iter_chunks(size, preroll_start(entry, config), entry.stop_index):
            out = chain.process(chunk.emg)
            in_range = np.arange(chunk.offset, chunk.offset + len(chunk)) >= entry.start_index
            good = in_range & ~out.invalid
            invalid += int((in_range & out.invalid).sum())
            add(acc.filtered, out.filtered, good)
            add(acc.envelope, out.envelope, good)
            if n_targets and chunk.joint_angles is not None:
                y = chunk.joint_angles
                ok = in_range & finite_rows(y) & ~ik_failures(y, config.ik_failure_tol)
                acc.target.update(y, ok)
            if tick:
                tick(int(in_range.sum()))
    check_invalid_share(entry, invalid, config)
    return acc


@dataclass
class SessionResult:
    """Pass 2 of one session: its table (local files) and what was kept or dropped."""

    entry: SessionEntry
    counts: SessionCounts
    parquet: str
    csv: str | None


def process_session(
    entry: SessionEntry,
    layout: DatasetLayout,
    config: PreprocessConfig,
    stats: NormStats,
    workdir: str,
    tick: Callable[[int], None] | None = None,
    device: Device = "cpu",
) -> SessionResult:
    """Windows and features of one session, written to ``workdir`` (pass 2); ``device`` as in :func:`session_stats`."""
    columns = Columns.for_layout(layout, config)
    options: dict = {"num_targets": len(layout.joint_names), "with_label": layout.has_label, "source": entry.url}
    if device == "cpu":
        stream = WindowStream(config, layout.sample_rate, layout.num_channels, stats, **options)
    else:
        xp = kernel_path.array_module(device)
        stream = KernelWindowStream(config, layout.sample_rate, layout.num_channels, stats, xp=xp, **options)
    base = os.path.join(workdir, entry.row.filename)
    result = SessionResult(entry, SessionCounts(), f"{base}.parquet", f"{base}.csv" if config.output.csv else None)
    writer = TableWriter(result.parquet, columns.schema, result.csv)
    counts = result.counts
    try:
        with SessionReader(entry.path) as reader:
            first = preroll_start(entry, config)
            for chunk in reader.iter_chunks(kernel_path.chunk_samples(config, device), first, entry.stop_index):
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
                counts.invalid_emg_samples += batch.invalid_samples
                counts.add(batch)
                if batch.kept.any():
                    writer.write(columns.table(entry, batch, stats, offset=entry.start_index))
                if tick:
                    tick(len(emg))
    finally:
        writer.close()
    check_invalid_share(entry, counts.invalid_emg_samples, config)
    return result


class TableWriter:
    """Streams Arrow record batches to a local Parquet (and optionally CSV) file."""

    def __init__(self, path: str, schema: pa.Schema, csv_path: str | None = None) -> None:
        self.path, self.csv_path = path, csv_path
        # lz4 and no dictionaries/statistics on the numeric columns: encoding cost, not size, is
        # what dominates for wide float tables written in small batches.
        strings = [f.name for f in schema if pa.types.is_string(f.type)]
        self._pq = pq.ParquetWriter(
            path, schema, compression="lz4", use_dictionary=strings, write_statistics=[*strings, "window_end", "t_end"]
        )
        self._csv = pacsv.CSVWriter(csv_path, schema) if csv_path else None

    def write(self, table: pa.Table) -> None:
        self._pq.write_table(table)
        if self._csv is not None:
            self._csv.write_table(table)

    def close(self) -> None:
        self._pq.close()
        if self._csv is not None:
            self._csv.close()


@dataclass
class Columns:
    """Column layout of the window tables: identity, features, raw and z-scored targets, label."""

    features: list[str]
    joints: tuple[str, ...]
    has_label: bool

    @classmethod
    def for_layout(cls, layout: DatasetLayout, config: PreprocessConfig) -> Columns:
        return cls(feature_names(config, layout.num_channels), layout.joint_names, layout.has_label)

    @property
    def schema(self) -> pa.Schema:
        fields = [pa.field(name, pa.string()) for name in ("session", "user", "stage", "split", "generalization")]
        fields += [pa.field("window_end", pa.int64()), pa.field("t_end", pa.float64())]
        fields += [pa.field(name, pa.float32()) for name in self.features]
        fields += [pa.field(f"y_{j}", pa.float64()) for j in self.joints]
        fields += [pa.field(f"yz_{j}", pa.float32()) for j in self.joints]
        if self.has_label:
            fields.append(pa.field("label", pa.int64()))
        return pa.schema(fields)

    def table(self, entry: SessionEntry, batch: WindowBatch, stats: NormStats, offset: int) -> pa.Table:
        keep = batch.kept
        n = int(keep.sum())
        row = entry.row
        data: dict[str, object] = {
            "session": [row.filename] * n,
            "user": [row.user] * n,
            "stage": [row.stage] * n,
            "split": [row.split] * n,
            "generalization": [row.generalization] * n,
            "window_end": batch.end_index[keep] + offset,
            "t_end": batch.end_time[keep],
        }
        feats = batch.features[keep]
        data.update({name: feats[:, i] for i, name in enumerate(self.features)})
        if self.joints and batch.targets is not None:
            y = batch.targets[keep]
            yz = stats.scale_targets(y).astype(np.float32)
            data.update({f"y_{j}": y[:, i] for i, j in enumerate(self.joints)})
            data.update({f"yz_{j}": yz[:, i] for i, j in enumerate(self.joints)})
        if self.has_label and batch.label is not None:
            data["label"] = batch.label[keep]
        return pa.table(data, schema=self.schema)
