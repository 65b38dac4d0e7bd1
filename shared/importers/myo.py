"""Myo armband wrist gestures: a folder of ``<gesture>.txt`` files -> one session per repetition.

Each row of ``<g>.txt`` is ``e1,...,e8,label``: eight int8 EMG channels then the label, which alternates
between 0 (rest) and ``g`` every ~5 s. The rows carry no time stamps; the armband streams at about
200 Hz (``sample_rate``). For classification across repetitions each file is cut into repetitions (one
rest block plus the gesture block after it, found from the label changes), each written as session
``<user>_g<g>_r<k>`` (k from 1). The last repetition of a file goes to test, the one before to val,
the rest to train (``test_last``/``val_last`` change the counts). A file whose label never changes
(``0.txt``, rest only) is cut into blocks of ``block_seconds`` instead, the short remainder joining the
last block.

What the real files hold: CRLF line ends, the last line without one; ``0.txt`` is all rest; the others
hold 6 repetitions of about 1000 rest + 1000 gesture rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.formats.metadata import MetadataRow
from emgpose.importers.base import DatasetStaging, ImportResult, PathLike, as_paths

LABEL_NAMES = (
    "rest",
    "flexion",
    "extension",
    "radial_deviation",
    "ulnar_deviation",
    "pronation",
    "supination",
    "fist",
)
NUM_CHANNELS = 8
CHUNK_ROWS = 65536
_GESTURE_FILE = re.compile(r"^(\d+)\.txt$")


def gesture_files(source: Path) -> list[tuple[Path, int]]:
    """``(path, gesture)`` for a folder's ``<g>.txt`` files, or for one such file."""
    if not source.exists():
        raise NotFound(f"{source}: Myo folder or file does not exist")
    candidates = sorted(source.iterdir()) if source.is_dir() else [source]
    found = []
    for path in candidates:
        match = _GESTURE_FILE.match(path.name)
        if match and path.is_file():
            gesture = int(match[1])
            if gesture >= len(LABEL_NAMES):
                raise DataFormatError(
                    f"{path}: gesture {gesture} from the file name is outside 0..{len(LABEL_NAMES) - 1}"
                )
            found.append((path, gesture))
        elif not source.is_dir():
            raise DataFormatError(f"{path}: Myo files are named <gesture>.txt (e.g. 3.txt), got {path.name!r}")
    if not found:
        raise NotFound(f"{source}: no <gesture>.txt files (0.txt .. 7.txt) in this folder")
    return sorted(found, key=lambda item: item[1])


