"""A preprocessed dataset as training sees it: the window table, its layout, and the train/val/test split.

Splits come from the metadata (the table's ``split`` column). Where the metadata gives no held-out rows,
they are carved from the training rows by the coarsest unit that exists: whole users (only with more than
:data:`SMALL_USERS` of them: with three or fewer, holding one out would drop a third of the people), else
whole sessions (only while every user keeps one), else the last part of each session in time with a gap
of one window. Never random rows: neighbouring windows overlap, so a random split would leak the test
signal into training.

Small data (fewer than :data:`SMALL_WINDOWS` training windows) gets no validation part at all: the rounds
are chosen by blocked chronological cross-validation (:data:`CV_FOLDS` blocks per session in time, one
window's gap on each side of the validation block) and the model is then refitted on every training
window (:mod:`emgpose.train.validation`). Carving a fifth of 100 windows out for early stopping costs more
than the early stopping gains.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError, InvalidInput
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.pipeline import MASTER_KEY, SUMMARY_FORMAT, SUMMARY_KEY
from emgpose.store import open_store

HOLDOUT_SHARE = 0.2  # share of users, sessions or time carved out when the metadata has no held-out rows
SMALL_USERS = 3  # with this many users or fewer, no whole user is held out
SMALL_WINDOWS = 20_000  # fewer training windows than this: validation by cross-validation, then a refit
CV_FOLDS = 4  # blocks per session in time for that cross-validation
ID_COLUMNS = ("session", "user", "stage", "split", "generalization")


@dataclass
class WindowTable:
    """Rows of the window table as arrays: features, targets (radians) and labels, identity columns."""

    features: np.ndarray  # (n, d) float32
    y: np.ndarray | None  # (n, J) float64, radians (None without joints)
    label: np.ndarray | None  # (n,) int64 (None without labels)
    window_end: np.ndarray  # (n,) int64, sample index in the session file
    t_end: np.ndarray  # (n,) float64, seconds
    ids: dict[str, np.ndarray] = field(default_factory=dict)  # ID_COLUMNS -> (n,) str arrays

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def take(self, rows: np.ndarray) -> WindowTable:
        """The rows selected by a boolean mask or an index array."""
        return WindowTable(
            features=self.features[rows],
            y=None if self.y is None else self.y[rows],
            label=None if self.label is None else self.label[rows],
            window_end=self.window_end[rows],
            t_end=self.t_end[rows],
            ids={k: v[rows] for k, v in self.ids.items()},
        )


@dataclass
class PreprocessedDataset:
    """``summary.json`` plus ``master.parquet`` of a preprocessing output."""

    uri: str
    summary: dict
    digest: str  # sha256 of summary.json: the lineage recorded in model bundles
    table: WindowTable

    @property
    def feature_names(self) -> list[str]:
        return list(self.summary["feature_names"])

    @property
    def joint_names(self) -> list[str]:
        return list(self.summary["joint_names"])

    @property
    def label_names(self) -> list[str]:
        return list(self.summary["label_names"])

    @property
    def has_label(self) -> bool:
        return bool(self.summary["has_label"])

    @property
    def config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.summary["config"], source=f"{self.uri}/{SUMMARY_KEY}")

    @property
    def stats(self) -> NormStats:
        return NormStats.from_dict(self.summary["stats"])

    @property
    def window_length(self) -> int:
        """Samples one row reads: the window, or its span when the rows carry extra lengths or temporal
        context (``span_samples``), so that a gap of this many samples keeps held-out rows disjoint."""
        window = self.summary["window"]
        return int(window.get("span_samples", window["length_samples"]))


def load_preprocessed(uri: str) -> PreprocessedDataset:
    """Reads a preprocessing output (any store URI); refuses one without a complete summary."""
    store = open_store(uri)
    if not store.exists(SUMMARY_KEY):
        raise DataFormatError(
            f"{store.url(SUMMARY_KEY)} not found: {uri} is not a preprocessed dataset "
            f"(run `emgpose preprocess` first; the summary is written last, so its absence also means "
            f"an unfinished run)"
        )
    raw = store.get_bytes(SUMMARY_KEY)
    try:
        summary = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{store.url(SUMMARY_KEY)}: not valid JSON ({exc})") from None
    if summary.get("format") != SUMMARY_FORMAT:
        raise DataFormatError(
            f"{store.url(SUMMARY_KEY)}: format {summary.get('format')!r} is not {SUMMARY_FORMAT!r}; "
            f"re-run the preprocessing with this version"
        )
    with tempfile.TemporaryDirectory(prefix="emgpose-train-") as tmp:
        path = str(Path(tmp) / MASTER_KEY)
        store.get_file(MASTER_KEY, path)
        table = read_window_table(path, summary, store.url(MASTER_KEY))
    return PreprocessedDataset(uri=uri, summary=summary, digest=hashlib.sha256(raw).hexdigest(), table=table)


def read_window_table(path: str, summary: dict, source: str) -> WindowTable:
    """A window table (Parquet) as arrays, in the column order the summary names."""
    names = set(pq.read_schema(path).names)
    wanted = [*summary["feature_names"], *(f"y_{j}" for j in summary["joint_names"]), *ID_COLUMNS]
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataFormatError(f"{source}: columns {missing[:5]} named by the summary are missing")
    extra = [c for c in ("window_end", "t_end", "label") if c in names]
    arrow = pq.read_table(path, columns=[*wanted, *extra])  # not the z-scored target copies
    features = np.empty((arrow.num_rows, len(summary["feature_names"])), dtype=np.float32)
    for i, name in enumerate(summary["feature_names"]):
        features[:, i] = arrow[name].to_numpy()
    y = None
    if summary["joint_names"]:
        y = np.column_stack([arrow[f"y_{j}"].to_numpy() for j in summary["joint_names"]]).astype(np.float64)
    label = arrow["label"].to_numpy().astype(np.int64) if summary["has_label"] and "label" in names else None
    return WindowTable(
        features=features,
        y=y,
        label=label,
        window_end=arrow["window_end"].to_numpy().astype(np.int64),
        t_end=arrow["t_end"].to_numpy().astype(np.float64),
        ids={c: _strings(arrow[c]) for c in ID_COLUMNS},
    )


def _strings(column: pa.ChunkedArray) -> np.ndarray:
    """A string column as an object array whose rows share one Python string per distinct value."""
    encoded = column.combine_chunks().dictionary_encode()
    values = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return values[encoded.indices.to_numpy(zero_copy_only=False)]


@dataclass
class Split:
    """Per-row split (``train``/``val``/``test``/``gap``) and how each held-out part was chosen."""

    assignment: np.ndarray  # (n,) object array of split names
    rules: dict[str, str]  # "val"/"test" -> "metadata" | "users ..." | "sessions ..." | "chronological ..."
    # Cross-validation instead of a val part: (training rows, validation rows) per fold, table indices.
    folds: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)

    def rows(self, name: str) -> np.ndarray:
        return self.assignment == name

    def counts(self) -> dict[str, int]:
        names, counts = np.unique(self.assignment.astype(str), return_counts=True)
        return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


def assign_splits(table: WindowTable, window_length: int, small_windows: int = SMALL_WINDOWS) -> Split:
    """Uses the metadata's splits, carving test, then val, out of train where none is given.

    With fewer than ``small_windows`` training windows left after the test part, validation is by
    cross-validation (``Split.folds``) rather than a carved val part.
    """
    assignment = np.asarray(table.ids["split"], dtype=object).copy()
    rules: dict[str, str] = {}
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    for target in ("test", "val"):
        if (assignment == target).any():
            rules[target] = "metadata"
            continue
        pool = assignment == "train"
        if target == "val" and pool.sum() < small_windows:
            folds = blocked_folds(table, pool, window_length)
            if folds:
                rules["val"] = (
                    f"cross-validation: {pool.sum()} training windows (< {small_windows}), {len(folds)} blocks "
                    f"per session in time with one window's gap; rounds chosen there, then refitted on all"
                )
                continue
        rules[target] = _carve(table, assignment, target, window_length)
    if not (assignment == "train").any():
        raise InvalidInput("no training windows are left after the split; the dataset needs more data")
    return Split(assignment, rules, folds)


def _carve(table: WindowTable, assignment: np.ndarray, target: str, window_length: int) -> str:
    """Moves the last share of the training users/sessions/time to ``target``; returns the rule used."""
    pool = assignment == "train"
    users = sorted(set(table.ids["user"][pool]) - {""})
    if len(users) > SMALL_USERS:
        k = max(1, math.floor(len(users) * HOLDOUT_SHARE + 0.5))
        held = users[-k:]
        assignment[pool & np.isin(table.ids["user"], held)] = target
        return f"users {', '.join(map(str, held))} (the metadata has no {target} split)"
    sessions = sorted(set(table.ids["session"][pool]) - {""})
    if len(sessions) >= 2:
        k = max(1, math.floor(len(sessions) * HOLDOUT_SHARE + 0.5))
        held = sessions[-k:]
        kept = pool & ~np.isin(table.ids["session"], held)
        if set(table.ids["user"][kept]) == set(table.ids["user"][pool]):  # every user keeps a session
            assignment[pool & np.isin(table.ids["session"], held)] = target
            return f"sessions {', '.join(map(str, held))} (the metadata has no {target} split)"
    return _carve_in_time(table, assignment, pool, target, window_length)


def _by_session(table: WindowTable, pool: np.ndarray) -> list[np.ndarray]:
    """The pool's rows grouped per session (file), each group in time order."""
    rows = np.flatnonzero(pool)
    groups = []
    for session in sorted(set(table.ids["session"][rows])):
        mine = rows[table.ids["session"][rows] == session]
        groups.append(mine[np.argsort(table.window_end[mine], kind="stable")])
    return groups


