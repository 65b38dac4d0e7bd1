"""Sliding windows over the causal chain, fed chunk by chunk (offline files and live streams alike).

Windows are ``(n_windows, n_channels, n_samples)`` (LibEMG's convention). Window ``k`` ends at sample
``span - 1 + k * stride`` of the stream; its target is the joint-angle vector (or label) at that last
sample, so a prediction never looks ahead. ``span`` is the history one row of features reads: the window
length, or the longest of ``window.extra_lengths`` (features over longer windows ending at the same
sample), plus ``context * stride`` when the row also carries the features of the ``context`` earlier
windows; with neither it is the window length. Windows that touch invalid EMG or an IK failure, or whose
target is NaN/inf, are kept in the batch with a non-zero ``reason`` so callers can count and drop them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from emgpose.errors import InvalidInput
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import FEATURES, FeatureParams, compute_stream_features, feature_names
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.signal import CausalChain, finite_rows

DROP_REASONS = ("kept", "emg_invalid", "target_invalid", "ik_failure")
KEPT, EMG_INVALID, TARGET_INVALID, IK_FAILURE = range(4)


@dataclass
class WindowBatch:
    end_index: np.ndarray  # (n,) int64: index of the last sample, counted from the stream's start
    end_time: np.ndarray  # (n,) float64
    features: np.ndarray  # (n, n_features) float32
    targets: np.ndarray | None  # (n, J) float64, raw units
    label: np.ndarray | None  # (n,) int64
    reason: np.ndarray  # (n,) int8, index into DROP_REASONS; 0 = usable
    invalid_samples: int = 0  # samples of this chunk with NaN/inf EMG

    def __len__(self) -> int:
        return int(self.end_index.shape[0])

    @property
    def kept(self) -> np.ndarray:
        return self.reason == KEPT


def ik_failures(targets: np.ndarray, tol: float) -> np.ndarray:
    """Samples whose angles are all (close to) zero: inverse-kinematics failures.

    Only with two joints or more: a single angle (a knee goniometer) passes through 0 as a real value,
    so with one joint nothing is an IK failure (the preprocessing summary says which rule applied).
    """
    if targets.ndim != 2 or targets.shape[1] < 2:
        return np.zeros(len(targets), dtype=bool)
    failed = np.abs(targets[:, 0]) <= tol  # rare: test the first joint, then the rest where it is zero
    rows = np.flatnonzero(failed)
    if len(rows):
        failed[rows] = (np.abs(targets[rows]) <= tol).all(axis=1)
    return failed


@lru_cache(maxsize=256)
def _geometry(
    config: PreprocessConfig, sample_rate: float, num_channels: int
) -> tuple[tuple[int, int], tuple[int, ...], int, int]:
    """A stream's sizes, computed once per configuration (parsing durations and naming every column costs
    more than one window's features; a server builds a stream per request). A refusal is not cached."""
    return (
        config.window.samples(sample_rate),
        config.window.lengths(sample_rate),
        config.span_samples(sample_rate),
        len(feature_names(config, num_channels)),
    )


