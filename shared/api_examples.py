"""Request examples shared by both services' OpenAPI documents, sized so that they succeed when tried.

One window of the default layout: 400 samples (200 ms at 2 kHz) of 16 channels, a smooth deterministic
signal of about 20 µV-scale values. A model trained on the emg2pose layout with the default window answers it
with exactly one window; tests/test_openapi_examples.py posts every example to the running services.
"""

from __future__ import annotations

import math

EXAMPLE_SAMPLE_RATE = 2000.0
EXAMPLE_SAMPLES = 400
EXAMPLE_CHANNELS = 16


def _value(i: int, c: int) -> float:
    return round(0.02 * math.sin(2 * math.pi * (60 + 7 * c) * i / EXAMPLE_SAMPLE_RATE + c), 4)


EXAMPLE_EMG: list[list[float]] = [[_value(i, c) for c in range(EXAMPLE_CHANNELS)] for i in range(EXAMPLE_SAMPLES)]
