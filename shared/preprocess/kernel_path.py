"""The preprocessing chain on our CUDA kernels: the twin of :class:`CausalChain` and :class:`WindowStream`.

Same inputs, same outputs, same chunk-by-chunk state: the band-pass (``sosfilt.cu``) carries its filter
state, the fused rectify + moving average + z-score (``envelope.cu``) its history, and the window features
(``features.cu``) are computed on the device from the z-scored signals with one pass over per-sample
terms. Only the EMG chunk goes to the device and only the feature matrix comes back; masks (invalid EMG,
IK failures) and targets stay on the host, where the CPU path already computes them cheaply. Features
the kernels do not compute (declared CPU-only in the registry, ``Feature.gpu = False``) are computed on
the host from the same z-scored signals, copied back once per chunk, and the matrix is assembled in the
configuration's column order.

``xp`` is CuPy for the device, or NumPy for the host emulation of the same ``.cu`` sources (device
``emulate``: for tests and for debugging the kernel path without a GPU; slow).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

import numpy as np
from scipy import signal

from emgpose.errors import InvalidInput
from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import FEATURES, compute_stream_features
from emgpose.preprocess.normalize import NormStats, RunningStats
from emgpose.preprocess.signal import design_sos, finite_emg
from emgpose.preprocess.windows import WindowStream

Device = Literal["cpu", "cuda", "emulate"]
DEVICE_CHUNK = 1 << 21  # samples per chunk on a GPU: 2M x 16 channels x 8 bytes = 256 MiB in flight


def array_module(device: Device) -> ModuleType:
    """The array module of a kernel device: CuPy for ``cuda``, NumPy (host emulation) for ``emulate``."""
    if device == "cuda":
        import cupy  # noqa: PLC0415 - only GPU images install CuPy

        return cupy
    if device == "emulate":
        return np
    raise ValueError(f"the kernel path runs on 'cuda' or 'emulate', not {device!r}")


def chunk_samples(config: PreprocessConfig, device: str) -> int:
    """Samples read per chunk: larger on a GPU, where a launch per 64k samples would leave it idle."""
    return max(config.chunk_samples, DEVICE_CHUNK) if device == "cuda" else config.chunk_samples


def to_host(array: Any) -> np.ndarray:
    return array.get() if hasattr(array, "get") else np.asarray(array)


@dataclass
class KernelOutput:
    filtered: Any  # band-passed EMG on the device, float64 (n, C)
    envelope: Any  # rectified, smoothed and z-scored with the chain's envelope statistics, float64 (n, C)
    invalid: np.ndarray  # host (n,) bool: a channel was NaN/inf at this sample


class KernelChain:
    """:class:`~emgpose.preprocess.signal.CausalChain` on the kernels, with the envelope's z-score fused.

    ``envelope_stats`` (mean, std per channel) scales the envelope inside the envelope kernel; ``None``
    leaves it unscaled (the statistics pass, which computes them).
    """

    def __init__(
        self,
        config: PreprocessConfig,
        sample_rate: float,
        num_channels: int,
        xp: ModuleType,
        source: str = "",
        envelope_stats: tuple[list[float], list[float]] | None = None,
    ) -> None:
        if num_channels < 1:
            raise InvalidInput(f"{source}: need at least one EMG channel, got {num_channels}")
        self.config, self.num_channels, self.xp = config, num_channels, xp
        self.sos = design_sos(config, sample_rate, source)
        self._zi: Any = None
        self._history = xp.zeros((config.moving_average - 1, num_channels), dtype=np.float64)
        mean, std = envelope_stats or ([0.0] * num_channels, [1.0] * num_channels)
        self._mean, self._std = xp.asarray(mean, dtype=np.float64), xp.asarray(std, dtype=np.float64)

    def process(self, emg: np.ndarray) -> KernelOutput:
        from emgpose_kernels.envelope import envelope  # noqa: PLC0415 - the kernels load on first use
        from emgpose_kernels.sosfilt import sosfilt  # noqa: PLC0415

        x, invalid = finite_emg(emg, self.num_channels)
        y = self.xp.asarray(x)
        if self.sos is not None and len(x):
            if self._zi is None:  # steady state for the first sample's level, as the CPU chain starts
                self._zi = self.xp.asarray(signal.sosfilt_zi(self.sos)[:, :, None] * x[0][None, None, :])
            y, self._zi = sosfilt(self.sos, y, self._zi)  # sos on the host: the scan's powers are made there
        env, self._history = envelope(
            y, self._history, self._mean, self._std, self.config.moving_average, self.config.rectify
        )
        return KernelOutput(filtered=y, envelope=env, invalid=invalid)


class KernelWindowStream(WindowStream):
    """:class:`WindowStream` with the chain and the features on the kernels; the batches are the same."""

    def __init__(
        self,
        config: PreprocessConfig,
        sample_rate: float,
        num_channels: int,
        stats: NormStats,
        *,
        xp: ModuleType,
        num_targets: int = 0,
        with_label: bool = False,
        source: str = "",
    ) -> None:
        self.xp = xp
        super().__init__(
            config, sample_rate, num_channels, stats, num_targets=num_targets, with_label=with_label, source=source
        )
        self.chain = KernelChain(
            config, sample_rate, num_channels, xp, source, (stats.envelope_mean, stats.envelope_std)
        )
        # The filtered signal is z-scored in float32 exactly as NormStats.scale_filtered does on the CPU.
        self._filtered_mean = xp.asarray(stats.filtered_mean, dtype=np.float32)
        self._filtered_scale = 1.0 / xp.asarray(stats.filtered_std, dtype=np.float32)

    def _scaled_signals(self, emg: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        out = self.chain.process(emg)
        signals = {}
        if "filtered" in self._signals:
            filtered = out.filtered.astype(np.float32)
            filtered -= self._filtered_mean
            filtered *= self._filtered_scale
            signals["filtered"] = filtered
        if "envelope" in self._signals:
            signals["envelope"] = out.envelope.astype(np.float32)
        return signals, out.invalid

    def _features(self, joined: dict[str, Any], starts: np.ndarray, length: int) -> np.ndarray:
        """The kernel features on the device, the CPU-only ones on the host (from the joined signals,
        copied back once per call), assembled in the configuration's column order."""
        from emgpose_kernels.features import window_features  # noqa: PLC0415

        names = self.config.features
        on_device = tuple(dict.fromkeys(name for name in names if FEATURES[name].gpu))
        on_host = tuple(dict.fromkeys(name for name in names if not FEATURES[name].gpu))
        blocks: dict[str, np.ndarray] = {}
        channels = self.num_channels
        if on_device:
            stride = int(starts[1] - starts[0]) if len(starts) > 1 else self.stride
            matrix = to_host(
                window_features(
                    joined, int(starts[0]), stride, len(starts), length, on_device, self.config.zc_threshold
                )
            )
            blocks.update((name, matrix[:, i * channels : (i + 1) * channels]) for i, name in enumerate(on_device))
        if on_host:
            host = {s: to_host(joined[s]) for s in {FEATURES[name].signal for name in on_host}}
            matrix = compute_stream_features(host, starts, length, on_host, self.params)
            column = 0
            for name in on_host:
                width = FEATURES[name].width * channels
                blocks[name] = matrix[:, column : column + width]
                column += width
        return np.concatenate([blocks[name] for name in names], axis=1)


def add_rows(acc: RunningStats, x: Any, rows: np.ndarray) -> None:
    """``acc.update(x, rows)`` on the kernel path: the column sums come from ``colstats.cu``.

    The rows are shifted by the first selected row before summing (the shifted-data form of the
    variance), so the sum of squares does not cancel catastrophically for a signal far from zero.
    Only ``2 x C`` numbers come back to the host.
    """
    from emgpose_kernels.colstats import colstats  # noqa: PLC0415
    from emgpose_kernels.launch import array_module as module_of  # noqa: PLC0415

    selected = x if rows.all() else x[module_of(x).asarray(rows)]
    n = int(selected.shape[0])
    if n == 0:
        return
    shift = selected[0].copy()
    sums, squares = (to_host(a) for a in colstats(selected - shift))
    batch = RunningStats(x.shape[1])
    batch.count[:] = n
    batch.mean = to_host(shift) + sums / n
    batch.m2 = np.maximum(squares - sums * sums / n, 0.0)
    acc.merge(batch)
