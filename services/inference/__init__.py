"""The inference service: serves the ``latest`` model bundle over REST, the Open Inference Protocol and a
WebSocket stream, and hot-swaps new versions (see README.md in this folder)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("emgpose")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
