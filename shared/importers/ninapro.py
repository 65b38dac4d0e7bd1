"""NinaPro DB1 ``S<s>_A1_E<e>.mat`` (MATLAB v5) -> one session per (movement, repetition).

Variables used: ``emg`` (T, 10) rectified RMS envelopes from Otto Bock electrodes at 100 Hz;
``glove`` (T, 22) raw CyberGlove readings; ``restimulus`` and ``rerepetition`` (T, 1), the relabelled
movement (0 = rest) and repetition (``relabelled=False`` uses ``stimulus``/``repetition``).

Sessions carry both targets: the glove values as joints ``GLOVE_00`` .. ``GLOVE_21`` and the movement
as ``label``. **The glove values are uncalibrated sensor readings (about 0..255), not radians**: models
trained on them predict sensor units, and a note in the result says so. Each session is one movement
segment plus the rest that follows it (the rest before the first movement joins the first session), so
a file's sessions tile it without gaps; times count from the start of the file. Sessions are named
``S<subject>_E<exercise>_m<mm>_r<rr>``; repetitions in ``test_reps`` (default 2, 5, 7: the usual
NinaPro protocol) go to test, those in ``val_reps`` (default 10) to val, the rest to train.

A ``.mat`` file is read whole (``scipy.io.loadmat``); DB1 files are a few MB each.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import scipy.io

from emgpose.errors import DataFormatError
from emgpose.formats.metadata import MetadataRow
from emgpose.importers.base import (
    DatasetStaging,
    ImportResult,
    PathLike,
    as_paths,
    check_disjoint,
    require_file,
)

SAMPLE_RATE = 100.0
_NAME = re.compile(r"^S(\d+)_A\d+_E(\d+)$", re.IGNORECASE)
GLOVE_NOTE = "NinaPro glove targets GLOVE_00..GLOVE_21 are raw, uncalibrated CyberGlove sensor values, not radians"


def _load(path: Path, label_var: str, rep_var: str) -> dict[str, np.ndarray]:
    wanted = ["emg", "glove", label_var, rep_var, "subject", "exercise"]
    try:
        mat = scipy.io.loadmat(path, variable_names=wanted)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DataFormatError(f"{path}: MATLAB v7.3 files are not supported; save it as v5 ({exc})") from exc
    except (ValueError, TypeError, OSError) as exc:
        raise DataFormatError(f"{path}: not a readable MATLAB v5 .mat file ({exc})") from exc
    for name in wanted[:4]:
        if name not in mat:
            present = sorted(k for k in mat if not k.startswith("__"))
            raise DataFormatError(f"{path}: variable {name!r} is missing (file holds {present})")
    n = mat["emg"].shape[0]
    for name in wanted[:4]:
        value = np.asarray(mat[name])
        if value.ndim != 2 or value.shape[0] != n:
            raise DataFormatError(
                f"{path}: variable {name!r} must be a 2-D array with {n} rows (as 'emg'), got {value.shape}"
            )
    for name in (label_var, rep_var):
        if mat[name].shape[1] != 1:
            raise DataFormatError(f"{path}: variable {name!r} must have one column, got {mat[name].shape}")
    return mat


def _ids(path: Path, mat: dict[str, np.ndarray]) -> tuple[int, int]:
    match = _NAME.match(path.stem)
    ids = []
    for index, var in ((0, "subject"), (1, "exercise")):
        if var in mat and np.size(mat[var]) == 1:
            ids.append(int(np.ravel(mat[var])[0]))
        elif match:
            ids.append(int(match[index + 1]))
        else:
            raise DataFormatError(
                f"{path}: no {var!r} variable and the file name is not S<subject>_A<n>_E<exercise>.mat"
            )
    return ids[0], ids[1]


def segments(path: Path, labels: np.ndarray, reps: np.ndarray) -> list[tuple[int, int, int, int]]:
    """``(movement, repetition, start, stop)`` per session: a movement segment plus the rest after it."""
    bounds = [0, *(np.flatnonzero(np.diff(labels)) + 1).tolist(), len(labels)]
    out: list[list[int]] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        movement = int(labels[a])
        if movement == 0:
            if out:
                out[-1][3] = b
            continue
        values = np.unique(reps[a:b])
        if len(values) != 1 or values[0] <= 0:
            raise DataFormatError(
                f"{path}: samples {a}..{b - 1} (movement {movement}) need one positive repetition number, "
                f"got {values.tolist()}"
            )
        key = [movement, int(values[0])]
        if out and out[-1][:2] == key:  # a movement cut by a short relabelled rest: one session
            out[-1][3] = b
        else:
            out.append([*key, a if out else 0, b])
    seen: dict[tuple[int, int], int] = {}
    for movement, rep, start, _ in out:
        if (movement, rep) in seen:
            raise DataFormatError(
                f"{path}: movement {movement} repetition {rep} occurs twice (from samples "
                f"{seen[(movement, rep)]} and {start}); each (movement, repetition) must be one segment"
            )
        seen[(movement, rep)] = start
    return [(m, r, s, e) for m, r, s, e in out]


def _split(rep: int, test: Sequence[int], val: Sequence[int]) -> str:
    return "test" if rep in test else "val" if rep in val else "train"


def _import_file(
    staging: DatasetStaging, path: Path, test: Sequence[int], val: Sequence[int], side: str, relabelled: bool
) -> None:
    label_var, rep_var = ("restimulus", "rerepetition") if relabelled else ("stimulus", "repetition")
    mat = _load(path, label_var, rep_var)
    subject, exercise = _ids(path, mat)
    emg = np.asarray(mat["emg"], dtype=np.float32)
    glove = np.asarray(mat["glove"], dtype=np.float64)
    labels = np.asarray(mat[label_var]).ravel().astype(np.int32)
    parts = segments(path, labels, np.asarray(mat[rep_var]).ravel().astype(np.int64))
    if not parts:
        raise DataFormatError(f"{path}: {label_var!r} holds no movement (all rest)")
    label_names = ("rest", *(f"m{m:02d}" for m in range(1, int(labels.max()) + 1)))
    joints = tuple(f"GLOVE_{j:02d}" for j in range(glove.shape[1]))
    user, stage = str(subject), f"E{exercise}"
    for movement, rep, start, stop in parts:
        name = f"S{subject}_E{exercise}_m{movement:02d}_r{rep:02d}"
        with staging.writer(
            name,
            sample_rate=SAMPLE_RATE,
            num_channels=emg.shape[1],
            joint_names=joints,
            with_label=True,
            label_names=label_names,
            user=user,
            session=name,
            stage=stage,
            side=side,
            chunk_rows=min(4096, stop - start),
        ) as writer:
            time = np.arange(start, stop) / SAMPLE_RATE
            writer.append(time, emg[start:stop], glove[start:stop], labels[start:stop])
        row = MetadataRow(filename=name, split=_split(rep, test, val), user=user, session=name, stage=stage, side=side)
        staging.add(row, stop - start)
    staging.note(f"{path.name}: {len(parts)} sessions; the rest before the first movement joins the first")


def import_ninapro(
    sources: PathLike | Iterable[PathLike],
    out_dir: PathLike,
    *,
    test_reps: Sequence[int] = (2, 5, 7),
    val_reps: Sequence[int] = (10,),
    relabelled: bool = True,
    side: str = "",
    overwrite: bool = False,
) -> ImportResult:
    """Imports NinaPro DB1 ``.mat`` files; see the module docstring for the session and split rules."""
    paths = [require_file(p) for p in as_paths(sources)]
    test, val = [int(r) for r in test_reps], [int(r) for r in val_reps]
    check_disjoint(test_reps=[str(r) for r in test], val_reps=[str(r) for r in val])
    with DatasetStaging(out_dir, overwrite=overwrite) as staging:
        staging.note(GLOVE_NOTE)
        for path in paths:
            _import_file(staging, path, test, val, side, relabelled)
        return staging.commit()
