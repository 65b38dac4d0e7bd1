"""The preprocessing chain (CPU reference): band-pass, rectify, smooth, z-score, windows, features."""

from emgpose.preprocess.config import PreprocessConfig
from emgpose.preprocess.features import FEATURES, compute_features, feature_names
from emgpose.preprocess.normalize import NormStats
from emgpose.preprocess.signal import CausalChain, design_sos
from emgpose.preprocess.windows import DROP_REASONS, WindowBatch, WindowStream
from emgpose.toplevel import callable_module, preprocess

__all__ = [
    "DROP_REASONS",
    "FEATURES",
    "CausalChain",
    "NormStats",
    "PreprocessConfig",
    "WindowBatch",
    "WindowStream",
    "compute_features",
    "design_sos",
    "feature_names",
]

# ``emgpose.preprocess(...)`` is the notebook API's preprocessing call (emgpose.toplevel.preprocess).
callable_module(__name__, preprocess)