class WindowStream:
    """Feeds EMG (and targets) through the chain, z-scores, and yields each new window's features.

    The signals live in ``xp``'s arrays (NumPy here; :class:`emgpose.preprocess.kernel_path.KernelWindowStream`
    keeps them on the device and computes the same chain and features with our kernels). Masks,
    targets and the returned batch are always NumPy.
    """

    xp = np

    def __init__(
        self,
        config: PreprocessConfig,
        sample_rate: float,
        num_channels: int,
        stats: NormStats,
        *,
        num_targets: int = 0,
        with_label: bool = False,
        source: str = "",
    ) -> None:
        self.config = config
        (self.length, self.stride), self.lengths, self.span, self.num_features = _geometry(
            config, sample_rate, num_channels
        )  # the window and stride, every length (the main one first), the samples a row reads, its columns
        self.params = FeatureParams.from_config(config, sample_rate)
        self.chain = CausalChain(config, sample_rate, num_channels, source)
        self.stats = stats
        self.num_targets = num_targets
        self.with_label = with_label
        self.num_channels = num_channels
        self._signals = {FEATURES[name].signal for name in config.features}
        # The last (span - 1) samples of each signal, so a window (and its context) can span two chunks.
        self._buf = {s: self.xp.zeros((0, num_channels), dtype=np.float32) for s in self._signals}
        self._buf_invalid = np.zeros(0, dtype=bool)
        self._buf_ik = np.zeros(0, dtype=bool)
        self.seen = 0  # samples fed through push() (warm-up samples do not count)

    def warm_up(self, emg: np.ndarray) -> None:
        """Runs samples through the filters only (pre-roll before a time range); no windows."""
        self.chain.process(emg)

    def push(
        self,
        emg: np.ndarray,
        time: np.ndarray,
        targets: np.ndarray | None = None,
        label: np.ndarray | None = None,
    ) -> WindowBatch:
        n = len(emg)
        if len(time) != n:
            raise InvalidInput(f"time has {len(time)} samples but EMG has {n}")
        signals, chunk_invalid = self._scaled_signals(emg)
        ik = np.zeros(n, dtype=bool)
        if self.num_targets and targets is not None:
            ik = ik_failures(targets, self.config.ik_failure_tol)

        base = self.seen - len(self._buf_invalid)  # stream index of the first buffered sample
        joined = {s: self.xp.concatenate([self._buf[s], signals[s]]) for s in self._signals}
        invalid = np.concatenate([self._buf_invalid, chunk_invalid])
        ik_all = np.concatenate([self._buf_ik, ik])
        ends = self._window_ends(n)
        batch = self._make_batch(ends, base, joined, invalid, ik_all, time, targets, label)
        batch.invalid_samples = int(chunk_invalid.sum())

        self._buf = {s: self._tail(joined[s]) for s in self._signals}
        self._buf_invalid = self._tail(invalid)
        self._buf_ik = self._tail(ik_all)
        self.seen += n
        return batch

    def _scaled_signals(self, emg: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The chunk's z-scored float32 signals the features read, and its invalid-sample mask."""
        out = self.chain.process(emg)
        signals = {}
        if "filtered" in self._signals:
            signals["filtered"] = self.stats.scale_filtered(out.filtered, np.float32)
        if "envelope" in self._signals:
            signals["envelope"] = self.stats.scale_envelope(out.envelope, np.float32)
        return signals, out.invalid

    def _features(self, joined: dict[str, np.ndarray], starts: np.ndarray, length: int) -> np.ndarray:
        """``(len(starts), n_features)`` float32 on the host for windows of ``length`` samples of ``joined``
        at ``starts`` (evenly spaced)."""
        return compute_stream_features(joined, starts, length, self.config.features, self.params)

    def _rows(self, joined: dict[str, np.ndarray], local_end: np.ndarray) -> np.ndarray:
        """The feature rows of the windows ending at ``local_end`` (indices into ``joined``): each length's
        features, then the same of the ``context`` earlier windows, one stride apart. The earlier windows
        are the same stride grid extended backwards, so each window's features are computed once."""
        k = self.config.context
        grid = np.concatenate([local_end[0] - self.stride * np.arange(k, 0, -1, dtype=np.int64), local_end])
        rows = np.concatenate([self._features(joined, grid - (n - 1), n) for n in self.lengths], axis=1)
        count = len(local_end)
        return np.concatenate([rows[k - j : k - j + count] for j in range(k + 1)], axis=1)

    def _tail(self, x: np.ndarray) -> np.ndarray:
        return x[max(0, len(x) - (self.span - 1)) :]

    def _window_ends(self, n: int) -> np.ndarray:
        first = self.span - 1
        k0 = max(0, -(-(self.seen - first) // self.stride))
        start = first + k0 * self.stride
        return np.arange(start, self.seen + n, self.stride, dtype=np.int64)

    def _make_batch(self, ends, base, joined, invalid, ik_all, time, targets, label) -> WindowBatch:
        local_end = ends - base  # index into the joined arrays
        starts = local_end - (self.span - 1)  # the first sample the row reads: masks cover the whole span
        if len(ends):
            features = self._rows(joined, local_end)
        else:
            features = np.zeros((0, self.num_features), dtype=np.float32)
        in_chunk = ends - self.seen  # index into this chunk's own arrays
        reason = np.zeros(len(ends), dtype=np.int8)
        tgt = None
        if self.num_targets and targets is not None:
            tgt = np.asarray(targets, dtype=np.float64)[in_chunk]
            ik_csum = np.concatenate([[0], np.cumsum(ik_all)])
            reason[(ik_csum[local_end + 1] - ik_csum[starts]) > 0] = IK_FAILURE
            reason[~finite_rows(tgt)] = TARGET_INVALID
        bad = np.concatenate([[0], np.cumsum(invalid)])
        reason[(bad[local_end + 1] - bad[starts]) > 0] = EMG_INVALID
        return WindowBatch(
            end_index=ends,
            end_time=np.asarray(time, dtype=np.float64)[in_chunk],
            features=features,
            targets=tgt,
            label=None if label is None else np.asarray(label, dtype=np.int64)[in_chunk],
            reason=reason,
        )
