"""Preprocessing configuration: the plan's chain, every step configurable (YAML or JSON file)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from emgpose.errors import InvalidInput

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|samples?)?\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def to_samples(value: int | str, sample_rate: float, what: str) -> int:
    """``400`` -> 400 samples; ``"200ms"``/``"0.2s"`` -> converted at ``sample_rate``."""
    if isinstance(value, int):
        samples = value
    else:
        match = _DURATION.match(value)
        if not match:
            raise InvalidInput(f"{what}: expected samples (int) or a duration like '200ms', got {value!r}")
        number, unit = float(match.group(1)), match.group(2) or "samples"
        scale = {"ms": sample_rate / 1000.0, "s": sample_rate}.get(unit, 1.0)
        samples = round(number * scale)
    if samples < 1:
        raise InvalidInput(f"{what}: {value!r} is less than one sample at {sample_rate:g} Hz")
    return samples


class BandpassConfig(_Strict):
    enabled: bool = True
    low_hz: float = Field(20.0, gt=0)
    high_hz: float = Field(450.0, gt=0)
    order: int = Field(4, ge=1, le=10)

    @model_validator(mode="after")
    def _ordered(self) -> BandpassConfig:
        if self.low_hz >= self.high_hz:
            raise ValueError(f"low_hz ({self.low_hz}) must be below high_hz ({self.high_hz})")
        return self


class NotchConfig(_Strict):
    enabled: bool = False
    freq_hz: float = Field(50.0, gt=0)
    quality: float = Field(30.0, gt=0)


class WindowConfig(_Strict):
    """Window length and stride; ``extra_lengths``: more windows ending at the same sample (multi-scale
    features: e.g. ``[800ms]`` beside a 200 ms window), their features appended after the main ones."""

    length: int | str = "200ms"
    stride: int | str = "50ms"
    extra_lengths: tuple[int | str, ...] = Field(default=(), max_length=4)

    @field_validator("extra_lengths")
    @classmethod
    def _distinct(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"extra window lengths must differ from each other, got {list(value)}")
        return value

    def samples(self, sample_rate: float) -> tuple[int, int]:
        return (
            to_samples(self.length, sample_rate, "window.length"),
            to_samples(self.stride, sample_rate, "window.stride"),
        )

    def lengths(self, sample_rate: float) -> tuple[int, ...]:
        """The main length, then each extra length, in samples; refused when two are equal at this rate."""
        lengths = (self.samples(sample_rate)[0],)
        for i, value in enumerate(self.extra_lengths):
            samples = to_samples(value, sample_rate, f"window.extra_lengths[{i}]")
            if samples in lengths:
                raise InvalidInput(
                    f"window.extra_lengths[{i}]: {value!r} is {samples} samples at {sample_rate:g} Hz, a length "
                    f"the window already has ({list(lengths)}); give distinct lengths"
                )
            lengths += (samples,)
        return lengths


class OutputConfig(_Strict):
    csv: bool = False  # also write per-session CSV tables, as the plan's users had


class PreprocessConfig(_Strict):
    """Defaults are the plan's: 20-450 Hz Butterworth(4), rectify, 50-sample mean, z-score, 200/50 ms."""

    bandpass: BandpassConfig = BandpassConfig()
    notch: NotchConfig = NotchConfig()
    rectify: bool = True
    moving_average: int = Field(50, ge=1, description="envelope smoothing, samples")
    zscore: bool = True
    window: WindowConfig = WindowConfig()
    features: tuple[str, ...] = ("env_mean", "mav", "rms", "wl", "zc", "ssc")
    zc_threshold: float = Field(0.0, ge=0, description="ZC/SSC threshold, in z-scored units")
    wamp_threshold: float = Field(
        0.1, ge=0, description="WAMP: steps |x[i+1] - x[i]| above this count, in z-scored units"
    )
    context: int = Field(
        0, ge=0, le=16, description="append the features of this many earlier windows of the stream (temporal context)"
    )
    ik_failure_tol: float = Field(
        1e-6, ge=0, description="|angle| below this on every joint = IK failure (two joints or more only)"
    )
    max_invalid_emg_fraction: float = Field(0.05, ge=0, le=1)
    preroll_ms: float = Field(500.0, ge=0, description="filter warm-up read before a time range")
    chunk_samples: int = Field(65536, ge=1024)
    output: OutputConfig = OutputConfig()

    @field_validator("features")
    @classmethod
    def _known_features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from emgpose.preprocess.features import FEATURES

        unknown = [name for name in value if name not in FEATURES]
        if unknown or not value:
            raise ValueError(f"unknown features {unknown}; choose from {sorted(FEATURES)}")
        return value

    def span_samples(self, sample_rate: float) -> int:
        """Samples one row of features reads, ending at its last sample: the longest window length plus
        ``context`` strides (the window length when there are no extra lengths and no context)."""
        stride = self.window.samples(sample_rate)[1]
        return max(self.window.lengths(sample_rate)) + self.context * stride

    @classmethod
    def load(cls, path: str | Path | None) -> PreprocessConfig:
        """Reads a YAML/JSON config file; ``None`` gives the defaults."""
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            raise InvalidInput(f"{path}: config file does not exist")
        text = path.read_text()
        try:
            data: Any = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as exc:
            raise InvalidInput(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
        if data is not None and not isinstance(data, dict):
            raise InvalidInput(f"{path}: expected a mapping of settings at the top level")
        return cls.from_dict(data or {}, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> PreprocessConfig:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()
            )
            raise InvalidInput(f"{source}: {problems}") from None
