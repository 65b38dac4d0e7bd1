"""Importers: real lab recordings -> a dataset folder (session ``.hdf5`` files + ``metadata.csv``).

``IMPORTERS`` maps a format name to its function ``f(sources, out_dir, **options) -> ImportResult``;
the command line (``emgpose import <format> SRC... --out DIR``) lives in :mod:`emgpose.importers.cli`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emgpose.importers.base import ImportResult
    from emgpose.importers.myo import import_myo
    from emgpose.importers.ninapro import import_ninapro
    from emgpose.importers.table import import_table
    from emgpose.importers.uci import import_uci

# Loaded on first use (PEP 562): the importers pull in SciPy, pyarrow and h5py, and `emgpose --help`
# reaches this package through emgpose.importers.cli (the quick CLI of issue 16).
_WHERE = {
    "ImportResult": "base",
    "import_myo": "myo",
    "import_ninapro": "ninapro",
    "import_table": "table",
    "import_uci": "uci",
}


def __getattr__(name: str) -> Any:
    if name == "IMPORTERS":
        importers: dict[str, Callable[..., ImportResult]] = {
            fmt: __getattr__(f"import_{fmt}") for fmt in ("uci", "myo", "ninapro", "table")
        }
        globals()["IMPORTERS"] = importers
        return importers
    if name in _WHERE:
        value = getattr(importlib.import_module(f"emgpose.importers.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["IMPORTERS", "ImportResult", "import_myo", "import_ninapro", "import_table", "import_uci"]
