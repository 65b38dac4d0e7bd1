"""Several one-shot recordings of the same length preprocessed in one pass, side by side as channels.

For one window the preprocessing is a few dozen small NumPy and SciPy calls whose fixed cost is most of
the time. Every step of the chain (band-pass, rectification, moving average, z-score) and every
per-channel feature treats each channel on its own, so B recordings of C channels placed side by side are
one recording of B x C channels: one pass costs about what one recording does, and each recording's
columns of the result are the ones it would get alone (the same operations on the same numbers; tests
compare them exactly). The server's batcher uses it for concurrent ``/v1/predict`` requests
(:mod:`emgpose_inference.batching`).

Only where it is exact: a fresh stream (no carried state), no per-session feature adaptation (it keeps
state across windows), the input's own clock (no explicit times), and no feature that reads across
channels (:attr:`~emgpose.preprocess.features.Feature.cross_channel`). Anything else is prepared one
recording at a time, with the same answer.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from emgpose.preprocess.features import FEATURES
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.windows import WindowBatch, WindowStream
from emgpose.train.bundle import Bundle
from emgpose.train.predict import Predictor, Prepared


def stackable(bundle: Bundle) -> bool:
    """Whether recordings for ``bundle`` may be preprocessed side by side (see the module doc)."""
    return bundle.adaptation is None and not any(FEATURES[name].cross_channel for name in bundle.config.features)


def _tiled(stats: NormStats, copies: int) -> NormStats:
    """The EMG statistics repeated for ``copies`` recordings side by side (targets unchanged)."""
    return replace(
        stats,
        filtered_mean=stats.filtered_mean * copies,
        filtered_std=stats.filtered_std * copies,
        envelope_mean=stats.envelope_mean * copies,
        envelope_std=stats.envelope_std * copies,
    )


def prepare_together(bundle: Bundle, recordings: list[np.ndarray]) -> list[tuple[Predictor, Prepared]]:
    """A fresh :class:`Predictor` and its :class:`Prepared` rows per recording, as ``Predictor(bundle)
    .prepare(emg)`` gives them. Every recording must already be checked (``Predictor.check``: float32,
    ``(samples, channels)``, finite) and have the same number of samples. The predictors are for
    :meth:`Predictor.finish` of these rows only: their filter state did not advance."""
    count = len(recordings)
    if count == 1 or not stackable(bundle):
        out = []
        for emg in recordings:
            predictor = Predictor(bundle)
            out.append((predictor, predictor.prepare(emg)))
        return out
    samples, channels = recordings[0].shape
    if any(r.shape != (samples, channels) for r in recordings) or channels != bundle.num_channels:
        raise ValueError(
            f"recordings to stack must all be ({samples}, {bundle.num_channels}), got {[r.shape for r in recordings]}"
        )
    stream = WindowStream(bundle.config, bundle.sample_rate, channels * count, _tiled(bundle.stats, count))
    wide = np.concatenate(recordings, axis=1)
    batch = stream.push(wide, np.arange(samples) / bundle.sample_rate)
    windows = len(batch)
    # Every column group of a row (a feature's value k, over a window length, at a context offset) runs
    # over all B x C channels in order: recording b's are the C of them from b * C.
    groups = batch.features.shape[1] // (channels * count)
    rows = batch.features.reshape(windows, groups, count, channels).transpose(2, 0, 1, 3)
    rows = rows.reshape(count, windows, groups * channels)
    out = []
    for b in range(count):
        features = np.ascontiguousarray(rows[b])
        mine = WindowBatch(batch.end_index, batch.end_time, features, None, None, batch.reason.copy())
        out.append((Predictor(bundle), Prepared(mine, features)))
    return out
