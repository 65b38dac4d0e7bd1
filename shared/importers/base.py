"""What every importer shares: the result record, a staging folder that commits atomically, split rules.

An import writes its session files into a hidden staging folder inside the output folder; only when
every session has been written does :meth:`DatasetStaging.commit` move them into place and write
``metadata.csv`` last (temp file + ``os.replace``). A failed import removes the staging folder, so the
output folder never holds a ``metadata.csv`` that lists missing or half-written sessions.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emgpose.errors import InvalidInput, NotFound
from emgpose.formats.metadata import METADATA_FILE, SPLITS, MetadataRow, read_metadata, write_metadata
from emgpose.formats.session import SessionWriter
from emgpose.importers.conventions import AngleSummary, TargetConvention, disagreements

log = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass
class ImportResult:
    """What an import wrote: the dataset folder, one metadata row per session, sample counts, notes."""

    out_dir: Path
    sessions: list[MetadataRow] = field(default_factory=list)
    samples: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / METADATA_FILE


def as_paths(sources: PathLike | Iterable[PathLike]) -> list[Path]:
    """One path or many, as a non-empty list of :class:`Path`."""
    if isinstance(sources, str | os.PathLike):
        paths = [Path(sources)]
    else:
        paths = [Path(s) for s in sources]
    if not paths:
        raise InvalidInput("no input files given: pass at least one source path")
    return paths


def require_file(path: Path) -> Path:
    if not path.exists():
        raise NotFound(f"{path}: input file does not exist")
    if not path.is_file():
        raise InvalidInput(f"{path}: expected a file, found a folder or special file")
    return path


class DatasetStaging:
    """Collects session files in ``<out_dir>/.import-*`` and moves them into place on :meth:`commit`.

    Use as a context manager: leaving the block with an exception removes everything staged (and the
    output folder itself when this import created it and it is still empty).
    """

    def __init__(self, out_dir: PathLike, *, overwrite: bool = False, targets: TargetConvention | None = None) -> None:
        self.targets = targets or TargetConvention()
        self._angles: dict[str, tuple[str, list[np.ndarray]]] = {}  # session -> (user, sampled angles)
        self._joint_names: tuple[str, ...] = ()
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise InvalidInput(f"{self.out_dir}: output path exists and is not a folder")
        self._old_rows: list[MetadataRow] = []
        meta = self.out_dir / METADATA_FILE
        if meta.exists():
            if not overwrite:
                raise InvalidInput(
                    f"{self.out_dir}: already holds a dataset ({METADATA_FILE}); choose an empty folder "
                    f"or pass overwrite=True (--overwrite) to replace it"
                )
            self._old_rows = read_metadata(meta.read_text(encoding="utf-8"), str(meta))
        self._created = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=self.out_dir))
        self._names: set[str] = set()
        self.result = ImportResult(out_dir=self.out_dir)

    def writer(self, filename: str, **kwargs: Any) -> SessionWriter:
        """A :class:`SessionWriter` for session ``filename`` (no ``.hdf5``), written into staging."""
        if not _SAFE_NAME.match(filename):
            raise InvalidInput(
                f"session name {filename!r} must start with a letter or digit and hold only letters, digits and . _ + -"
            )
        if filename in self._names:
            raise InvalidInput(f"session name {filename!r} would be written twice in one import")
        self._names.add(filename)
        writer = SessionWriter(self._tmp / f"{filename}.hdf5", filename=filename, **kwargs)
        if not writer.num_joints:
            return writer
        self._joint_names = tuple(kwargs.get("joint_names", ()))
        user = str(kwargs.get("user", ""))
        samples = self._angles.setdefault(filename, (user, []))[1]
        return _ConventionWriter(writer, lambda a: self.targets.apply(user, a), samples.append)

    def add(self, row: MetadataRow, num_samples: int) -> None:
        """Records a finished session for ``metadata.csv``."""
        if row.filename not in self._names:
            raise InvalidInput(f"session {row.filename!r} was never written in this import")
        if row.split not in SPLITS:
            raise InvalidInput(f"split must be one of {SPLITS}, got {row.split!r}")
        self.result.sessions.append(row)
        self.result.samples[row.filename] = int(num_samples)

    def note(self, message: str) -> None:
        log.debug("%s", message)
        self.result.notes.append(message)

    def commit(self) -> ImportResult:
        """Moves the sessions into the output folder, then writes ``metadata.csv`` atomically."""
        rows = self.result.sessions
        if not rows:
            raise InvalidInput("the inputs held no sessions to import")
        self._check_angles()
        for row in rows:
            os.replace(self._tmp / row.file, self.out_dir / row.file)
        stale = sorted({r.filename for r in self._old_rows} - {r.filename for r in rows})
        if stale:
            self.note(f"{len(stale)} session file(s) of the replaced {METADATA_FILE} are no longer listed")
        meta_tmp = self._tmp / f"{METADATA_FILE}.tmp"
        meta_tmp.write_text(write_metadata(rows), encoding="utf-8")
        os.replace(meta_tmp, self.out_dir / METADATA_FILE)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return self.result

    def _check_angles(self) -> None:
        """Notes the conventions applied and the sessions whose angles disagree with the others'."""
        summaries = []
        for user in sorted({u for u, _ in self._angles.values()}):
            applied = self.targets.describe(user)
            if applied:
                self.note(f"user {user or '(none)'}: {applied} (--target-sign/--target-offset)")
        for session, (user, parts) in sorted(self._angles.items()):
            if parts:
                summary = AngleSummary.of(user, session, np.concatenate(parts))
                if summary is not None:
                    summaries.append(summary)
        for message in disagreements(summaries, self._joint_names):
            self.note(message)

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)
        if self._created:
            try:
                self.out_dir.rmdir()
            except OSError:
                pass

    def __enter__(self) -> DatasetStaging:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        elif self._tmp.exists():
            self.abort()  # left without commit(): nothing becomes visible


def check_disjoint(**groups: Sequence[str]) -> None:
    """Raises when one value is listed in two groups (e.g. a user both in test_users and val_users)."""
    seen: dict[str, str] = {}
    for name, values in groups.items():
        for value in values:
            if value in seen and seen[value] != name:
                raise InvalidInput(f"{value!r} is listed in both {seen[value]} and {name}; pick one")
            seen[value] = name


def split_by_membership(key: str, test: Sequence[str], val: Sequence[str]) -> str:
    return "test" if key in test else "val" if key in val else "train"


class _ConventionWriter:
    """A :class:`SessionWriter` whose joint angles pass through the import's convention (and are sampled
    for the consistency check: every 10th row is enough for percentiles)."""

    def __init__(self, writer: SessionWriter, convert: Any, keep: Any) -> None:
        self._writer, self._convert, self._keep = writer, convert, keep
        self.num_joints = writer.num_joints

    def append(self, time: Any, emg: Any, joint_angles: Any = None, label: Any = None) -> None:
        if joint_angles is not None:
            joint_angles = self._convert(np.asarray(joint_angles, dtype=np.float64))
            self._keep(joint_angles[::10])
        self._writer.append(time, emg, joint_angles, label)

    def close(self, start: float | None = None, end: float | None = None) -> None:
        self._writer.close(start, end)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._writer, name)

    def __enter__(self) -> _ConventionWriter:
        self._writer.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.__exit__(*exc)
