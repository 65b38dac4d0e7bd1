"""The causal per-sample chain: band-pass (+ optional notch) -> rectify -> moving average.

One implementation serves offline batches and live streams: every step is causal and carries its
state between calls, so a session processed in one call or in arbitrary chunks gives the same result.
Arrays are ``(n_samples, n_channels)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.preprocess.config import PreprocessConfig


def finite_rows(x: np.ndarray) -> np.ndarray:
    """``np.isfinite(x).all(axis=1)``, fast for the common case of a chunk with no NaN/inf at all.

    (One sum over the chunk decides that; no BLAS, so pool workers do not oversubscribe the cores.)
    """
    with np.errstate(invalid="ignore", over="ignore"):
        if np.isfinite(x.sum()):
            return np.ones(len(x), dtype=bool)
    return np.isfinite(x).all(axis=1)


def finite_emg(emg: np.ndarray, num_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """``(float64 EMG with NaN/inf replaced by 0, per-sample invalid mask)``; refuses a wrong shape.

    Zeros keep a filter's state finite; the mask lets the window stage drop windows that touch them.
    """
    x = np.asarray(emg, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != num_channels:
        raise InvalidInput(f"EMG must be (samples, {num_channels} channels), got shape {x.shape}")
    invalid = ~finite_rows(x)
    if invalid.any():
        x = np.where(np.isfinite(x), x, 0.0)
    return x, invalid


def design_sos(config: PreprocessConfig, sample_rate: float, source: str = "") -> np.ndarray | None:
    """SOS coefficients of the band-pass and notch, or ``None`` when both are disabled.

    Refuses a band the sampling rate cannot carry: the high edge must stay below Nyquist.
    """
    where = f"{source}: " if source else ""
    nyquist = sample_rate / 2.0
    sections = []
    band = config.bandpass
    if band.enabled:
        if band.high_hz >= nyquist:
            raise InvalidInput(
                f"{where}band-pass high edge {band.high_hz:g} Hz needs sample_rate > {2 * band.high_hz:g} Hz, "
                f"but the data is sampled at {sample_rate:g} Hz; set bandpass.high_hz below "
                f"{nyquist:g} or bandpass.enabled: false"
            )
        sections.append(
            signal.butter(band.order, [band.low_hz, band.high_hz], btype="bandpass", fs=sample_rate, output="sos")
        )
    notch = config.notch
    if notch.enabled:
        if notch.freq_hz >= nyquist:
            raise InvalidInput(
                f"{where}notch at {notch.freq_hz:g} Hz is above Nyquist ({nyquist:g} Hz) for "
                f"sample_rate {sample_rate:g} Hz; disable notch or fix freq_hz"
            )
        b, a = signal.iirnotch(notch.freq_hz, notch.quality, fs=sample_rate)
        sections.append(signal.tf2sos(b, a))
    return np.vstack(sections) if sections else None


@lru_cache(maxsize=64)
def _designed(config: PreprocessConfig, sample_rate: float) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(sos, sosfilt_zi(sos))`` for a chain, designed once per configuration and rate, shared by every
    chain of that configuration (never written: ``sosfilt`` only reads ``sos``, and ``zi`` is read-only).

    Designing the filter costs more than filtering one window; a server builds a chain per request.
    A refused design raises and is not cached, so its message names each caller's own source.
    """
    sos = design_sos(config, sample_rate)
    if sos is None:
        return None, None
    zi = signal.sosfilt_zi(sos)
    zi.flags.writeable = False
    return sos, zi


@dataclass
class ChainOutput:
    filtered: np.ndarray  # band-passed EMG, (n, C)
    envelope: np.ndarray  # rectified and smoothed, (n, C)
    invalid: np.ndarray  # (n,) bool: a channel was NaN/inf at this sample


class CausalChain:
    """Stateful band-pass -> rectify -> moving average over ``(n, C)`` chunks.

    NaN/inf samples are replaced by zero before filtering (so the state stays finite) and flagged in
    ``ChainOutput.invalid``; the window stage drops windows that touch them.
    """

    def __init__(self, config: PreprocessConfig, sample_rate: float, num_channels: int, source: str = ""):
        if num_channels < 1:
            raise InvalidInput(f"{source}: need at least one EMG channel, got {num_channels}")
        self.config = config
        self.sample_rate = sample_rate
        self.num_channels = num_channels
        try:
            self.sos, self._zi_unit = _designed(config, sample_rate)
        except InvalidInput:
            design_sos(config, sample_rate, source)  # the same refusal, naming this chain's source
            raise
        self._ma = config.moving_average
        self.reset()

    def reset(self) -> None:
        self._zi: np.ndarray | None = None
        # Running sum of the last (ma - 1) rectified samples, and those samples themselves.
        self._history = np.zeros((self._ma - 1, self.num_channels), dtype=np.float64)

    def process(self, emg: np.ndarray) -> ChainOutput:
        x, invalid = finite_emg(emg, self.num_channels)
        filtered = self._filter(x)
        return ChainOutput(filtered=filtered, envelope=self._smooth(filtered), invalid=invalid)

    def _filter(self, x: np.ndarray) -> np.ndarray:
        if self.sos is None or len(x) == 0:
            return x
        if self._zi is None:
            # Start in steady state for the first sample's level, so a DC offset does not ring.
            self._zi = self._zi_unit[:, :, None] * x[0][None, None, :]
        y, self._zi = signal.sosfilt(self.sos, x, axis=0, zi=self._zi)
        return y

    def _smooth(self, y: np.ndarray) -> np.ndarray:
        """Causal moving average of ``|y|`` (or ``y``) over ``moving_average`` samples, state carried.

        One buffer holds a zero row, the previous ``ma - 1`` inputs and this chunk; its running sum,
        taken in place, gives every output as the difference of two prefix sums.
        """
        n, n_hist = len(y), self._ma - 1
        rect = np.abs if self.config.rectify else np.positive
        if n_hist == 0 or n == 0:
            return rect(y)
        buf = np.empty((1 + n_hist + n, y.shape[1]), order="F")
        buf[0] = 0.0
        buf[1 : 1 + n_hist] = self._history
        rect(y, out=buf[1 + n_hist :])
        self._history = buf[len(buf) - n_hist :].copy()
        np.cumsum(buf, axis=0, out=buf)
        out = np.subtract(buf[1 + n_hist :], buf[:n])
        out *= 1.0 / self._ma
        return out
