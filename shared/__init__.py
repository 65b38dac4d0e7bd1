"""emgpose: joint angles from surface EMG (the project's ``shared/`` folder, imported as ``emgpose``).

The notebook API (docs/python-api.md), imported on first use so that ``import emgpose`` stays fast and
loads neither SciPy nor XGBoost::

    data = emgpose.load_dataset("data/synth")            # validated metadata.csv + HDF5 sessions
    processed = emgpose.preprocess(data, out="processed/synth")
    model = emgpose.train(processed, name="hand", store="runs/store", num_rounds=200)
    pred = emgpose.load_model("hand", store="runs/store").predict(emg)   # (samples, channels) -> windows

``EmgPoseRegressor`` and ``EmgPoseClassifier`` (:mod:`emgpose.estimator`) follow scikit-learn's
conventions over raw EMG windows.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# attribute -> the module that defines it (a module itself where the two names are the same)
_LAZY = {
    "load_dataset": "emgpose.toplevel",
    "load_model": "emgpose.toplevel",
    "Model": "emgpose.toplevel",
    "Processed": "emgpose.toplevel",
    "preprocess": "emgpose.preprocess",  # a callable package: emgpose.preprocess(...) is toplevel.preprocess
    "train": "emgpose.train",  # likewise: emgpose.train(...) is toplevel.train
    "EmgPoseRegressor": "emgpose.estimator",
    "EmgPoseClassifier": "emgpose.estimator",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:  # PEP 562: import what the attribute needs, on first use
    if name not in _LAZY:
        raise AttributeError(f"module 'emgpose' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"emgpose.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
