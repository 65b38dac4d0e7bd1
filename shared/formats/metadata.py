"""``metadata.csv``: one row per session file of a dataset (emg2pose columns)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from emgpose.errors import DataFormatError

METADATA_FILE = "metadata.csv"
SPLITS = ("train", "val", "test")
GENERALIZATIONS = ("", "user", "stage", "user_stage")


@dataclass(frozen=True)
class MetadataRow:
    """One session file. ``start``/``end`` (unix seconds, NaN = open) cut the session in time."""

    filename: str
    split: str = "train"
    user: str = ""
    session: str = ""
    stage: str = ""
    side: str = ""
    moving_hand: str = ""
    held_out_user: bool = False
    held_out_stage: bool = False
    generalization: str = ""
    start: float = math.nan
    end: float = math.nan

    @property
    def file(self) -> str:
        """The session's file name inside the dataset folder."""
        return f"{self.filename}.hdf5"


COLUMNS = tuple(f.name for f in fields(MetadataRow))
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}


def _parse_float(text: str, where: str) -> float:
    if text.strip() == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(f"{where}: expected a number, got {text!r}") from None


def read_metadata(text: str, source: str = METADATA_FILE) -> list[MetadataRow]:
    """Parses and validates ``metadata.csv`` content; errors name the source, row and column."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if "filename" not in header:
        raise DataFormatError(f"{source}: required column 'filename' is missing (has {header})")
    rows: list[MetadataRow] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, start=2):
        where = f"{source} line {line}"
        name = (raw.get("filename") or "").strip()
        if not name:
            raise DataFormatError(f"{where}: column 'filename' is empty")
        if name.endswith(".hdf5"):
            name = name[: -len(".hdf5")]
        if name in seen:
            raise DataFormatError(f"{where}: filename {name!r} appears twice")
        seen.add(name)
        split = (raw.get("split") or "train").strip()
        if split not in SPLITS:
            raise DataFormatError(f"{where}: column 'split' must be one of {SPLITS}, got {split!r}")
        gen = (raw.get("generalization") or "").strip()
        if gen not in GENERALIZATIONS:
            raise DataFormatError(
                f"{where}: column 'generalization' must be one of {GENERALIZATIONS[1:]} or empty, got {gen!r}"
            )
        flags = {}
        for col in ("held_out_user", "held_out_stage"):
            value = (raw.get(col) or "").strip().lower()
            if value not in _BOOLS:
                raise DataFormatError(f"{where}: column {col!r} must be true/false, got {value!r}")
            flags[col] = _BOOLS[value]
        start = _parse_float(raw.get("start") or "", f"{where} column 'start'")
        end = _parse_float(raw.get("end") or "", f"{where} column 'end'")
        if not math.isnan(start) and not math.isnan(end) and end <= start:
            raise DataFormatError(f"{where}: 'end' ({end}) must be after 'start' ({start})")
        rows.append(
            MetadataRow(
                filename=name,
                split=split,
                generalization=gen,
                start=start,
                end=end,
                **flags,
                **{k: (raw.get(k) or "").strip() for k in ("user", "session", "stage", "side", "moving_hand")},
            )
        )
    if not rows:
        raise DataFormatError(f"{source}: no sessions listed")
    return rows


def write_metadata(rows: Iterable[MetadataRow]) -> str:
    """``metadata.csv`` text for ``rows`` (NaN times written as empty cells)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        record = asdict(row)
        for key in ("start", "end"):
            record[key] = "" if math.isnan(record[key]) else repr(record[key])
        for key in ("held_out_user", "held_out_stage"):
            record[key] = "true" if record[key] else "false"
        writer.writerow(record)
    return out.getvalue()
