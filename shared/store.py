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
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, ClassVar

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emgpose.errors import EmgPoseError, InvalidInput, NotFound, StoreError
from emgpose.settings import Settings, get_settings

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


def _client(settings: Settings) -> BaseClient:
    config = Config(
        region_name=settings.s3_region,
        connect_timeout=settings.s3_connect_timeout,
        retries={"max_attempts": settings.s3_max_attempts, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.s3_endpoint_url else None,
    )
    return boto3.session.Session().client("s3", endpoint_url=settings.s3_endpoint_url, config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3Store(ObjectStore):
    """Objects below ``s3://bucket/prefix``; tests may lower ``transfer_config`` to force multipart."""

    transfer_config: ClassVar[TransferConfig] = TransferConfig(
        multipart_threshold=64 * _MIB, multipart_chunksize=64 * _MIB
    )
    spool_max_size: ClassVar[int] = 8 * _MIB  # open_write keeps this much in memory, then spills to disk

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        settings: Settings | None = None,
        client: BaseClient | None = None,
    ) -> None:
        if not _BUCKET.match(bucket):
            raise InvalidInput(f"invalid S3 bucket name {bucket!r}; use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = _folder(prefix)
        self.settings = settings or get_settings()
        self.endpoint = self.settings.s3_endpoint_url or "AWS S3"
        self._client = client or _client(self.settings)
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint={self.endpoint!r})"

    def _key(self, key: str) -> str:
        return self._root + check_key(key)

    def _bucket_exists(self) -> bool:
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            return _code(exc) not in _MISSING
        except BotoCoreError:
            return True  # let the original error speak
        return True

    def _error(self, exc: ClientError, key: str | None) -> EmgPoseError:
        code = _code(exc)
        if code == "NoSuchBucket" or (code in _MISSING and not self._bucket_exists()):
            return NotFound(f"no bucket {self.bucket!r} at {self.endpoint}")
        if code in _MISSING and key is not None:
            return NotFound(f"no object at {self.url(key)}")
        return StoreError(f"S3 at {self.endpoint} (bucket {self.bucket!r}) answered {code}: {exc}")

    @contextlib.contextmanager
    def _errors(self, key: str | None = None) -> Iterator[None]:
        """Map botocore errors raised by the client calls in the block to the project's errors."""
        try:
            yield
        except ClientError as exc:
            raise self._error(exc, key) from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise StoreError(f"S3 at {self.endpoint} (bucket {self.bucket!r}) failed: {exc}") from exc

    def _copy(self, src: str, dst: str) -> None:
        source = {"Bucket": self.bucket, "Key": src}
        self._client.copy(source, self.bucket, dst, Config=self.transfer_config)

    def _upload(self, fileobj: BinaryIO, key: str) -> None:
        """Upload to a temporary key below the root, copy it to ``key``, delete the temporary key."""
        final = self._key(key)
        tmp = f"{self._root}{_TMP}/{uuid.uuid4().hex}"
        try:
            with self._errors(key):
                self._client.upload_fileobj(fileobj, self.bucket, tmp, Config=self.transfer_config)
                self._copy(tmp, final)
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.delete_object(Bucket=self.bucket, Key=tmp)
        log.debug("wrote %s", self.url(key))

    def child(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, self._key(prefix.rstrip("/")), self.settings, self._client)

    @contextlib.contextmanager
    def open_write(self, key: str) -> Iterator[BinaryIO]:
        check_key(key)
        with tempfile.SpooledTemporaryFile(max_size=self.spool_max_size) as spool:
            yield spool
            spool.seek(0)
            self._upload(spool, key)

    def put_file(self, key: str, path: str) -> None:
        with open(path, "rb") as f:
            self._upload(f, key)

    def get_file(self, key: str, path: str) -> None:
        full = self._key(key)
        with _atomic_file(path) as f, self._errors(key):
            self._client.download_fileobj(self.bucket, full, f, Config=self.transfer_config)

    @contextlib.contextmanager
    def open_read(self, key: str) -> Iterator[BinaryIO]:
        full = self._key(key)
        with self._errors(key):
            body = self._client.get_object(Bucket=self.bucket, Key=full)["Body"]
        with contextlib.closing(body):
            yield body

    @contextlib.contextmanager
    def local_path(self, key: str) -> Iterator[str]:
        with tempfile.TemporaryDirectory(prefix="emgpose-store-") as folder:
            path = os.path.join(folder, check_key(key).rsplit("/", 1)[-1])
            self.get_file(key, path)
            yield path

    def exists(self, key: str) -> bool:
        full = self._key(key)
        with self._errors(key):
            try:
                self._client.head_object(Bucket=self.bucket, Key=full)
            except ClientError as exc:
                if _code(exc) in _MISSING and self._bucket_exists():
                    return False
                raise
        return True

    def list(self, prefix: str = "") -> list[str]:
        folder = _folder(prefix)
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._root + (folder + "/" if folder else "")
        )
        with self._errors():
            keys = [obj["Key"][len(self._root) :] for page in pages for obj in page.get("Contents", [])]
        return sorted(k for k in keys if _key_problem(k) is None)

    def delete(self, key: str) -> None:
        full = self._key(key)
        with self._errors(key):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def move(self, src: str, dst: str) -> None:
        source, target = self._key(src), self._key(dst)
        if source == target:
            if not self.exists(src):
                raise NotFound(f"no object at {self.url(src)}")
            return
        with self._errors(src):
            self._copy(source, target)
            self._client.delete_object(Bucket=self.bucket, Key=source)
