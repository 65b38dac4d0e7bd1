"""An independent reference for the window features: LibEMG's own definitions, transcribed.

Written straight from LibEMG 2.0.3 (``libemg/feature_extractor.py``, ``FeatureExtractor.get*feat``;
MIT licence, (c) 2022 Ethan Eddy, Evan Campbell, Angkoon Phinyomark, Scott Bateman, Erik Scheme) and,
for AR, from the Burg recursion of ``librosa.lpc`` 0.11 (``librosa/core/audio.py``, ``__lpc``; ISC
licence), which LibEMG calls. It never imports emgpose, so the golden values it gives are independent of
the code under test. Every function takes LibEMG's ``(n_windows, n_channels, n_samples)`` windows.

Why not LibEMG itself: ``pip install libemg`` (2.0.3) pins ``numpy<2`` (this project runs NumPy 2) and
pulls in GUI and hardware packages (dearpygui, pygame, opencv-python, bleak, pyserial, pythonnet,
mindrove, sifi-bridge-py) and librosa; ``feature_extractor.py`` imports matplotlib, scikit-learn,
librosa and PyWavelets at module level.

Deviations from the transcribed source, each deliberate and named:

- ``comp``: LibEMG 2.0.3's ``getCOMPfeat`` sums ``m4`` over *all* windows and channels (``np.sum``
  without ``axis``) and returns ``sqrt(m4 / m2)``, the mobility of the derivative. The reference sums
  per window (``axis=2``) and divides by ``getMOBfeat``: Hjorth's complexity, mobility(x') / mobility(x),
  which is what emgpose's ``comp`` computes.
- The list/loop structure is kept where LibEMG loops (LS, MDF); AR loops over windows and channels
  calling the Burg recursion on one 1-D signal at a time, as ``librosa.lpc`` does along its axis.
"""

from __future__ import annotations

import math

import numpy as np


def mav(windows):
    return np.mean(np.abs(windows), 2)


def rms(windows):
    return np.sqrt(np.mean(np.square(windows), 2))


def wl(windows):
    return np.sum(np.abs(np.diff(windows, axis=2)), 2)


def zc(windows):
    sgn_change = np.diff(np.sign(windows), axis=2)
    return np.sum(sgn_change == -2, 2) + np.sum(sgn_change == 2, 2)


def ssc(windows, ssc_threshold=0.0):
    w_2 = windows[:, :, 2:]
    w_1 = windows[:, :, 1:-1]
    w_0 = windows[:, :, :-2]
    return np.sum(((w_1 - w_0) * (w_1 - w_2)) >= ssc_threshold, axis=2)


# --- LS4 ---


def _legendre_shift_poly(n):
    pk = np.zeros((n + 1, 1))
    if n == 0:
        pk = 1
    elif n == 1:
        pk[0, 0] = 2
        pk[1, 0] = -1
    else:
        pkm2 = np.zeros(n + 1)
        pkm2[n] = 1
        pkm1 = np.zeros(n + 1)
        pkm1[n] = -1
        pkm1[n - 1] = 2
        for k in range(2, n + 1):
            pk = np.zeros((n + 1, 1))
            for e in range(n - k + 1, n + 1):
                pk[e - 1] = (4 * k - 2) * pkm1[e] + (1 - 2 * k) * pkm1[e - 1] + (1 - k) * pkm2[e - 1]
            pk[n, 0] = (1 - 2 * k) * pkm1[n] + (1 - k) * pkm2[n]
            pk = pk / k
            if k < n:
                pkm2 = pkm1
                pkm1 = pk
    return pk


