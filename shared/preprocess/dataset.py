"""A dataset to preprocess: ``metadata.csv`` plus one session file per row, in any object store.

Opening a dataset validates everything that can be checked from headers before any output is
written: every listed file exists and follows the layout, and all sessions agree on channel count,
sample rate, joint names and labels.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Collection
from dataclasses import dataclass

from emgpose.errors import DataFormatError, NotFound
from emgpose.formats.metadata import METADATA_FILE, MetadataRow, read_metadata
from emgpose.formats.session import SessionInfo, SessionReader
from emgpose.store import ObjectStore, open_store


@dataclass(frozen=True)
class SessionEntry:
    row: MetadataRow
    info: SessionInfo
    path: str  # local file path (S3 objects are fetched once into the dataset's cache)
    url: str  # where the file lives, for messages
    start_index: int  # the metadata time range as sample indices [start_index, stop_index)
    stop_index: int

    @property
    def samples(self) -> int:
        return self.stop_index - self.start_index


@dataclass(frozen=True)
class DatasetLayout:
    """What every session shares."""

    sample_rate: float
    num_channels: int
    joint_names: tuple[str, ...]
    has_label: bool
    label_names: tuple[str, ...]
    channel_names: tuple[str, ...]


class Dataset(contextlib.AbstractContextManager):
    """Sessions of a dataset URI (``file://``, a folder, or ``s3://``), validated on open.

    ``only`` (file names without ``.hdf5``) opens just those sessions: a worker that processes one
    session of a fanned-out job fetches one file, not the dataset. The layout then comes from them.
    """

    def __init__(self, uri: str, only: Collection[str] | None = None) -> None:
        self.uri = uri
        self.store: ObjectStore = open_store(uri)
        self._cache = tempfile.TemporaryDirectory(prefix="emgpose-data-")
        try:
            text = self._metadata_text()
            self.metadata_sha256 = hashlib.sha256(text.encode()).hexdigest()
            self.rows = read_metadata(text, source=self.store.url(METADATA_FILE))
            if only is not None:
                wanted = set(only)
                missing = wanted - {row.filename for row in self.rows}
                if missing:
                    raise NotFound(f"{self.store.url(METADATA_FILE)} lists no session {sorted(missing)[0]!r}")
                self.rows = [row for row in self.rows if row.filename in wanted]
            self.sessions = [self._entry(row) for row in self.rows]
            self.layout = self._common_layout()
        except BaseException:
            self._cache.cleanup()
            raise

    def _metadata_text(self) -> str:
        try:
            return self.store.get_bytes(METADATA_FILE).decode("utf-8")
        except NotFound:
            raise NotFound(
                f"{self.store.url(METADATA_FILE)}: a dataset needs metadata.csv beside its session files"
            ) from None

    def _local(self, key: str) -> str:
        if not self.store.exists(key):
            raise NotFound(f"{self.store.url(key)}: file named in {METADATA_FILE} does not exist")
        if self.store.uri.startswith("file://"):  # a local store's path is the file itself, kept after the with
            with self.store.local_path(key) as path:
                return path
        path = os.path.join(self._cache.name, key.replace("/", "__"))
        self.store.get_file(key, path)
        return path

    def _entry(self, row: MetadataRow) -> SessionEntry:
        path = self._local(row.file)
        with SessionReader(path) as reader:
            info = reader.info
            i0, i1 = reader.index_range(row.start, row.end)
        if i1 <= i0:
            raise DataFormatError(
                f"{self.store.url(row.file)}: time range [{row.start}, {row.end}] from {METADATA_FILE} "
                f"selects no samples (the file spans {info.start} to {info.end})"
            )
        return SessionEntry(row=row, info=info, path=path, url=self.store.url(row.file), start_index=i0, stop_index=i1)

    def _common_layout(self) -> DatasetLayout:
        first = self.sessions[0].info
        for entry in self.sessions[1:]:
            info = entry.info
            for what, mine, theirs in (
                ("channel count", info.num_channels, first.num_channels),
                ("sample_rate", info.sample_rate, first.sample_rate),
                ("joint_names", info.joint_names, first.joint_names),
                ("label field", info.has_label, first.has_label),
            ):
                if mine != theirs:
                    raise DataFormatError(
                        f"{self.store.url(entry.row.file)}: {what} {mine!r} differs from "
                        f"{theirs!r} in {first.filename}.hdf5; all sessions of a dataset must agree"
                    )
        return DatasetLayout(
            sample_rate=first.sample_rate,
            num_channels=first.num_channels,
            joint_names=first.joint_names,
            has_label=first.has_label,
            label_names=first.label_names,
            channel_names=first.channel_names,
        )

    def split(self, name: str) -> list[SessionEntry]:
        return [s for s in self.sessions if s.row.split == name]

    def close(self) -> None:
        self._cache.cleanup()

    def __exit__(self, *exc: object) -> None:
        self.close()
