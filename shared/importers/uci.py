"""UCI "EMG dataset in Lower Limb" (Sanchez & Sotelo): ``<subject><A|N><mar|pie|sen>.txt`` -> sessions.

Each file starts with a text header, one line per column::

    Channel 4: 'Recto Femoral', 43665 values, engineering units: mV, no filters.
    ...
    Channel 8: 'Flexo-Extension', 43665 values, engineering units: deg, no filters.

then a blank line and tab-separated rows at 1000 Hz: the EMG channels (mV) and, last, the knee
flexion-extension angle in degrees (stored as joint ``KNEE_FE`` in radians). A ``.csv`` variant whose
first line names the columns (comma-separated, angle last, in degrees) is read too.

What the real files hold: every file ends with one row of empty cells (dropped, with a note); the
``5N*`` files end with rows whose EMG cells are empty and only the angle is present (EMG becomes NaN
there; preprocessing drops windows that touch NaN) and their angle column was recorded at 50 Hz and
"extrapolated" to 1000 Hz (a note says so). The ``3A*`` and ``5N*`` files differ in the sign convention
and range of the knee angle; the importer stores the values as recorded.

Subject numbers restart in the dataset's A and N groups, yet the brief's rule makes ``user`` the number
alone: a note warns when one import holds the same number under both conditions.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emgpose.errors import DataFormatError, InvalidInput
from emgpose.formats.metadata import MetadataRow
from emgpose.importers.base import (
    DatasetStaging,
    ImportResult,
    PathLike,
    as_paths,
    check_disjoint,
    require_file,
    split_by_membership,
)
from emgpose.importers.conventions import TargetConvention

SAMPLE_RATE = 1000.0
JOINT = "KNEE_FE"
STAGES = {"mar": "walking", "pie": "standing", "sen": "sitting"}
CONDITIONS = {"A": "abnormal", "N": "normal"}
_NAME = re.compile(r"^(\d+)([AN])(mar|pie|sen)$", re.IGNORECASE)
_CHANNEL = re.compile(
    r"^Channel\s+\d+:\s*'(?P<name>[^']*)',\s*(?P<count>\d+)\s+values,\s*engineering units:\s*(?P<unit>[^,]+)"
    r"(?P<rest>.*)$"
)
_EXTRAPOLATED = re.compile(r"extrapolated from (\d+) to (\d+)")
CHUNK_ROWS = 65536


@dataclass
class _Column:
    name: str
    unit: str
    declared: int | None = None
    factor: float = 1.0  # declared values x factor = rows expected (extrapolated columns)


def parse_name(path: Path) -> tuple[str, str, str]:
    """``3Amar.txt -> ("3", "A", "mar")``: subject, condition, activity."""
    match = _NAME.match(path.stem)
    if not match:
        raise DataFormatError(
            f"{path}: file name must be <subject><A|N><mar|pie|sen> (e.g. 3Amar.txt), got {path.name!r}"
        )
    subject, condition, activity = match.groups()
    return subject, condition.upper(), activity.lower()


def _header(path: Path, lines: Iterator[tuple[int, str]]) -> list[_Column]:
    """Reads the header lines (consuming them from ``lines``); returns the columns it names."""
    columns: list[_Column] = []
    for number, line in lines:
        text = line.strip()
        if not text:
            if columns:
                return columns
            continue
        if text.startswith("File Name:"):
            continue
        if text.startswith("Channel"):
            match = _CHANNEL.match(text)
            if not match:
                raise DataFormatError(
                    f"{path} line {number}: channel line must read \"Channel N: 'name', K values, "
                    f'engineering units: U, ..."; got {text!r}'
                )
            extra = _EXTRAPOLATED.search(match["rest"])
            factor = int(extra[2]) / int(extra[1]) if extra else 1.0
            columns.append(_Column(match["name"], match["unit"].strip(), int(match["count"]), factor))
            continue
        if not columns and ("," in text or "\t" in text):  # .csv variant: a row of column names
            names = [c.strip() for c in re.split(r"[,\t]", text)]
            if all(_is_number(c) for c in names):
                raise DataFormatError(
                    f"{path} line {number}: a header (Channel lines or column names) must come before the numbers"
                )
            return [_Column(n, "mV") for n in names[:-1]] + [_Column(names[-1], "deg")]
        raise DataFormatError(
            f"{path} line {number}: unexpected header line {text!r} "
            f"(expected 'File Name:', 'Channel N: ...' or a blank line)"
        )
    raise DataFormatError(f"{path}: header ends without data rows (no blank line after the Channel lines)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_columns(path: Path, columns: list[_Column]) -> float:
    """Validates the header's columns; returns the factor that turns the angle into radians."""
    if len(columns) < 2:
        raise DataFormatError(f"{path}: header names {len(columns)} column(s); need EMG channels + angle")
    unit = columns[-1].unit.lower()
    if unit not in ("deg", "rad"):
        raise DataFormatError(
            f"{path}: last column {columns[-1].name!r} must be the knee angle in deg or "
            f"rad, its unit is {columns[-1].unit!r}"
        )
    for col in columns[:-1]:
        if col.unit.lower() in ("deg", "rad"):
            raise DataFormatError(f"{path}: only the last column may be an angle; {col.name!r} is in {col.unit}")
    return math.pi / 180.0 if unit == "deg" else 1.0


