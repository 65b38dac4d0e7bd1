"""Object store: one interface over a local folder and S3 (AWS, MinIO, moto).

``open_store`` takes ``file:///abs/path``, ``file://./rel/path`` or a plain path (a :class:`LocalStore`)
or ``s3://bucket/prefix`` (an :class:`S3Store`). Keys are ``/``-separated paths relative to the store's
root; empty or absolute keys, ``.``, ``..`` or empty segments, and segments starting with ``.tmp``
(reserved for temporary objects) are refused with :class:`InvalidInput`. ``list(prefix)`` treats the
prefix as a folder: it returns the keys below ``prefix/``, relative to the store root.

Writes are atomic: a reader sees the old object or the whole new one, and a write that fails (an
exception inside the ``open_write`` block, a lost connection) leaves the key as it was.

* LocalStore writes to ``.tmp-<random>`` in the target's folder and ``os.replace``s it into place.
* S3Store spools to a local temporary file, uploads it with boto3's managed transfer (multipart above
  ``S3Store.transfer_config.multipart_threshold``) to ``<root>/.tmp/<uuid>``, copies that to the final
  key (a managed server-side copy, multipart for big objects) and deletes the temporary key. A single
  PUT and a completed multipart upload are already atomic per object in S3; the temporary key keeps
  one contract for both backends and for ``move``. A process killed between upload and copy leaves a
  ``.tmp/`` object behind: ``list`` never returns it, and a bucket lifecycle rule can expire it.

``move`` is ``os.replace`` locally; on S3 it copies then deletes the source, so the destination is
replaced atomically but both keys exist for a moment.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from emgpose.errors import InvalidInput, NotFound, StoreError
from emgpose.settings import Settings

log = logging.getLogger(__name__)

ACCEPTED = "file:///abs/path, file://./rel/path, a plain path, or s3://bucket/prefix"
_TMP = ".tmp"  # segments starting with this are temporary objects
_MIB = 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def open_store(uri: str, settings: Settings | None = None) -> ObjectStore:
    """The store at ``uri``; ``settings`` (default :func:`get_settings`) configures S3 access."""
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput(f"store URI must be a non-empty string, got {uri!r}; use {ACCEPTED}")
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[len("s3://") :].partition("/")
        from emgpose.store_s3 import S3Store  # noqa: PLC0415 - boto3 loads only where S3 is used

        return S3Store(bucket, prefix, settings)
    if uri.startswith("file://"):
        path = uri[len("file://") :]
        if path.startswith(("/", "./", "../")) or path in (".", ".."):
            return LocalStore(path)
        raise InvalidInput(f"file URI {uri!r} needs an absolute or ./relative path; use {ACCEPTED}")
    if "://" not in uri:
        return LocalStore(uri)
    raise InvalidInput(f"unsupported store URI {uri!r}; use {ACCEPTED}")


def as_uri(path_or_uri: str) -> str:
    """A store URI as given, or a local path made absolute as ``file://`` (what the CLI accepts)."""
    return path_or_uri if "://" in path_or_uri else Path(path_or_uri).resolve().as_uri()


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key:
        return "it is empty"
    if key.startswith("/"):
        return "it is absolute"
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            return f"it has a {segment or 'empty'!r} segment"
        if segment.startswith(_TMP):
            return f"segments starting with {_TMP!r} are reserved for temporary objects"
    return None


def check_key(key: str) -> str:
    """``key`` if it is a valid object key, else :class:`InvalidInput` saying why."""
    problem = _key_problem(key)
    if problem:
        raise InvalidInput(f"invalid key {key!r}: {problem}; use a '/'-separated relative path like 'a/b.h5'")
    return key


def _folder(prefix: str) -> str:
    """A validated folder prefix without trailing slash; '' for the root."""
    return check_key(prefix.rstrip("/")) if prefix.strip("/") else ""


