"""Raw EMG in, joint angles (or class probabilities) out: the training preprocessing, then the booster.

:class:`Predictor` keeps the causal filter and window state between calls, so a live stream can be fed
chunk by chunk and each new window is answered as soon as it exists; :func:`predict` is the one-shot
form. Both apply exactly the code the offline pipeline ran, with the bundle's saved statistics.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import numpy as np

from emgpose.errors import InvalidInput
from emgpose.preprocess.windows import WindowBatch, WindowStream
from emgpose.train.bundle import Bundle
from emgpose.train.compiled import bundle_runner
from emgpose.train.smoothing import Smoother


@dataclass
class Prediction:
    """One row per window: its last sample, its end time, and the model's answer."""

    model: str
    version: str
    task: str
    names: list[str]  # joint names (regression) or class names (classification)
    window_end: np.ndarray  # (n,) int64, sample index counted from the first non-warm-up sample
    t_end: np.ndarray  # (n,) float64 seconds (the input's clock, or window_end / sample_rate)
    values: np.ndarray  # (n, k): angles in radians, or class probabilities
    out_of_range: np.ndarray | None = None  # (n,) share of each window's features outside the training range

    def __len__(self) -> int:
        return int(self.window_end.shape[0])

    @property
    def degrees(self) -> np.ndarray:
        if self.task != "regression":
            raise InvalidInput("degrees exist for regression models only")
        return np.degrees(self.values)

    @property
    def classes(self) -> list[str]:
        """Most probable class per window (classification)."""
        return [self.names[i] for i in np.argmax(self.values, axis=1)] if len(self) else []

    def to_csv(self) -> str:
        """``window_end_sample,t_end_s`` (the window's last sample: its index, and its time in seconds), then
        ``<joint>_rad,<joint>_deg`` per joint, or ``p_<class>`` and ``class``; last ``out_of_range`` where the
        model records its training range. The first two columns were ``window_end,t_end`` before issue 16
        (``emgpose.cli_views.time_column`` reads either)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        extra = ["out_of_range"] if self.out_of_range is not None else []
        if self.task == "regression":
            header = ["window_end_sample", "t_end_s", *(f"{n}_{u}" for n in self.names for u in ("rad", "deg"))]
            deg = self.degrees
            rows = (
                [f"{v:.6g}" for j in range(len(self.names)) for v in (self.values[i, j], deg[i, j])]
                for i in range(len(self))
            )
        else:
            header = ["window_end_sample", "t_end_s", *(f"p_{n}" for n in self.names), "class"]
            classes = self.classes
            rows = ([*(f"{p:.6g}" for p in self.values[i]), classes[i]] for i in range(len(self)))
        writer.writerow([*header, *extra])
        for i, row in enumerate(rows):
            tail = [f"{self.out_of_range[i]:.4g}"] if self.out_of_range is not None else []
            writer.writerow([int(self.window_end[i]), f"{self.t_end[i]:.6f}", *row, *tail])
        return out.getvalue()


@dataclass(frozen=True)
class Prepared:
    """One chunk's windows and the booster's input rows for them (:meth:`Predictor.prepare`)."""

    batch: WindowBatch
    features: np.ndarray  # (n, n_features) float32, after the adaptation where the bundle has one

    def __len__(self) -> int:
        return len(self.batch)


class Predictor:
    """Stateful preprocessing + booster for one stream of EMG at the bundle's sample rate."""

    def __init__(self, bundle: Bundle, source: str = "EMG input", backend: str | None = None) -> None:
        self.bundle = bundle
        self.booster = bundle_runner(bundle, backend)  # XGBoost or the compiled model (MODEL_BACKEND)
        self.source = source
        self.stream = WindowStream(bundle.config, bundle.sample_rate, bundle.num_channels, bundle.stats, source=source)
        self.window_length = self.stream.span  # samples before the first row: the window, or its span
        self.smoother = Smoother(bundle.smoothing.alpha)  # one state per stream, like the filters
        self.adapter = None if bundle.adaptation is None else bundle.adaptation.stream()

    def check(self, emg: np.ndarray) -> np.ndarray:
        """The input as float32 ``(samples, channels)``; refuses wrong shapes and NaN/inf."""
        emg = np.asarray(emg)
        if emg.ndim == 1 and self.bundle.num_channels == 1:
            emg = emg[:, None]
        if emg.ndim != 2 or emg.shape[1] != self.bundle.num_channels:
            raise InvalidInput(
                f"{self.source}: expected EMG of shape (samples, {self.bundle.num_channels}) for model "
                f"{self.bundle.name} {self.bundle.version}, got {emg.shape}"
            )
        if not np.issubdtype(emg.dtype, np.number):
            raise InvalidInput(f"{self.source}: EMG must be numeric, got {emg.dtype}")
        emg = emg.astype(np.float32, copy=False)
        bad = ~np.isfinite(emg)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InvalidInput(
                f"{self.source}: EMG has {int(bad.sum())} NaN/inf values (first at sample {row}, channel {col}); "
                f"send finite values only"
            )
        return emg

    def warm_up(self, emg: np.ndarray) -> None:
        """Feeds samples through the filters only (no windows), like the offline pre-roll."""
        self.stream.warm_up(self.check(emg))

    def push(self, emg: np.ndarray, time: np.ndarray | None = None) -> Prediction:
        """The predictions of every window that ends inside this chunk (possibly none)."""
        prepared = self.prepare(emg, time)
        return self.finish(prepared, self.raw(prepared.features))

    def prepare(self, emg: np.ndarray, time: np.ndarray | None = None) -> Prepared:
        """The chunk through the filters and windows: the feature rows for :meth:`raw` (advances the state).

        ``push`` is ``finish(prepare(...), raw(...))``; a server runs :meth:`raw` once over the rows of
        several requests (:mod:`emgpose_inference.batching`), since one booster call costs little more
        for many rows than for one.
        """
        emg = self.check(emg)
        first = self.stream.seen
        if time is None:
            time = (first + np.arange(len(emg))) / self.bundle.sample_rate
        batch = self.stream.push(emg, np.asarray(time, dtype=np.float64))
        features = batch.features if self.adapter is None else self.adapter(batch.features)
        return Prepared(batch, features)

    def raw(self, features: np.ndarray) -> np.ndarray:
        """The booster's output for feature rows (any number, from any streams of this bundle)."""
        return self.booster(features)

    def finish(self, prepared: Prepared, raw: np.ndarray) -> Prediction:
        """The prediction of prepared rows from :meth:`raw`'s output for them (smoothing carries state:
        call it in the stream's order)."""
        batch = prepared.batch
        values = self.smoother(self.bundle.stats.unscale_targets(raw) if self.bundle.task == "regression" else raw)
        names = self.bundle.joint_names if self.bundle.task == "regression" else self.bundle.class_names
        return Prediction(
            model=self.bundle.name,
            version=self.bundle.version,
            task=self.bundle.task,
            names=names,
            window_end=batch.end_index,
            t_end=batch.end_time,
            values=np.asarray(values, dtype=np.float64),
            out_of_range=None
            if self.bundle.feature_range is None
            else self.bundle.feature_range.outside(batch.features),
        )


def predict(bundle: Bundle, emg: np.ndarray, time: np.ndarray | None = None, warm_up: int = 0) -> Prediction:
    """One result per window of ``emg`` (samples x channels at the bundle's sample rate).

    The first ``warm_up`` samples only settle the filters (no windows end there), as the offline
    pipeline's pre-roll does before a session's time range.
    """
    predictor = Predictor(bundle)
    emg = predictor.check(emg)
    if warm_up:
        predictor.warm_up(emg[:warm_up])
    usable = len(emg) - warm_up
    if usable < predictor.window_length:
        raise InvalidInput(
            f"EMG input: {usable} samples are fewer than one window ({predictor.window_length} samples = "
            f"{predictor.window_length / bundle.sample_rate * 1000:g} ms at {bundle.sample_rate:g} Hz)"
        )
    return predictor.push(emg[warm_up:], None if time is None else np.asarray(time)[warm_up:])