def _lmom(signal, n_l):
    b = np.zeros((1, n_l - 1))
    l_moments = np.zeros((1, n_l - 1))
    b0 = np.zeros((1, 1))
    b0[0, 0] = np.mean(signal)
    n = signal.shape[1]
    signal = np.sort(signal, axis=1)
    for r in range(1, n_l):
        num = np.tile(np.asarray(range(r + 1, n + 1)), (r, 1)) - np.tile(np.asarray(range(1, r + 1)), (1, n - r))
        num = np.prod(num, axis=0)
        den = np.tile(np.asarray(n), (1, r)) - np.asarray(range(1, r + 1))
        den = np.prod(den)
        b[r - 1] = 1 / n * np.sum(num / den * signal[0, r:n])
    t_b = np.concatenate((b0, b))
    big_b = np.flip(t_b, 0)
    for i in range(1, n_l):
        spc = np.zeros((big_b.shape[0] - (i + 1), 1))
        coeff = np.concatenate((spc, _legendre_shift_poly(i)))
        l_moments[0, i - 1] = np.sum(coeff * big_b)
    return np.concatenate((b0, l_moments), 1)


def ls(windows):
    feat = np.zeros((windows.shape[0], windows.shape[1]))
    for w in range(windows.shape[0]):
        for c in range(windows.shape[1]):
            feat[w, c] = _lmom(np.reshape(windows[w, c, :], (1, windows.shape[2])), 2)[0, 1]
    return feat


def mfl(windows):
    return np.log10(np.sum(np.abs(np.diff(windows, axis=2)), axis=2))


def msr(windows):
    return np.abs(np.mean(np.sqrt(windows.astype("complex")), axis=2))


def wamp(windows, wamp_threshold=2e-3):
    return np.sum(np.abs(np.diff(windows, axis=2)) > wamp_threshold, axis=2)


# --- TDPSD ---


def _ratio(closure, windows):
    ebp = closure(windows)
    efp = closure(np.log(windows**2 + np.spacing(1)))
    return -2 * np.multiply(efp, ebp) / (np.multiply(efp, efp) + np.multiply(ebp, ebp))


def _moments(w):
    m0 = np.sqrt(np.sum(w**2, axis=2)) / (w.shape[2] - 1)
    m0 = m0**0.1 / 0.1
    d1 = np.diff(w, n=1, axis=2)
    m2 = np.sqrt(np.sum(d1**2, axis=2) / (w.shape[2] - 1))
    m2 = m2**0.1 / 0.1
    d2 = np.diff(d1, n=1, axis=2)
    m4 = np.sqrt(np.sum(d2**2, axis=2) / (w.shape[2] - 1))
    m4 = m4**0.1 / 0.1
    return m0, m2, m4


def m0(windows):
    return _ratio(lambda w: np.log(np.abs(_moments(w)[0])), windows)


def m2(windows):
    def closure(w):
        a, b, _ = _moments(w)
        return np.log(np.abs(a - b))

    return _ratio(closure, windows)


def m4(windows):
    def closure(w):
        a, _, c = _moments(w)
        return np.log(np.abs(a - c))

    return _ratio(closure, windows)


def sparsi(windows):
    def closure(w):
        a, b, c = _moments(w)
        return np.log(np.abs(np.sqrt(np.abs((a - b) * (a - c))) / a))

    return _ratio(closure, windows)


def irf(windows):
    def closure(w):
        a, b, c = _moments(w)
        return np.log(np.abs(b / np.sqrt(a * c)))

    return _ratio(closure, windows)


def wlf(windows):
    def closure(w):
        d1 = np.diff(w, n=1, axis=2)
        d2 = np.diff(d1, n=1, axis=2)
        return np.log(np.abs(np.sqrt(np.sum(np.abs(d1), axis=2) / np.sum(np.abs(d2), axis=2))))

    return _ratio(closure, windows)


# --- Hjorth ---


def act(windows):
    return np.mean(windows**2, axis=2)


def mob(windows):
    m0_ = act(windows)
    m2_ = np.sum(np.diff(windows, axis=2) ** 2, axis=2) / windows.shape[2]
    return np.sqrt(m2_ / m0_)


def comp(windows):
    """Hjorth's complexity; LibEMG's COMP with m4 summed per window, divided by MOB (see the docstring)."""
    m2_ = np.sum(np.diff(windows, axis=2) ** 2, axis=2) / windows.shape[2]
    m4_ = np.sum(np.diff(np.diff(windows, axis=2), axis=2) ** 2, axis=2) / windows.shape[2]
    return np.sqrt(m4_ / m2_) / mob(windows)


