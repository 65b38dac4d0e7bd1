"""JSON request bodies decoded with bounded work, and without a Python float per number.

A prediction body is mostly one long array of numbers: ``emg`` rows, or an Open Inference Protocol
tensor's ``data``. Decoded into Python lists, every number costs a float object and a list slot (about
32 bytes), and nothing bounds how many numbers a body of short ones holds: a 60 MiB body took the
inference process from 227 MB to 3 GB. :func:`decode` instead:

1. Cuts every long array of numbers out of the body (at least :data:`MIN_SPAN` bytes of digits, signs,
   ``.``, ``e``, ``NaN``/``Infinity``, commas, whitespace and brackets; flat, or rows of equal length)
   and reads it with numpy straight from the bytes into one float64 array. Its shape comes from the
   brackets and commas before a single number is parsed, so the caller's limits on rows and values are
   enforced first (:class:`~emgpose.errors.TooLarge`, 413).
2. Parses what is left (field names, the sample rate, small arrays) with pydantic-core's JSON parser
   (jiter, in Rust) once it has checked that the rest holds at most :data:`MAX_VALUES` values; each cut
   array stands there as a placeholder string, which is replaced by its ndarray.

Numbers are read by numpy's float parser: JSON numbers, and ``NaN``, ``Infinity`` and ``-Infinity`` as
Python's ``json`` writes them (the prediction refuses non-finite values and says where they are).
Every refusal is an :class:`~emgpose.errors.InvalidInput` (422) naming the field.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic_core import from_json

from emgpose.errors import InvalidInput, TooLarge

MIN_SPAN = 4096  # bytes: shorter arrays are left to the JSON parser
MAX_VALUES = 500_000  # JSON values allowed outside the cut arrays (about 20 MB of Python objects)
_CANDIDATE = re.compile(rb'"([A-Za-z_][A-Za-z0-9_]{0,63})"\s*:\s*(\[[0-9eE+\-.,\s\[\]NaIinfty]*)')
_EMPTY_ITEM = re.compile(rb"[\[,]\s*[,\]]")  # "[,", ",,", ", ]", "[ ]": numpy would read -1 there
_TRAILING = b" \t\r\n,"
_BRACKETS = bytes.maketrans(b"[]", b"  ")
_OPEN, _CLOSE, _COMMA = ord("["), ord("]"), ord(",")


@dataclass
class Limits:
    """What one body may carry: rows per 2-D array and values per array, by field name."""

    max_rows: int
    max_values: int
    widths: dict[str, tuple[int, str]] = field(default_factory=dict)  # field -> (row length, why, for messages)


def decode(raw: bytes, limits: Limits) -> Any:
    """The JSON document in ``raw``; its long numeric arrays come back as float64 ndarrays (1-D or 2-D)."""
    token = secrets.token_hex(8)
    arrays: dict[str, np.ndarray] = {}
    pieces: list[bytes] = []
    start = 0
    for match in _CANDIDATE.finditer(raw):
        span = match.group(2).rstrip(_TRAILING)
        if len(span) < MIN_SPAN:
            continue
        name = match.group(1).decode("ascii")
        array = _numeric_array(span, name, limits)
        if array is None:
            continue  # not a plain array of numbers: the JSON parser reads it (within MAX_VALUES)
        placeholder = f"\\u0000{token}:{len(arrays)}"
        arrays[f"\x00{token}:{len(arrays)}"] = array
        pieces += [raw[start : match.start(2)], b'"', placeholder.encode(), b'"']
        start = match.start(2) + len(span)
    rest = b"".join([*pieces, raw[start:]]) if pieces else raw
    values = rest.count(b",") + rest.count(b"[") + rest.count(b"{") + 1
    if values > MAX_VALUES:
        raise InvalidInput(
            f"the JSON body holds over {MAX_VALUES} values outside plain arrays of numbers; send EMG as rows of "
            f"numbers (or as float32 with Content-Type application/octet-stream)"
        )
    try:
        document = from_json(rest, allow_inf_nan=True)
    except ValueError as exc:
        raise InvalidInput(f"invalid JSON body: Invalid JSON: {exc}") from None
    return _restore(document, arrays) if arrays else document


def _restore(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, str):
        return arrays.get(value, value)
    if isinstance(value, list):
        return [_restore(v, arrays) for v in value]
    if isinstance(value, dict):
        return {k: _restore(v, arrays) for k, v in value.items()}
    return value


def _numeric_array(span: bytes, name: str, limits: Limits) -> np.ndarray | None:
    """``span`` (``[...]``) as an array, or None where it is not a flat or 2-D array of numbers."""
    if span[-1:] != b"]":
        return None
    b = np.frombuffer(span, dtype=np.uint8)
    opens, closes = np.flatnonzero(b == _OPEN), np.flatnonzero(b == _CLOSE)
    if len(opens) != len(closes) or opens[0] != 0 or closes[-1] != len(b) - 1:
        return None
    if _EMPTY_ITEM.search(span):
        return None  # an empty item or row: the JSON parser names it
    if len(opens) == 1:
        count = span.count(b",") + 1
        _check_values(name, count, limits)
        return _parse(span, name, (count,))
    row_open, row_close = opens[1:], closes[:-1]
    if not (np.all(row_open < row_close) and np.all(row_close[:-1] < row_open[1:])):
        return None  # deeper than rows of numbers
    rows = len(row_open)
    commas = np.flatnonzero(b == _COMMA)
    inside = np.searchsorted(commas, row_close) - np.searchsorted(commas, row_open)
    between = np.searchsorted(commas, row_open[1:]) - np.searchsorted(commas, row_close[:-1])
    outside = np.searchsorted(commas, row_open[0]) + len(commas) - np.searchsorted(commas, row_close[-1])
    if outside or np.any(between != 1):
        return None
    if rows > limits.max_rows:
        raise TooLarge(
            f"{name} has {rows} rows (samples), more than the {limits.max_rows} one request may carry "
            f"(MAX_PREDICT_SAMPLES); send shorter pieces in several requests, or stream them over /v1/stream"
        )
    width, why = limits.widths.get(name, (int(inside[0]) + 1, "rows of equal length"))
    ragged = np.flatnonzero(inside + 1 != width)
    if ragged.size:
        row = int(ragged[0])
        raise InvalidInput(f"{name}[{row}] has {int(inside[row]) + 1} values, expected {width} ({why})")
    _check_values(name, rows * width, limits)
    return _parse(span, name, (rows, width))


def _check_values(name: str, count: int, limits: Limits) -> None:
    if count > limits.max_values:
        raise TooLarge(f"{name} has {count} values, more than the {limits.max_values} one request may carry")


def _parse(span: bytes, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        values = np.fromstring(span.translate(_BRACKETS), dtype=np.float64, sep=",")
    except ValueError:
        raise InvalidInput(
            f"{name}: every value must be a number (JSON numbers, NaN or Infinity), and numbers must be "
            f"separated by commas"
        ) from None
    if values.size != int(np.prod(shape)):
        raise InvalidInput(f"{name}: every value must be a number, separated by commas")
    return values.reshape(shape)