def _rows(path: Path, lines: Iterable[tuple[int, str]], width: int, dropped: list[int]) -> Iterator[np.ndarray]:
    """Chunks of parsed rows, (n, width) float64, empty cells NaN.

    Rows of only empty cells inside the data become all-NaN rows (the time grid stays intact); those at
    the end are dropped and counted in ``dropped[0]``.
    """
    buf: list[list[float]] = []
    pending_empty = 0
    for number, line in lines:
        if not line.strip():  # a blank line counts as a row of empty cells
            pending_empty += 1
            continue
        cells = line.rstrip("\r\n").split("\t" if "\t" in line else ",")
        if len(cells) != width:
            raise DataFormatError(f"{path} line {number}: expected {width} tab-separated cells, got {len(cells)}")
        row = [_cell(path, number, col, c) for col, c in enumerate(cells, start=1)]
        if all(math.isnan(v) for v in row):
            pending_empty += 1
            continue
        buf.extend([[math.nan] * width] * pending_empty)
        pending_empty = 0
        buf.append(row)
        if len(buf) >= CHUNK_ROWS:
            yield np.asarray(buf, dtype=np.float64)
            buf = []
    if buf:
        yield np.asarray(buf, dtype=np.float64)
    dropped[0] = pending_empty


def _cell(path: Path, line: int, col: int, text: str) -> float:
    text = text.strip()
    if not text:
        return math.nan
    try:
        return float(text)
    except ValueError:
        raise DataFormatError(f"{path} line {line} column {col}: expected a number, got {text!r}") from None


def _write_file(path: Path, staging: DatasetStaging, **attrs: str) -> int:
    dropped = [0]
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        lines = enumerate(fh, start=1)
        columns = _header(path, lines)
        to_rad = _check_columns(path, columns)
        n_emg = len(columns) - 1
        total, emg_found = 0, np.zeros(n_emg, dtype=np.int64)
        with staging.writer(
            path.stem,
            sample_rate=SAMPLE_RATE,
            num_channels=n_emg,
            joint_names=(JOINT,),
            channel_names=[c.name for c in columns[:-1]],
            **attrs,
        ) as writer:
            for chunk in _rows(path, lines, len(columns), dropped):
                time = (total + np.arange(len(chunk))) / SAMPLE_RATE
                writer.append(time, chunk[:, :n_emg].astype(np.float32), chunk[:, n_emg:] * to_rad)
                emg_found += np.sum(~np.isnan(chunk[:, :n_emg]), axis=0)
                total += len(chunk)
    if total == 0:
        raise DataFormatError(f"{path}: no data rows after the header")
    if dropped[0]:
        staging.note(f"{path.name}: dropped {dropped[0]} trailing row(s) of only empty cells")
    _notes(path, staging, columns, emg_found, total)
    return total


def _notes(path: Path, staging: DatasetStaging, columns: list[_Column], emg_found: np.ndarray, total: int) -> None:
    missing = total - int(emg_found.min())
    if missing:
        staging.note(f"{path.name}: {missing} row(s) have empty EMG cells, stored as NaN")
    for col, found in zip(columns[:-1], emg_found, strict=True):
        if col.declared is not None and col.declared != found:
            staging.note(f"{path.name}: header declares {col.declared} values for {col.name!r}, found {found}")
    angle = columns[-1]
    if angle.factor != 1.0:
        staging.note(
            f"{path.name}: angle {angle.name!r} was recorded at {SAMPLE_RATE / angle.factor:g} Hz "
            f"and extrapolated to {SAMPLE_RATE:g} Hz ({angle.declared} original values)"
        )


def import_uci(
    sources: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    *,
    test_users: Sequence[str] = (),
    val_users: Sequence[str] = (),
    side: str = "",
    overwrite: bool = False,
    target_sign: str | None = None,
    target_offset: str | None = None,
) -> ImportResult:
    """Imports UCI lower-limb files (one session each); users in ``test_users``/``val_users`` are held out.

    ``target_sign``/``target_offset`` (``"-1"``, ``"7N=-1,10A=-1"``, ``"3A=10deg"``) put every subject's knee
    angle on one convention (:mod:`emgpose.importers.conventions`).
    """
    paths = [require_file(p) for p in as_paths(sources)]
    test, val = [str(u) for u in test_users], [str(u) for u in val_users]
    check_disjoint(test_users=test, val_users=val)
    names = {p: parse_name(p) for p in paths}
    users = sorted({s for s, _, _ in names.values()})
    unknown = sorted(set(test + val) - set(users))
    if unknown:
        raise InvalidInput(f"test_users/val_users name {unknown}, but the files hold users {users}")
    convention = TargetConvention.parse(target_sign, target_offset)
    convention.check_users(users)
    with DatasetStaging(out_dir, overwrite=overwrite, targets=convention) as staging:
        for path in paths:
            subject, condition, activity = names[path]
            n = _write_file(path, staging, user=subject, session=path.stem, stage=activity, side=side)
            split = split_by_membership(subject, test, val)
            held = split != "train"
            staging.add(
                MetadataRow(
                    filename=path.stem,
                    split=split,
                    user=subject,
                    session=path.stem,
                    stage=activity,
                    side=side,
                    held_out_user=held,
                    generalization="user" if held else "",
                ),
                n,
            )
        for subject in users:
            conditions = {c for s, c, _ in names.values() if s == subject}
            if len(conditions) > 1:
                staging.note(
                    f"user {subject!r} appears under conditions {sorted(conditions)}: the UCI "
                    f"dataset numbers A and N subjects separately, so these may be two people"
                )
        return staging.commit()
