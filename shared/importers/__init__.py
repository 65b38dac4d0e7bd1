"""Importers: real lab recordings -> a dataset folder (session ``.hdf5`` files + ``metadata.csv``).

``IMPORTERS`` maps a format name to its function ``f(sources, out_dir, **options) -> ImportResult``;
the command line (``emgpose import <format> SRC... --out DIR``) lives in :mod:`emgpose.importers.cli`.
"""

from __future__ import annotations

from collections.abc import Callable

from emgpose.importers.base import ImportResult
from emgpose.importers.myo import import_myo
from emgpose.importers.ninapro import import_ninapro
from emgpose.importers.table import import_table
from emgpose.importers.uci import import_uci

IMPORTERS: dict[str, Callable[..., ImportResult]] = {
    "uci": import_uci,
    "myo": import_myo,
    "ninapro": import_ninapro,
    "table": import_table,
}

__all__ = ["IMPORTERS", "ImportResult", "import_myo", "import_ninapro", "import_table", "import_uci"]
