"""Window features: an explicit registry, name -> function over ``(n_windows, n_channels, n_samples)``.

Each feature reads one of two signals of the chain: ``envelope`` (rectified, smoothed, z-scored) or
``filtered`` (band-passed, scaled to unit variance on the training data). The Hudgins time-domain
features (MAV, WL, ZC, SSC) and RMS are defined on the filtered signal, as in LibEMG; a feature of the
rectified envelope is the plan's "processed EMG channel" summarised over the window. Beside them the
registry holds LibEMG's LS4 group (LS, MFL, MSR, WAMP), TDPSD (M0, M2, M4, SPARSI, IRF, WLF), the
Hjorth parameters (ACT, MOB, COMP), Burg AR coefficients, mean and median frequency, log amplitudes and
channel shares; the README's "Preprocessing" section tabulates them with their definitions.

Every feature is causal: it reads the window's samples only. Every function returns
``(n_windows, width * n_channels)``: ``width`` is 1 for all but AR (one value per coefficient), and the
columns are value-major, then channel (:func:`feature_names` names them).

How the stream computes each feature once per sample or once per window (:func:`compute_stream_features`,
tested equal to the window functions):

- most features are sums over the window of a per-sample term (|x|, x², |x[i+1] - x[i]|, a crossing
  indicator, ...), or a function of a few such sums (Hjorth, TDPSD, MSR, channel shares). For those the
  registry states the terms, so a stream computes each term once per sample and every window's sums from
  a running (prefix) sum, instead of once per overlapping window; terms shared by several features
  (x² for RMS, ACT and M0) are computed once per call. TDPSD's log-power terms are summed per window
  from block sums instead (:func:`block_window_sums`): their running sum grows too large to difference;
- the few that are not functions of sums (LS sorts the window, AR runs Burg's recursion, MNF and MDF
  take its spectrum) are computed once per window from a strided view of the signal;
- ``env_last`` is read at the window's last sample.

``gpu`` says whether ``features.cu`` computes a feature (``emgpose_kernels.features.KERNEL_FEATURES`` has
its id); the others are CPU-only, and the kernel path computes them on the host from the same signals.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

if TYPE_CHECKING:
    from emgpose.preprocess.config import PreprocessConfig

Signal = Literal["envelope", "filtered"]

AR_ORDER = 4  # LibEMG's default order: four coefficients per channel
LOG_FLOOR = 1e-8  # log features read max(value, LOG_FLOOR): a flat window gives a finite value
TDPSD_EPS = float(np.spacing(1))  # LibEMG's eps in log(x² + eps), TDPSD's second signal
PER_WINDOW_BATCH = 1 << 22  # samples (windows x channels x length) per batch of a per-window feature


@dataclass(frozen=True)
class FeatureParams:
    """The settings features read besides the window: thresholds (z-scored units) and the sample rate.

    ``zc_threshold`` is ZC's amplitude step and SSC's slope product; ``wamp_threshold`` the step WAMP
    counts; ``sample_rate`` (Hz) scales MNF and MDF (1.0: cycles per sample).
    """

    zc_threshold: float = 0.0
    wamp_threshold: float = 0.1
    sample_rate: float = 1.0

    @classmethod
    def of(cls, value: float | FeatureParams) -> FeatureParams:
        """A float is the ZC/SSC threshold alone (the older calling convention), the rest defaults."""
        return value if isinstance(value, FeatureParams) else cls(zc_threshold=float(value))

    @classmethod
    def from_config(cls, config: PreprocessConfig, sample_rate: float) -> FeatureParams:
        return cls(config.zc_threshold, config.wamp_threshold, float(sample_rate))


Term = Callable[[np.ndarray, FeatureParams], np.ndarray]


@dataclass(frozen=True)
class Sum:
    """One per-sample term of a feature: ``term(x, params)`` maps ``(n, C)`` samples to ``(n - span, C)``
    terms, term ``i`` covering samples ``i .. i + span``. ``log_power``: the term reads TDPSD's second
    signal ``log(x² + eps)`` (float64) instead of ``x``. Sums with the same (term, span, log_power) on one
    signal are computed once per call, whichever features read them."""

    term: Term
    span: int = 0
    log_power: bool = False


@dataclass(frozen=True)
class Feature:
    """A window feature and how the stream computes it (see the module docstring).

    - ``term``/``span``/``finish``: a feature that is one sum of per-sample terms, ``finish(sum of the
      window's terms, window length)`` (the features ``features.cu`` computes are all of this kind or
      ``env_last``, and the kernel loader checks their signal and span against it);
    - ``sums``/``combine``: a feature that is a function of several sums, ``combine(list of (n_windows, C)
      sums, window length, params)``;
    - ``per_window``: computed by ``fn`` on each window (no running form);
    - none of these: read at the window's last sample (``env_last``).

    ``width``: values per channel (AR: its order). ``gpu``: ``features.cu`` computes it (it has a kernel
    id); ``False`` declares it CPU-only. ``source`` names the definition it follows. ``cross_channel``: a
    channel's value reads other channels too (``mav_share``), so recordings placed side by side as extra
    channels (:mod:`emgpose.train.stacked`) would change it.
    """

    name: str
    signal: Signal
    fn: Callable[[np.ndarray, FeatureParams], np.ndarray]  # (windows, params) -> (n_windows, width * C)
    doc: str
    term: Term | None = None
    span: int = 0
    finish: Callable[[np.ndarray, int], np.ndarray] | None = None
    sums: tuple[Sum, ...] = ()
    combine: Callable[[list[np.ndarray], int, FeatureParams], np.ndarray] | None = None
    per_window: bool = False
    width: int = 1
    gpu: bool = True
    source: str = ""
    cross_channel: bool = False


# --- helpers -----------------------------------------------------------------------------------------


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``, 0 where ``den`` is 0 (a flat window), without a warning."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(num.shape, den.shape))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _floored_log(x: np.ndarray, log: Callable[[np.ndarray], np.ndarray] = np.log) -> np.ndarray:
    return log(np.maximum(np.asarray(x, dtype=np.float64), LOG_FLOOR))


def _finite(x: np.ndarray) -> np.ndarray:
    """Non-finite results of a degenerate window (a log of zero, 0/0) as 0."""
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


# --- per-sample terms (shared by the window functions' sums and the stream) ---------------------------


def _identity(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return x


def _abs(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.abs(x)


def _square(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.square(x)


def _abs_diff(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.abs(np.diff(x, axis=0))


def _square_diff(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.square(np.diff(x, axis=0))


def _abs_diff2(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.abs(np.diff(x, n=2, axis=0))


def _square_diff2(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.square(np.diff(x, n=2, axis=0))


def _zc_term(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    a, b = x[:-1], x[1:]
    return ((a * b < 0) & (np.abs(a - b) >= p.zc_threshold)).astype(np.float64)


def _ssc_term(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    mid = x[1:-1]
    return ((mid - x[:-2]) * (mid - x[2:]) > p.zc_threshold).astype(np.float64)


def _wamp_term(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return (np.abs(np.diff(x, axis=0)) > p.wamp_threshold).astype(np.float64)


def _sqrt_positive(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.sqrt(np.maximum(x, 0))


def _sqrt_negative(x: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.sqrt(np.maximum(-x, 0))


def log_power(x: np.ndarray) -> np.ndarray:
    """TDPSD's second signal, ``log(x² + eps)`` in float64."""
    x = np.asarray(x, dtype=np.float64)
    return np.log(x * x + TDPSD_EPS)