# --- AR: librosa.lpc's Burg recursion on one signal ---


def _lpc(y, order):
    """``librosa.lpc(y, order=order)`` for a 1-D float64 signal: ``[1, a1, ..., a_order]``."""
    ar_coeffs = np.zeros(order + 1)
    ar_coeffs[0] = 1
    ar_coeffs_prev = ar_coeffs.copy()
    reflect_coeff = np.zeros(1)
    den = np.zeros(1)
    epsilon = np.finfo(np.float64).tiny
    fwd_pred_error = y[1:]
    bwd_pred_error = y[:-1]
    den[0] = np.sum(fwd_pred_error**2 + bwd_pred_error**2)
    for i in range(order):
        reflect_coeff[0] = np.sum(bwd_pred_error * fwd_pred_error)
        reflect_coeff[0] *= -2
        reflect_coeff[0] /= den[0] + epsilon
        ar_coeffs_prev, ar_coeffs = ar_coeffs, ar_coeffs_prev
        for j in range(1, i + 2):
            ar_coeffs[j] = ar_coeffs_prev[j] + reflect_coeff[0] * ar_coeffs_prev[i - j + 1]
        fwd_pred_error_tmp = fwd_pred_error
        fwd_pred_error = fwd_pred_error + reflect_coeff * bwd_pred_error
        bwd_pred_error = bwd_pred_error + reflect_coeff * fwd_pred_error_tmp
        q = 1.0 - reflect_coeff[0] ** 2
        den[0] = q * den[0] - bwd_pred_error[-1] ** 2 - fwd_pred_error[0] ** 2
        fwd_pred_error = fwd_pred_error[1:]
        bwd_pred_error = bwd_pred_error[:-1]
    return ar_coeffs


def ar(windows, ar_order=4):
    """LibEMG's getARfeat: ``lpc(windows, order, axis=2)[:, :, 1:]`` reshaped to ``(n_windows, order * C)``
    in C order, i.e. channel-major: ``[c0 a1..a4, c1 a1..a4, ...]`` (emgpose orders them value-major)."""
    coeffs = np.zeros((windows.shape[0], windows.shape[1], ar_order + 1))
    for w in range(windows.shape[0]):
        for c in range(windows.shape[1]):
            coeffs[w, c] = _lpc(np.asarray(windows[w, c], dtype=np.float64), ar_order)
    return np.reshape(coeffs[:, :, 1:], (windows.shape[0], ar_order * windows.shape[1]), order="C")


# --- spectrum ---


def _nextpow2(winsize):
    return 1 if winsize == 0 else 2 ** math.ceil(math.log2(winsize))


def mdf(windows, mdf_fs=1000):
    nextpow2 = _nextpow2(windows.shape[2])
    spec = np.fft.fft(windows, nextpow2, axis=2) / windows.shape[2]
    spec = spec[:, :, 0 : int(nextpow2 / 2)]
    power = np.real(spec * np.conj(spec))
    total = np.sum(power, axis=2)
    cumulative = np.cumsum(power, axis=2)
    medfreq = np.zeros((windows.shape[0], windows.shape[1]))
    for i in range(windows.shape[0]):
        for j in range(windows.shape[1]):
            medfreq[i, j] = (mdf_fs / 2) * np.argwhere(cumulative[i, j, :] > total[i, j] / 2)[0][0] / (nextpow2 / 2)
    return medfreq


def mnf(windows, mnf_fs=1000):
    nextpow2 = _nextpow2(windows.shape[2])
    spec = np.fft.fft(windows, n=nextpow2, axis=2) / windows.shape[2]
    f = np.fft.fftfreq(nextpow2) * mnf_fs
    spec = spec[:, :, 0 : int(round(spec.shape[2] / 2))]
    f = f[0 : int(round(nextpow2 / 2))]
    f = np.repeat(f[np.newaxis, :], spec.shape[0], axis=0)
    f = np.repeat(f[:, np.newaxis, :], spec.shape[1], axis=1)
    power = spec * np.conj(spec)
    return np.real(np.sum(power * f, axis=2) / np.sum(power, axis=2))