@contextlib.contextmanager
def _atomic_file(path: str) -> Iterator[BinaryIO]:
    """Write ``path`` through a temporary file in its folder, replaced into place on clean exit."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP + "-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class ObjectStore(abc.ABC):
    """Objects under a root URI; see the module docstring for the contract."""

    uri: str

    def url(self, key: str) -> str:
        return f"{self.uri}/{check_key(key)}"

    @abc.abstractmethod
    def child(self, prefix: str) -> ObjectStore: ...

    @abc.abstractmethod
    def open_write(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    @abc.abstractmethod
    def open_read(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]: ...

    @abc.abstractmethod
    def local_path(self, key: str) -> contextlib.AbstractContextManager[str]: ...

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def move(self, src: str, dst: str) -> None: ...

    def sweep(self, prefix: str) -> None:
        """Removes every object below the folder ``prefix`` (a job's private staging area)."""
        for key in self.list(prefix):
            self.delete(key)

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.open_write(key) as f:
            f.write(data)

    def get_bytes(self, key: str) -> bytes:
        with self.open_read(key) as f:
            return f.read()

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as src, self.open_write(key) as dst:
            shutil.copyfileobj(src, dst, _MIB)

    def get_file(self, key: str, path: str) -> None:
        with self.open_read(key) as src, _atomic_file(path) as dst:
            shutil.copyfileobj(src, dst, _MIB)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class LocalStore(ObjectStore):
    """Objects as files below a local folder (created on first write)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.uri = "file://" + self.root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def child(self, prefix: str) -> LocalStore:
        return LocalStore(self._path(prefix.rstrip("/")))

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        path = self._path(key)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the folder for {self.url(key)}: {exc}") from exc
        with _atomic_file(path) as f:
            yield f
        log.debug("wrote %s", self.url(key))

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise NotFound(f"no object at {self.url(key)}") from exc
        except OSError as exc:
            raise StoreError(f"cannot read {self.url(key)}: {exc}") from exc

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[str]:
        if not self.exists(key):
            raise NotFound(f"no object at {self.url(key)}")
        yield self._path(key)

    def exists(self, key: str) -> bool:
        return os.path.isfile(self._path(key))

    def list(self, prefix: str = "") -> list[str]:
        folder = _folder(prefix)
        top = os.path.join(self.root, *folder.split("/")) if folder else self.root
        keys = []
        for parent, _dirs, files in os.walk(top):
            rel = os.path.relpath(parent, self.root).replace(os.sep, "/")
            keys += [name if rel == "." else f"{rel}/{name}" for name in files]
        return sorted(k for k in keys if _key_problem(k) is None)

    def _prune(self, path: str) -> None:
        """Removes folders left empty below the root: an object store has no empty folders."""
        folder = os.path.dirname(path)
        while folder != self.root and folder.startswith(self.root + os.sep):
            try:
                os.rmdir(folder)
            except OSError:  # not empty (or already gone): stop
                return
            folder = os.path.dirname(folder)

    def delete(self, key: str) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(path)
            self._prune(path)

    def sweep(self, prefix: str) -> None:
        """Also removes the temporary files a writer killed mid-write left there (``.tmp-*``)."""
        path = self._path(_folder(prefix)) if prefix.strip("/") else self.root
        if path == self.root:
            raise InvalidInput("sweep needs a folder below the store's root, not the root itself")
        shutil.rmtree(path, ignore_errors=True)
        self._prune(path)

    def move(self, src: str, dst: str) -> None:
        source, target = self._path(src), self._path(dst)
        if not os.path.isfile(source):
            raise NotFound(f"no object at {self.url(src)}")
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
        except OSError as exc:
            raise StoreError(f"cannot move {self.url(src)} to {self.url(dst)}: {exc}") from exc
        self._prune(source)


def __getattr__(name: str) -> object:
    """``emgpose.store.S3Store`` without importing boto3 for processes that never touch S3."""
    if name == "S3Store":
        from emgpose.store_s3 import S3Store  # noqa: PLC0415

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