def _window_sum(w: np.ndarray, s: Sum, p: FeatureParams) -> np.ndarray:
    """The sum of ``s``'s terms over each window of ``(n_windows, C, N)`` windows (the terms run along the
    last axis here, so they are taken on the transposed window: ``(N, ...)``)."""
    x = log_power(w) if s.log_power else w
    return np.moveaxis(s.term(np.moveaxis(x, -1, 0), p), 0, -1).sum(axis=-1, dtype=np.float64)


def _sums_fn(sums: tuple[Sum, ...], combine: Callable[[list[np.ndarray], int, FeatureParams], np.ndarray]):
    """The window function of a feature defined by ``sums`` and ``combine``: the sums taken directly over
    each window's samples (the stream takes the same sums from prefix sums)."""

    def fn(w: np.ndarray, p: FeatureParams) -> np.ndarray:
        p = FeatureParams.of(p)
        return combine([_window_sum(w, s, p) for s in sums], w.shape[-1], p)

    return fn


# --- the Hudgins features, RMS and the envelope features ------------------------------------------------


def env_mean(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return w.mean(axis=-1)


def env_last(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return w[..., -1].copy()


def mav(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.abs(w).mean(axis=-1)


def rms(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.sqrt(np.square(w).mean(axis=-1))


def wl(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return np.abs(np.diff(w, axis=-1)).sum(axis=-1)


def zc(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    threshold = FeatureParams.of(p).zc_threshold
    a, b = w[..., :-1], w[..., 1:]
    crossing = (a * b < 0) & (np.abs(a - b) >= threshold)
    return crossing.sum(axis=-1).astype(np.float64)


def ssc(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    threshold = FeatureParams.of(p).zc_threshold
    left, mid, right = w[..., :-2], w[..., 1:-1], w[..., 2:]
    change = (mid - left) * (mid - right) > threshold
    return change.sum(axis=-1).astype(np.float64)


def _mean(total: np.ndarray, length: int) -> np.ndarray:
    return total / length


def _root_mean(total: np.ndarray, length: int) -> np.ndarray:
    return np.sqrt(np.maximum(total, 0.0) / length)


def _total(total: np.ndarray, length: int) -> np.ndarray:
    return total


# --- LS4: L-score, maximum fractal length, mean square ratio, Willison amplitude ------------------------


def ls(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    """The second L-moment of the window's samples: ``2 b1 - b0`` with ``b0`` the mean and
    ``b1 = mean over sorted samples x_(i), i = 0 .. N-1, of x_(i) * i / (N - 1)`` (0 for one sample)."""
    n = w.shape[-1]
    if n < 2:
        return np.zeros(w.shape[:-1])
    ordered = np.sort(np.asarray(w, dtype=np.float64), axis=-1)
    b1 = ordered @ (np.arange(n) / (n - 1)) / n
    return 2.0 * b1 - ordered.mean(axis=-1)


def mfl(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    return _floored_log(wl(w, p), np.log10)


def _mfl(total: np.ndarray, length: int) -> np.ndarray:
    return _floored_log(total, np.log10)


MSR_SUMS = (Sum(_sqrt_positive), Sum(_sqrt_negative))


def _msr(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
    """``|mean(sqrt(x))|`` over complex square roots: sqrt(x) for x >= 0, i sqrt(-x) below."""
    return np.hypot(np.maximum(sums[0], 0.0), np.maximum(sums[1], 0.0)) / n


WAMP_SUMS = (Sum(_wamp_term, 1),)


def _first(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
    return sums[0]


# --- TDPSD -----------------------------------------------------------------------------------------------

# For each of the two signals (x, then log(x² + eps)): sum x², sum x'², sum x''², sum |x'|, sum |x''|.
_TDPSD_ONE = (Sum(_square), Sum(_square_diff, 1), Sum(_square_diff2, 2), Sum(_abs_diff, 1), Sum(_abs_diff2, 2))
TDPSD_SUMS = _TDPSD_ONE + tuple(Sum(s.term, s.span, log_power=True) for s in _TDPSD_ONE)
TDPSD = ("m0", "m2", "m4", "sparsi", "irf", "wlf")


def _tdpsd_logs(sums: list[np.ndarray], n: int) -> dict[str, np.ndarray]:
    """LibEMG's per-signal log-moments of one signal from its five sums (Khushaba's TD-PSD): the moments
    ``m0 = (sqrt(sum x²) / (N-1))^0.1 / 0.1``, ``m2 = (sqrt(sum x'² / (N-1)))^0.1 / 0.1``, ``m4`` alike
    from x'', and the logs of m0, m0 - m2, m0 - m4, sparseness, irregularity factor, waveform-length ratio."""
    s0, s2, s4, a1, a2 = (np.maximum(s, 0.0) for s in sums)  # sums of non-negative terms
    scale = max(n - 1, 1)
    m0 = (np.sqrt(s0) / scale) ** 0.1 / 0.1
    m2 = np.sqrt(s2 / scale) ** 0.1 / 0.1
    m4 = np.sqrt(s4 / scale) ** 0.1 / 0.1
    with np.errstate(divide="ignore", invalid="ignore"):
        return {
            "m0": np.log(np.abs(m0)),
            "m2": np.log(np.abs(m0 - m2)),
            "m4": np.log(np.abs(m0 - m4)),
            "sparsi": np.log(np.abs(np.sqrt(np.abs((m0 - m2) * (m0 - m4))) / m0)),
            "irf": np.log(np.abs(m2 / np.sqrt(m0 * m4))),
            "wlf": np.log(np.abs(np.sqrt(a1 / a2))),
        }


TDPSD_ZERO = 1e-12  # e² + b² below this: both log-moments are 0 up to rounding, the ratio 0/0 is 0


def _tdpsd(which: str) -> Callable[[list[np.ndarray], int, FeatureParams], np.ndarray]:
    """TDPSD feature ``which``: ``-2 e b / (e² + b²)`` of the log-moments of x (``b``) and of
    ``log(x² + eps)`` (``e``); 0 where a flat window leaves it undefined, and where e² + b² is below
    :data:`TDPSD_ZERO` (both logs 0, as WLF's is in a 3-sample window with a peak: the summed and the
    running form of the sums differ there by rounding only, which the ratio would blow up)."""

    def combine(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
        b = _tdpsd_logs(sums[:5], n)[which]
        e = _tdpsd_logs(sums[5:], n)[which]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            den = e * e + b * b
            return _finite(np.where(den < TDPSD_ZERO, 0.0, -2.0 * e * b / den))

    return combine


# --- Hjorth parameters -----------------------------------------------------------------------------------

HJORTH_SUMS = (Sum(_square), Sum(_square_diff, 1), Sum(_square_diff2, 2))


def _mobility(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
    """``sqrt(m2 / m0)``, ``m0 = sum x² / N`` and ``m2 = sum x'² / N`` (LibEMG's MOB)."""
    return np.sqrt(np.maximum(_ratio(sums[1], sums[0]), 0.0))


def _complexity(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
    """Hjorth's complexity: the mobility of x' over the mobility of x, ``sqrt(m4 m0) / m2``."""
    return np.sqrt(np.maximum(_ratio(sums[2] * sums[0], sums[1] * sums[1]), 0.0))


# --- AR coefficients (Burg) --------------------------------------------------------------------------------


def ar(w: np.ndarray, p: FeatureParams, order: int = AR_ORDER) -> np.ndarray:
    """Burg's AR coefficients ``a1 .. a_order`` of each window (``x[n] + a1 x[n-1] + ... = e[n]``, as
    ``librosa.lpc``, which LibEMG calls), value-major then channel: ``(n_windows, order * C)``.

    Each order's reflection coefficient is ``-2 sum(f b) / sum(f² + b²)`` over the forward and backward
    prediction errors (0 when both are zero, or when the window has no samples left for that order).
    """
    x = np.asarray(w, dtype=np.float64)
    lead = x.shape[:-1]
    a = np.zeros((*lead, order + 1))
    a[..., 0] = 1.0
    f, b = x[..., 1:], x[..., :-1]
    for m in range(order):
        k = -2.0 * _ratio(np.sum(f * b, axis=-1), np.sum(f * f + b * b, axis=-1))
        a[..., 1 : m + 2] = a[..., 1 : m + 2] + k[..., None] * a[..., m::-1]
        f, b = f + k[..., None] * b, b + k[..., None] * f
        f, b = f[..., 1:], b[..., :-1]
    coefficients = a[..., 1:]  # (n_windows, C, order)
    return np.moveaxis(coefficients, -1, 1).reshape(lead[0], order * lead[1])


# --- mean and median frequency ------------------------------------------------------------------------------


def _power_spectrum(w: np.ndarray) -> tuple[np.ndarray, int]:
    """LibEMG's one-sided power spectrum: FFT zero-padded to the next power of two ``nfft``, bins
    ``0 .. nfft/2 - 1`` (Nyquist excluded); returns ``(power, nfft)``."""
    n = w.shape[-1]
    nfft = 1 if n <= 1 else 2 ** math.ceil(math.log2(n))
    spectrum = np.fft.rfft(np.asarray(w, dtype=np.float64), n=nfft, axis=-1)[..., : nfft // 2]
    return spectrum.real**2 + spectrum.imag**2, nfft


def mnf(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    """Mean frequency (Hz): ``sum(P_k f_k) / sum(P_k)``, ``f_k = k fs / nfft`` (0 for a flat window)."""
    power, nfft = _power_spectrum(w)
    freqs = np.arange(power.shape[-1]) * (FeatureParams.of(p).sample_rate / nfft)
    return _ratio(power @ freqs, power.sum(axis=-1))


def mdf(w: np.ndarray, p: FeatureParams) -> np.ndarray:
    """Median frequency (Hz): ``f_k`` of the first bin whose cumulative power exceeds half the total."""
    power, nfft = _power_spectrum(w)
    if power.shape[-1] == 0:  # a one-sample window has no bin below Nyquist
        return np.zeros(power.shape[:-1])
    cumulative = np.cumsum(power, axis=-1)
    bins = np.sum(cumulative <= cumulative[..., -1:] / 2, axis=-1)
    return np.where(cumulative[..., -1] > 0, bins, 0) * (FeatureParams.of(p).sample_rate / nfft)


# --- log amplitudes and channel shares -----------------------------------------------------------------------


def _log_mav(total: np.ndarray, length: int) -> np.ndarray:
    return _floored_log(total / length)


def _log_rms(total: np.ndarray, length: int) -> np.ndarray:
    return _floored_log(np.sqrt(np.maximum(total, 0.0) / length))


def _share(sums: list[np.ndarray], n: int, p: FeatureParams) -> np.ndarray:
    """Each channel's sum over the sum of all channels' (``1 / C`` each when every channel is flat)."""
    amplitude = np.maximum(sums[0], 0.0)
    total = amplitude.sum(axis=1, keepdims=True)
    return np.where(total > 0, _ratio(amplitude, total), 1.0 / amplitude.shape[1])


def _simple(name: str, fn, doc: str, term: Term, span: int, finish, source: str, gpu: bool = False) -> Feature:
    return Feature(name, "filtered", fn, doc, term, span, finish, gpu=gpu, source=source)


def _combined(name: str, sums: tuple[Sum, ...], combine, doc: str, source: str, cross_channel: bool = False) -> Feature:
    fn = _sums_fn(sums, combine)
    return Feature(
        name, "filtered", fn, doc, sums=sums, combine=combine, gpu=False, source=source, cross_channel=cross_channel
    )


def _windowed(name: str, fn, doc: str, source: str, width: int = 1) -> Feature:
    return Feature(name, "filtered", fn, doc, per_window=True, width=width, gpu=False, source=source)


_TDPSD_DOCS = {
    "m0": "TDPSD: log zero-order moment, normalised against log(x²+eps)",
    "m2": "TDPSD: log of m0 - m2 (second-order moment)",
    "m4": "TDPSD: log of m0 - m4 (fourth-order moment)",
    "sparsi": "TDPSD: sparseness, log sqrt(|(m0-m2)(m0-m4)|)/m0",
    "irf": "TDPSD: irregularity factor, log m2/sqrt(m0 m4)",
    "wlf": "TDPSD: waveform-length factor, log sqrt(sum|x'|/sum|x''|)",
}

FEATURES: dict[str, Feature] = {
    f.name: f
    for f in (
        Feature("env_mean", "envelope", env_mean, "mean of the smoothed envelope", _identity, 0, _mean),
        Feature("env_last", "envelope", env_last, "envelope at the window's last sample"),
        Feature("mav", "filtered", mav, "mean absolute value", _abs, 0, _mean, source="LibEMG MAV"),
        Feature("rms", "filtered", rms, "root mean square", _square, 0, _root_mean, source="LibEMG RMS"),
        Feature(
            "wl", "filtered", wl, "waveform length: sum of |x[i+1] - x[i]|", _abs_diff, 1, _total, source="LibEMG WL"
        ),
        Feature(
            "zc",
            "filtered",
            zc,
            "zero crossings (amplitude step >= threshold)",
            _zc_term,
            1,
            _total,
            source="LibEMG ZC",
        ),
        Feature(
            "ssc",
            "filtered",
            ssc,
            "slope sign changes (product > threshold)",
            _ssc_term,
            2,
            _total,
            source="LibEMG SSC",
        ),
        # LS4
        _windowed("ls", ls, "L-score: second L-moment of the window's samples", "LibEMG LS"),
        _simple("mfl", mfl, "maximum fractal length: log10 of the waveform length", _abs_diff, 1, _mfl, "LibEMG MFL"),
        _combined("msr", MSR_SUMS, _msr, "mean square ratio: |mean of complex sqrt(x)|", "LibEMG MSR"),
        _combined(
            "wamp", WAMP_SUMS, _first, "Willison amplitude: steps |x[i+1] - x[i]| > wamp_threshold", "LibEMG WAMP"
        ),
        # TDPSD
        *(_combined(name, TDPSD_SUMS, _tdpsd(name), _TDPSD_DOCS[name], f"LibEMG {name.upper()}") for name in TDPSD),
        # Hjorth
        _combined("act", HJORTH_SUMS[:1], lambda s, n, p: s[0] / n, "Hjorth activity: mean of x²", "LibEMG ACT"),
        _combined("mob", HJORTH_SUMS[:2], _mobility, "Hjorth mobility: sqrt(sum x'² / sum x²)", "LibEMG MOB"),
        _combined(
            "comp",
            HJORTH_SUMS,
            _complexity,
            "Hjorth complexity: mobility of x' over mobility of x",
            "Hjorth 1970 (LibEMG COMP divided by MOB)",
        ),
        # AR, spectrum
        _windowed("ar", ar, f"Burg AR coefficients a1..a{AR_ORDER}", "LibEMG AR (librosa.lpc)", width=AR_ORDER),
        _windowed("mnf", mnf, "mean frequency of the window's power spectrum (Hz)", "LibEMG MNF"),
        _windowed("mdf", mdf, "median frequency of the window's power spectrum (Hz)", "LibEMG MDF"),
        # log amplitudes, channel shares
        _simple("log_mav", lambda w, p: _floored_log(mav(w, p)), "natural log of MAV", _abs, 0, _log_mav, "ours"),
        _simple("log_rms", lambda w, p: _floored_log(rms(w, p)), "natural log of RMS", _square, 0, _log_rms, "ours"),
        _combined("mav_share", (Sum(_abs),), _share, "channel's MAV over the sum of every channel's MAV", "ours", True),
    )
}


def num_columns(features: tuple[str, ...], num_channels: int) -> int:
    """Columns of :func:`compute_features`'s matrix: every feature's width times the channels."""
    return sum(FEATURES[name].width for name in features) * num_channels


def feature_names(features: tuple[str, ...] | PreprocessConfig, num_channels: int) -> list[str]:
    """Column names in the order the features fill them: feature-major, then channel.

    A feature with one value per channel is ``f_<feature>_c<channel>``; one with ``width`` values per
    channel (AR) is ``f_<feature>_k<value>_c<channel>`` (value from 1: ``f_ar_k1_c00`` is channel 0's
    first AR coefficient), value-major, then channel.

    Given a :class:`PreprocessConfig`, the names of a window stream's whole row: the main window's
    columns, then each extra window length's (suffix ``_w<i>``, ``i`` from 1 in the order of
    ``window.extra_lengths``), then the same for each earlier window of the temporal context (suffix
    ``_p<j>``: ``j`` strides before; ``f_mav_c00_w1_p2`` is channel 0's MAV over the first extra length,
    two windows back).
    """
    if not isinstance(features, (tuple, list)):
        config = features
        base = feature_names(config.features, num_channels)
        row = base + [f"{name}_w{i}" for i in range(1, len(config.window.extra_lengths) + 1) for name in base]
        return row + [f"{name}_p{j}" for j in range(1, config.context + 1) for name in row]
    names = []
    for name in features:
        width = FEATURES[name].width
        for k in range(width):
            value = f"_k{k + 1}" if width > 1 else ""
            names += [f"f_{name}{value}_c{c:02d}" for c in range(num_channels)]
    return names


def compute_features(
    windows: dict[Signal, np.ndarray], features: tuple[str, ...], threshold: float | FeatureParams = 0.0
) -> np.ndarray:
    """``(n_windows, num_columns)`` float32 matrix from windows of each signal (the per-window definition).

    ``threshold``: the :class:`FeatureParams`, or a float for the ZC/SSC threshold alone.
    """
    p = FeatureParams.of(threshold)
    columns = [FEATURES[name].fn(windows[FEATURES[name].signal], p) for name in features]
    return np.concatenate(columns, axis=1).astype(np.float32, copy=False)


def window_sums(x: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """``x[s : s + length].sum(axis=0)`` for every start, evenly spaced, in O(n) (``(n_windows, C)``).

    Samples are summed in blocks of ``gcd(length, stride)`` (vectorised), and windows from a prefix
    sum over blocks, so the cost does not grow with the windows' overlap.
    """
    step = int(starts[1] - starts[0]) if len(starts) > 1 else length
    block = math.gcd(length, step)
    base = int(starts[0])
    n_blocks = (int(starts[-1]) - base + length) // block
    part = x[base : base + n_blocks * block]
    if part.flags.f_contiguous:  # channel-major memory (the filter's output): reduce along rows of x.T
        sums = part.T.reshape(x.shape[1], n_blocks, block).sum(axis=2, dtype=np.float64).T
    else:
        sums = part.reshape(n_blocks, block, x.shape[1]).sum(axis=1, dtype=np.float64)
    prefix = np.zeros((n_blocks + 1, x.shape[1]))
    np.cumsum(sums, axis=0, out=prefix[1:])
    first = (starts - base) // block
    return prefix[first + length // block] - prefix[first]


def block_window_sums(terms: np.ndarray, starts: np.ndarray, count: int) -> np.ndarray:
    """``terms[s : s + count].sum(axis=0)`` for every start, evenly spaced, from the sums of blocks of
    ``gcd(count, stride)`` terms, added per window (``(n_windows, C)``, float64).

    Unlike :func:`window_sums`, no running prefix sum is differenced, so a small window sum next to
    large terms elsewhere keeps its precision (TDPSD's log-power terms: ``log(x² + eps)`` reaches -36
    where x is near zero, and TDPSD raises small sums to the power 0.05). The cost is the windows'
    count times their blocks, at most the overlap times one pass over the samples.
    """
    step = int(starts[1] - starts[0]) if len(starts) > 1 else count
    block = math.gcd(count, step)
    base = int(starts[0])
    n_blocks = (int(starts[-1]) - base + count) // block
    channels = terms.shape[1]
    sums = terms[base : base + n_blocks * block].reshape(n_blocks, block, channels).sum(axis=1, dtype=np.float64)
    view = sliding_window_view(sums, count // block, axis=0)  # (n_blocks - k + 1, C, k), no copy
    first = (starts - base) // block
    batch = max(1, PER_WINDOW_BATCH // max(1, channels * (count // block)))
    return np.concatenate([view[first[i : i + batch]].sum(axis=-1) for i in range(0, len(first), batch)], axis=0)


class _StreamSums:
    """Window sums of per-sample terms over one call's signals, each (signal, term, span, log_power)
    computed once: the term once per sample, the windows' sums from prefix sums (log-power terms: from
    block sums, :func:`block_window_sums`)."""

    def __init__(self, signals: dict[Signal, np.ndarray], starts: np.ndarray, length: int, p: FeatureParams):
        self.signals, self.starts, self.length, self.p = signals, starts, length, p
        self.ends = starts + length - 1
        self._logs: dict[str, np.ndarray] = {}
        self._sums: dict[tuple, np.ndarray] = {}

    def get(self, signal: Signal, s: Sum) -> np.ndarray:
        key = (signal, s.term, s.span, s.log_power)
        if key not in self._sums:
            self._sums[key] = self._compute(signal, s)
        return self._sums[key]

    def _compute(self, signal: Signal, s: Sum) -> np.ndarray:
        x = self.signals[signal]
        if self.length <= s.span:  # no term fits in the window: the sum is exactly 0, not a rounding residue
            return np.zeros((len(self.starts), x.shape[1]))
        if s.log_power:
            if signal not in self._logs:
                self._logs[signal] = log_power(x)
            return block_window_sums(s.term(self._logs[signal], self.p), self.starts, self.length - s.span)
        terms = np.zeros_like(x)  # same memory order as the signal
        if len(x) > s.span:
            terms[: len(x) - s.span] = s.term(x, self.p)
        # A window's terms are start .. end - span (term i covers samples i .. i + span): the sum over the
        # length padded terms start .. end minus the span terms that reach past the window.
        total = window_sums(terms, self.starts, self.length)
        for j in range(min(s.span, self.length)):
            total -= terms[self.ends - j]
        return total


def _per_window(feature: Feature, x: np.ndarray, starts: np.ndarray, length: int, p: FeatureParams) -> np.ndarray:
    """``feature.fn`` on each window of ``x`` at ``starts``, in batches of at most :data:`PER_WINDOW_BATCH`
    samples (the strided view is copied one batch at a time)."""
    view = sliding_window_view(x, length, axis=0)  # (n - length + 1, C, length), no copy
    batch = max(1, PER_WINDOW_BATCH // max(1, x.shape[1] * length))
    parts = [feature.fn(view[starts[i : i + batch]], p) for i in range(0, len(starts), batch)]
    return np.concatenate(parts, axis=0)


def compute_stream_features(
    signals: dict[Signal, np.ndarray],
    starts: np.ndarray,
    length: int,
    features: tuple[str, ...],
    threshold: float | FeatureParams = 0.0,
) -> np.ndarray:
    """The same matrix as :func:`compute_features`, from whole ``(n, C)`` signals and window starts.

    ``starts`` must be evenly spaced (one stride). Summed features take each term once per sample and
    every window's sums from prefix sums; ``per_window`` features run their window function on a strided
    view; ``env_last`` is read at the last sample. ``threshold``: as in :func:`compute_features`.
    """
    p = FeatureParams.of(threshold)
    sums = _StreamSums(signals, starts, length, p)
    columns = []
    for name in features:
        feature = FEATURES[name]
        x = signals[feature.signal]
        if feature.per_window:
            columns.append(_per_window(feature, x, starts, length, p))
        elif feature.combine is not None:
            columns.append(feature.combine([sums.get(feature.signal, s) for s in feature.sums], length, p))
        elif feature.term is not None:
            total = sums.get(feature.signal, Sum(feature.term, feature.span))
            columns.append(feature.finish(total, length))
        else:
            columns.append(feature.fn(x[sums.ends][:, :, None], p))
    return np.concatenate(columns, axis=1).astype(np.float32, copy=False)
