"""A generic table (CSV or Parquet, one row per sample) -> one session per file.

The caller names the columns: ``channels`` (names, or glob patterns such as ``"emg_*"`` matched in the
file's column order), ``targets`` (joint angles, in ``target_units`` "rad" or "deg"; stored in
radians) and/or ``label`` (integer gesture class), optionally ``time`` (seconds; default
``index / sample_rate``). Files are read in record batches (``pyarrow.csv.open_csv`` or
``ParquetFile.iter_batches``), never whole; empty cells become NaN in EMG and targets.
"""

from __future__ import annotations

import csv
import fnmatch
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from emgpose.errors import DataFormatError, InvalidInput
from emgpose.formats.metadata import SPLITS, MetadataRow
from emgpose.importers.base import DatasetStaging, ImportResult, PathLike, as_paths, require_file
from emgpose.importers.conventions import TargetConvention

PARQUET_SUFFIXES = (".parquet", ".pq")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
BATCH_ROWS = 65536


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise DataFormatError(f"{path}: unknown table type {suffix!r}; use {CSV_SUFFIXES + PARQUET_SUFFIXES}")


def _csv_options(path: Path, delimiter: str | None) -> pcsv.ParseOptions:
    return pcsv.ParseOptions(delimiter=delimiter or ("\t" if path.suffix.lower() == ".tsv" else ","))


def _schema(path: Path, delimiter: str | None) -> pa.Schema:
    try:
        if _kind(path) == "parquet":
            return pq.ParquetFile(path).schema_arrow
        return pcsv.open_csv(path, parse_options=_csv_options(path, delimiter)).schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFormatError(f"{path}: cannot read the table header ({exc})") from exc


def resolve(path: Path, names: Sequence[str], spec: str | Sequence[str], what: str) -> list[str]:
    """Column names for ``spec`` (names or glob patterns), in the order given / found in the file."""
    out: list[str] = []
    for item in [spec] if isinstance(spec, str) else list(spec):
        if any(ch in item for ch in "*?["):
            hits = [n for n in names if fnmatch.fnmatchcase(n, item)]
            if not hits:
                raise DataFormatError(f"{path}: no column matches {what} pattern {item!r}; columns: {list(names)}")
            out.extend(hits)
        elif item in names:
            out.append(item)
        else:
            raise DataFormatError(f"{path}: {what} column {item!r} is missing; columns: {list(names)}")
    if len(set(out)) != len(out):
        raise InvalidInput(f"{path}: {what} columns repeat a name: {out}")
    return out


def _check_numeric(path: Path, schema: pa.Schema, columns: Sequence[str], delimiter: str | None) -> None:
    for name in columns:
        kind = schema.field(name).type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)):
            where = _locate_bad_cell(path, name, delimiter) if _kind(path) == "csv" else ""
            raise DataFormatError(f"{path}{where}: column {name!r} must be numeric, it holds {kind} values")


def _locate_bad_cell(path: Path, column: str, delimiter: str | None) -> str:
    """`` line N column C (value 'x')`` of the first non-numeric cell of ``column`` (CSV only)."""
    nulls = set(pcsv.ConvertOptions().null_values)
    with path.open("r", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=_csv_options(path, delimiter).delimiter)
        header = next(reader, [])
        if column not in header:
            return ""
        index = header.index(column)
        for row in reader:
            cell = row[index].strip() if index < len(row) else ""
            if cell in nulls:
                continue
            try:
                float(cell)
            except ValueError:
                return f" line {reader.line_num} column {index + 1} ({column!r} = {cell!r})"
    return ""


def _batches(path: Path, columns: Sequence[str], delimiter: str | None) -> Iterator[dict[str, np.ndarray]]:
    """The named columns as float64 arrays (nulls -> NaN), one record batch at a time."""
    if _kind(path) == "parquet":
        source: Iterable[pa.RecordBatch] = pq.ParquetFile(path).iter_batches(BATCH_ROWS, columns=list(columns))
    else:
        convert = pcsv.ConvertOptions(include_columns=list(columns), column_types=dict.fromkeys(columns, pa.float64()))
        source = pcsv.open_csv(path, parse_options=_csv_options(path, delimiter), convert_options=convert)
    try:
        for batch in source:
            yield {name: pc.cast(batch.column(name), pa.float64()).to_numpy(zero_copy_only=False) for name in columns}
    except pa.ArrowInvalid as exc:
        where = next((w for c in columns if (w := _locate_bad_cell(path, c, delimiter))), "")
        raise DataFormatError(f"{path}{where}: every selected column must hold numbers ({exc})") from exc


