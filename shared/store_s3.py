"""The S3 side of :mod:`emgpose.store` (boto3), imported only where an ``s3://`` URI is opened.

Kept apart so that processes that never touch S3 (the GPU check, tools reading local folders) do not
need boto3 and botocore installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import uuid
from collections.abc import Iterator
from typing import BinaryIO, ClassVar

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from emgpose.errors import EmgPoseError, InvalidInput, NotFound, StoreError
from emgpose.settings import Settings, get_settings
from emgpose.store import _BUCKET, _MIB, _MISSING, _TMP, ObjectStore, _atomic_file, _folder, _key_problem, check_key

log = logging.getLogger(__name__)


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