def _parse(path: Path, gesture: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Chunks of (emg (n, 8) float32, label (n,) int32); every cell checked, errors name line and column."""
    emg: list[list[int]] = []
    labels: list[int] = []
    with path.open("r", encoding="ascii", errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            cells = text.split(",")
            if len(cells) != NUM_CHANNELS + 1:
                raise DataFormatError(
                    f"{path} line {number}: expected {NUM_CHANNELS} EMG values and a label "
                    f"({NUM_CHANNELS + 1} comma-separated cells), got {len(cells)}"
                )
            values = [_int(path, number, col, cell) for col, cell in enumerate(cells, start=1)]
            if any(v < -128 or v > 127 for v in values[:-1]):
                raise DataFormatError(f"{path} line {number}: EMG values must be int8 (-128..127), got {values}")
            if values[-1] not in (0, gesture):
                raise DataFormatError(
                    f"{path} line {number} column {NUM_CHANNELS + 1}: label must be 0 (rest) or {gesture} "
                    f"(the file's gesture), got {values[-1]}"
                )
            emg.append(values[:-1])
            labels.append(values[-1])
            if len(labels) >= CHUNK_ROWS:
                yield np.asarray(emg, dtype=np.float32), np.asarray(labels, dtype=np.int32)
                emg, labels = [], []
    if labels:
        yield np.asarray(emg, dtype=np.float32), np.asarray(labels, dtype=np.int32)


def _int(path: Path, line: int, col: int, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DataFormatError(f"{path} line {line} column {col}: expected an integer, got {text!r}") from None


def repetitions(labels: np.ndarray, block: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each repetition: a new one starts where rest follows a gesture block.

    Labels that never change are cut into blocks of ``block`` samples (the remainder joins the last).
    """
    n = len(labels)
    if n == 0:
        return []
    if np.all(labels == labels[0]):
        count = max(1, n // block)
        starts = [i * block for i in range(count)]
    else:
        back_to_rest = np.flatnonzero((labels[1:] == 0) & (labels[:-1] != 0)) + 1
        starts = [0, *back_to_rest.tolist()]
    return list(zip(starts, [*starts[1:], n], strict=True))


def split_of(index: int, count: int, test_last: int, val_last: int) -> str:
    from_end = count - index  # 1 for the last repetition
    return "test" if from_end <= test_last else "val" if from_end <= test_last + val_last else "train"


def _write_file(
    staging: DatasetStaging, path: Path, gesture: int, reps: list[tuple[int, int]], **kwargs: Any
) -> list[tuple[str, int]]:
    """Second pass: streams the rows into one session per repetition; returns (name, samples).

    Times count from the start of the file, so the repetitions of a file are contiguous in time.
    """
    rate = float(kwargs["sample_rate"])
    written: list[tuple[str, int]] = []
    rep, writer, offset = 0, None, 0
    try:
        for emg, label in _parse(path, gesture):
            pos = 0
            while pos < len(label):
                start, stop = reps[rep]
                if writer is None:
                    name = f"{kwargs['user']}_g{gesture}_r{rep + 1}"
                    chunk = min(4096, stop - start)
                    writer = staging.writer(name, session=name, chunk_rows=chunk, **kwargs)
                take = min(len(label) - pos, stop - (offset + pos))
                sl = slice(pos, pos + take)
                writer.append((offset + pos + np.arange(take)) / rate, emg[sl], label=label[sl])
                pos += take
                if offset + pos == stop:
                    writer.close()
                    written.append((name, stop - start))
                    writer, rep = None, rep + 1
            offset += len(label)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return written


def import_myo(
    sources: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    *,
    sample_rate: float = 200.0,
    test_last: int = 1,
    val_last: int = 1,
    block_seconds: float = 10.0,
    side: str = "",
    overwrite: bool = False,
) -> ImportResult:
    """Imports Myo folders (user = folder name), one session per repetition, split by repetition index."""
    if sample_rate <= 0 or block_seconds <= 0 or test_last < 0 or val_last < 0:
        raise InvalidInput(
            f"sample_rate and block_seconds must be positive and test_last/val_last >= 0, got sample_rate="
            f"{sample_rate}, block_seconds={block_seconds}, test_last={test_last}, val_last={val_last}"
        )
    block = max(1, round(block_seconds * sample_rate))
    files = [(src, item) for src in as_paths(sources) for item in gesture_files(src)]
    with DatasetStaging(out_dir, overwrite=overwrite) as staging:
        for src, (path, gesture) in files:
            user = (src if src.is_dir() else src.parent).resolve().name
            labels = np.concatenate([lab for _, lab in _parse(path, gesture)] or [np.zeros(0, np.int32)])
            reps = repetitions(labels, block)
            if not reps:
                raise DataFormatError(f"{path}: no data rows")
            if np.all(labels == labels[0]):
                staging.note(f"{path.name}: label is {labels[0]} throughout; cut into {len(reps)} blocks")
            stage = LABEL_NAMES[gesture]
            written = _write_file(
                staging,
                path,
                gesture,
                reps,
                sample_rate=sample_rate,
                num_channels=NUM_CHANNELS,
                joint_names=(),
                with_label=True,
                label_names=LABEL_NAMES,
                user=user,
                stage=stage,
                side=side,
            )
            for k, (name, n) in enumerate(written):
                split = split_of(k, len(written), test_last, val_last)
                row = MetadataRow(filename=name, split=split, user=user, session=name, stage=stage, side=side)
                staging.add(row, n)
            if len(written) <= test_last + val_last:
                staging.note(f"{path.name}: only {len(written)} repetition(s); none left for train")
        return staging.commit()