def _row(path: Path, index: int) -> str:
    """Where sample ``index`` (0-based) sits: a CSV line (header = line 1) or a Parquet row."""
    return f"line {index + 2}" if _kind(path) == "csv" else f"row {index + 1}"


def _labels(path: Path, values: np.ndarray, offset: int, column: str) -> np.ndarray:
    bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > 2**31 - 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path} {_row(path, offset + i)}: label column {column!r} must hold integers, got {values[i]}"
        )
    return values.astype(np.int32)


def _times(path: Path, values: np.ndarray, offset: int, last: float, column: str) -> np.ndarray:
    steps = np.diff(np.concatenate([[last], values]))
    bad = ~np.isfinite(values) | ~(steps > 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataFormatError(
            f"{path} {_row(path, offset + i)}: time column {column!r} must increase strictly, got {values[i]}"
        )
    return values


def _write(staging: DatasetStaging, path: Path, name: str, opts: dict, attrs: dict) -> int:
    delimiter = opts["delimiter"]
    schema = _schema(path, delimiter)
    names = schema.names
    channels = resolve(path, names, opts["channels"], "channel")
    targets = resolve(path, names, opts["targets"], "target") if opts["targets"] else []
    label = resolve(path, names, [opts["label"]], "label")[0] if opts["label"] else None
    time = resolve(path, names, [opts["time"]], "time")[0] if opts["time"] else None
    used = [*channels, *targets, *([label] if label else []), *([time] if time else [])]
    if len(set(used)) != len(used):
        raise InvalidInput(f"{path}: a column is used twice among channels/targets/label/time: {used}")
    _check_numeric(path, schema, used, delimiter)
    rate, scale = opts["sample_rate"], opts["scale"]
    total, last = 0, -math.inf
    with staging.writer(
        name,
        sample_rate=rate,
        num_channels=len(channels),
        joint_names=targets,
        with_label=label is not None,
        channel_names=channels,
        label_names=opts["label_names"],
        session=name,
        **attrs,
    ) as writer:
        for cols in _batches(path, used, delimiter):
            n = len(cols[channels[0]])
            t = _times(path, cols[time], total, last, time) if time else (total + np.arange(n)) / rate
            emg = np.column_stack([cols[c] for c in channels]).astype(np.float32)
            joints = np.column_stack([cols[c] for c in targets]) * scale if targets else None
            lab = _labels(path, cols[label], total, label) if label else None
            writer.append(t, emg, joints, lab)
            total, last = total + n, float(t[-1]) if n else last
        if total == 0:
            raise DataFormatError(f"{path}: the table has no data rows")
    return total


def import_table(
    sources: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    *,
    sample_rate: float,
    channels: str | Sequence[str],
    targets: Sequence[str] = (),
    target_units: str = "rad",
    label: str | None = None,
    time: str | None = None,
    label_names: Sequence[str] = (),
    user: str = "",
    session: str | None = None,
    stage: str = "",
    side: str = "",
    split: str = "train",
    delimiter: str | None = None,
    overwrite: bool = False,
    target_sign: str | None = None,
    target_offset: str | None = None,
) -> ImportResult:
    """Imports CSV/Parquet tables, one session per file (named ``session`` or the file's stem)."""
    paths = [require_file(p) for p in as_paths(sources)]
    if not sample_rate or sample_rate <= 0:
        raise InvalidInput(f"sample_rate must be a positive number of samples per second, got {sample_rate}")
    if not channels:
        raise InvalidInput("channels must name at least one EMG column (names or a pattern like 'emg_*')")
    if not targets and not label:
        raise InvalidInput("give targets (joint-angle columns) or label (gesture column), or both")
    if target_units not in ("rad", "deg"):
        raise InvalidInput(f"target_units must be 'rad' or 'deg', got {target_units!r}")
    if split not in SPLITS:
        raise InvalidInput(f"split must be one of {SPLITS}, got {split!r}")
    if session and len(paths) > 1:
        raise InvalidInput(f"session={session!r} names one session, but {len(paths)} files were given")
    opts = {
        "channels": channels,
        "targets": list(targets),
        "label": label,
        "time": time,
        "delimiter": delimiter,
        "sample_rate": float(sample_rate),
        "label_names": tuple(label_names),
        "scale": math.pi / 180.0 if target_units == "deg" else 1.0,
    }
    convention = TargetConvention.parse(target_sign, target_offset)
    convention.check_users([user])
    with DatasetStaging(out_dir, overwrite=overwrite, targets=convention) as staging:
        for path in paths:
            name = session or path.stem
            n = _write(staging, path, name, opts, dict(user=user, stage=stage, side=side))
            row = MetadataRow(filename=name, split=split, user=user, session=name, stage=stage, side=side)
            staging.add(row, n)
        return staging.commit()