def _carve_in_time(table: WindowTable, assignment: np.ndarray, pool: np.ndarray, target: str, length: int) -> str:
    """The last share of every session's windows in time, each with one window's gap before it."""
    carved = 0
    for rows in _by_session(table, pool):
        if len(rows) < 3:
            continue
        ends = table.window_end[rows]
        cut = np.quantile(ends, 1.0 - HOLDOUT_SHARE, method="lower")
        first_held_start = cut - length + 1  # first sample a held-out window sees
        assignment[rows[ends >= cut]] = target
        # A training window must end one whole window before the first held-out window starts.
        assignment[rows[(ends < cut) & (ends >= first_held_start - length)]] = "gap"
        carved += 1
    if not carved:
        return f"none (too few training windows to carve a {target} split)"
    return f"chronological: last {HOLDOUT_SHARE:.0%} of each session in time, one window's gap before it"


def blocked_folds(
    table: WindowTable, pool: np.ndarray, length: int, k: int = CV_FOLDS
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Blocked chronological cross-validation folds over the ``pool`` rows.

    Each session's windows, in time order, are cut into ``k`` contiguous blocks; fold ``i`` validates on
    every session's block ``i`` and trains on the rest, minus the windows that share a sample with the
    validation block (the gap: a window ending within ``length - 1`` samples of the block on either side).
    Folds left without training or validation rows are dropped; fewer than two folds gives none.
    """
    sessions = _by_session(table, pool)
    folds = []
    for i in range(k):
        val_rows, blocked = [], np.zeros(len(table), dtype=bool)
        for rows in sessions:
            block = np.array_split(rows, k)[i]
            if len(block) == 0:
                continue
            val_rows.append(block)
            ends = table.window_end[rows]
            first, last = table.window_end[block].min(), table.window_end[block].max()
            blocked[rows[(ends >= first - length + 1) & (ends <= last + length - 1)]] = True
        if not val_rows:
            continue
        val = np.concatenate(val_rows)
        train = np.flatnonzero(pool & ~blocked)
        if len(train) >= 2 and len(val) >= 1:
            folds.append((train, np.sort(val)))
    return folds if len(folds) >= 2 else []
