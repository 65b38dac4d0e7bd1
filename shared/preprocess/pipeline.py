"""The preprocessing passes: statistics over the training split, then window tables per session.

Two streaming passes, bounded memory whatever the dataset's size:

1. statistics: the causal chain over the *training* sessions only, accumulating z-score statistics;
2. windows: every session through :class:`WindowStream` with those statistics, one Parquet table per
   session plus the combined master table, written chunk by chunk.

:mod:`emgpose.preprocess.job` runs both and writes the outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.dataset import Dataset, DatasetLayout, SessionEntry
from emgpose.preprocess.features import feature_names
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import CausalChain
from emgpose.preprocess.windows import DROP_REASONS, KEPT, WindowBatch, ik_failures

log = logging.getLogger(__name__)

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


def compute_stats(
    dataset: Dataset,
    config: PreprocessConfig,
    progress: Progress = no_progress,
    done: int = 0,
    total: int = 0,
) -> NormStats:
    """Z-score statistics from the training split only (pass 1)."""
    layout = dataset.layout
    n_targets = len(layout.joint_names)
    if not config.zscore:
        return NormStats.identity(layout.num_channels, n_targets)
    train = dataset.split("train")
    if not train:
        raise DataFormatError(f"{dataset.uri}: metadata.csv has no session with split 'train' for statistics")
    filt, env, tgt = (
        RunningStats(layout.num_channels),
        RunningStats(layout.num_channels),
        RunningStats(n_targets),
    )
    for entry in train:
        chain = CausalChain(config, layout.sample_rate, layout.num_channels, entry.url)
        invalid = 0
        with dataset.open(entry) as reader:
            for chunk in reader.iter_chunks(
                config.chunk_samples, preroll_start(entry, config), entry.stop_index
            ):
                out = chain.process(chunk.emg)
                in_range = np.arange(chunk.offset, chunk.offset + len(chunk)) >= entry.start_index
                good = in_range & ~out.invalid
                invalid += int((in_range & out.invalid).sum())
                filt.update(out.filtered, good)
                env.update(out.envelope, good)
                if n_targets and chunk.joint_angles is not None:
                    y = chunk.joint_angles
                    ok = in_range & np.isfinite(y).all(axis=1) & ~ik_failures(y, config.ik_failure_tol)
                    tgt.update(y, ok)
                done += int(in_range.sum())
                progress(done, total, "statistics")
        check_invalid_share(entry, invalid, config)
    return NormStats.from_running(filt, env, tgt)


class TableWriter:
    """Streams Arrow record batches to a local Parquet (and optionally CSV) file."""

    def __init__(self, path: str, schema: pa.Schema, csv_path: str | None = None) -> None:
        self.path, self.csv_path = path, csv_path
        self._pq = pq.ParquetWriter(path, schema, compression="zstd")
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
        return cls(feature_names(config.features, layout.num_channels), layout.joint_names, layout.has_label)

    @property
    def schema(self) -> pa.Schema:
        fields = [
            pa.field(name, pa.string()) for name in ("session", "user", "stage", "split", "generalization")
        ]
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
