"""Streaming ``multipart/form-data`` uploads straight into the object store.

The body is parsed as it arrives (python-multipart's push parser); each file part is written through
the store's atomic ``open_write`` in chunks of :data:`FLUSH_BYTES`, in a worker thread, so neither a
whole file nor the whole body is ever held in memory and no spool on the gateway's disk is needed
(S3 writes spool per object as :class:`~emgpose.store.S3Store` does). A file over ``MAX_UPLOAD_MB`` is
refused with 413 as soon as it passes the limit. On any error the part being written is discarded,
the files already stored are deleted, and the rest of the body is read and dropped (up to
:data:`DRAIN_BYTES`) so that the client, still sending, receives the answer.

Form fields: ``name`` (text) and ``files`` (one part per file; session files ``*.hdf5`` and one
``metadata.csv``). Anything else is refused with a message naming the field or file.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import anyio
from python_multipart.multipart import FormParserError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request

from emgpose.api import BodyTimeout
from emgpose.errors import EmgPoseError, InvalidInput, TooLarge
from emgpose.formats.metadata import METADATA_FILE
from emgpose.names import SESSION_SUFFIX, check_file_name, shown
from emgpose.store import LocalStore, ObjectStore, check_key

log = logging.getLogger(__name__)

MIB = 1024 * 1024
FLUSH_BYTES = MIB  # file data is handed to the store in pieces of about this size
DRAIN_BYTES = 64 * MIB  # after an error, at most this much of the remaining body is read and dropped
NAME_FIELD, FILES_FIELD = "name", "files"
MAX_NAME_BYTES = 800  # the name column holds 200 characters; a longer field is refused while it streams
MAX_FILES = 100_000


class UnsupportedMediaType(EmgPoseError):
    """The upload is not ``multipart/form-data`` (HTTP 415)."""

    status = 415


class Interrupted(EmgPoseError):
    """The client went away before the body ended (HTTP 400; nobody reads the answer, the log does)."""

    status = 400


@dataclass
class Received:
    """What a finished upload sent: the ``name`` field and the stored files with their sizes."""

    name: str | None = None
    files: dict[str, int] = field(default_factory=dict)  # file name (= key below the prefix) -> bytes

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


def check_filename(raw: bytes | str, seen: dict[str, int]) -> str:
    """The stored name of an uploaded file: a plain session or metadata file name, by the one rule
    (:func:`emgpose.names.check_file_name`: no folder part, UTF-8, at most 255 bytes, no control characters)."""
    rule = f"send session files ending in {SESSION_SUFFIX} and exactly one {METADATA_FILE}"
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"file name {shown(raw)} is not UTF-8: {rule}, with UTF-8 file names") from None
    name = check_file_name(raw)
    if name in seen:
        raise InvalidInput(f"file {name!r} was sent twice: {rule}; every file name once")
    if len(seen) >= MAX_FILES:
        raise InvalidInput(f"more than {MAX_FILES} files in one upload; register a store prefix instead")
    check_key(name)
    return name


class _Writer:
    """One object being written: the store's sync ``open_write`` driven from async code via threads."""

    def __init__(self, store: ObjectStore, name: str, limit: int, limit_mb: float) -> None:
        self.name, self.limit, self.limit_mb = name, limit, limit_mb
        self.size = 0
        self._manager = store.open_write(name)
        self._file: BinaryIO | None = None
        self._buffer = bytearray()

    async def open(self) -> None:
        self._file = await run_in_threadpool(self._manager.__enter__)

    async def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise TooLarge(
                f"file {self.name!r} is larger than the upload limit of {self.limit_mb:g} MB per file "
                f"({self.limit} bytes, MAX_UPLOAD_MB); split the recording or register a store prefix instead"
            )
        self._buffer += data
        if len(self._buffer) >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer and self._file is not None:
            data, self._buffer = bytes(self._buffer), bytearray()
            await run_in_threadpool(self._file.write, data)

    async def commit(self) -> None:
        await self._flush()
        await run_in_threadpool(self._manager.__exit__, None, None, None)

    async def abort(self, exc: BaseException) -> None:
        """Leaves nothing behind: the store's atomic write drops its temporary object."""
        if self._file is None:
            return
        with contextlib.suppress(BaseException):
            await run_in_threadpool(self._manager.__exit__, type(exc), exc, exc.__traceback__)


class _Events:
    """Collects the push parser's callbacks; the async reader acts on them after each chunk."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add("_header_name", data[start:end]),
            "on_header_value": lambda data, start, end: self._add("_header_value", data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.items.append(("headers", dict(self._headers))),
            "on_part_data": lambda data, start, end: self.items.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self.items.append(("end", None)),
        }

    def _add(self, attr: str, data: bytes) -> None:
        setattr(self, attr, getattr(self, attr) + data)

    def _begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def drain(self) -> list[tuple[str, Any]]:
        items, self.items = self.items, []
        return items


class _Form:
    """The state of one upload while parts stream in."""

    def __init__(self, store: ObjectStore, limit_mb: float, received: Received) -> None:
        self.store = store
        self.limit_mb = limit_mb
        self.limit = int(limit_mb * MIB)
        self.received = received
        self.writer: _Writer | None = None
        self.text: bytearray | None = None  # the `name` field while it arrives

    async def on_headers(self, headers: dict[bytes, bytes]) -> None:
        _, options = parse_options_header(headers.get(b"content-disposition", b""))
        field_name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if field_name == NAME_FIELD and filename is None:
            self.text = bytearray()
        elif field_name == FILES_FIELD and filename is not None:
            name = check_filename(filename, self.received.files)
            self.writer = _Writer(self.store, name, self.limit, self.limit_mb)
            self.received.files[name] = 0  # claimed: a failure below still cleans it up
            await self.writer.open()
        elif field_name == FILES_FIELD:
            raise InvalidInput(f"form field {FILES_FIELD!r} must be a file part (with a filename)")
        elif field_name == NAME_FIELD:
            raise InvalidInput(f"form field {NAME_FIELD!r} must be text, not a file")
        else:
            raise InvalidInput(
                f"unknown form field {field_name!r}: send {NAME_FIELD!r} (text) and {FILES_FIELD!r} (files)"
            )

    async def on_data(self, data: bytes) -> None:
        if self.writer is not None:
            await self.writer.write(data)
        elif self.text is not None:
            self.text += data
            if len(self.text) > MAX_NAME_BYTES:
                raise InvalidInput(f"form field {NAME_FIELD!r} is too long: at most 200 characters")

    async def on_end(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            await writer.commit()
            self.received.files[writer.name] = writer.size
        elif self.text is not None:
            if self.received.name is not None:
                raise InvalidInput(f"form field {NAME_FIELD!r} was sent twice")
            try:
                self.received.name = self.text.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput(f"form field {NAME_FIELD!r} is not UTF-8 text") from None
            self.text = None

    async def apply(self, events: list[tuple[str, Any]]) -> None:
        for kind, value in events:
            if kind == "headers":
                await self.on_headers(value)
            elif kind == "data":
                await self.on_data(value)
            else:
                await self.on_end()


def boundary_of(content_type: str | None) -> bytes:
    media, options = parse_options_header(content_type or "")
    if media != b"multipart/form-data":
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'!r} is not accepted: upload as multipart/form-data with a "
            f"{NAME_FIELD!r} field and one {FILES_FIELD!r} part per file"
        )
    if not options.get(b"boundary"):
        raise InvalidInput("multipart/form-data Content-Type without a boundary")
    return options[b"boundary"]


async def receive(request: Request, store: ObjectStore, limit_mb: float, received: Received | None = None) -> Received:
    """Streams the upload's files into ``store`` (keys = file names); returns what was received.

    ``received`` (a fresh one by default) is filled as parts arrive, so a caller still sees the name
    after an error. On error nothing stays in ``store``: the open write is discarded and finished files
    are deleted.
    """
    boundary = boundary_of(request.headers.get("content-type"))
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())
    form = _Form(store, limit_mb, received if received is not None else Received())
    stream = request.stream()
    try:
        try:
            async for chunk in stream:
                _feed(parser, chunk)
                await form.apply(events.drain())
        except ClientDisconnect:
            raise Interrupted("the upload was interrupted: the client disconnected before the body ended") from None
        _feed(parser, None)
        await form.apply(events.drain())
        if form.writer is not None or form.text is not None:
            raise InvalidInput("the multipart body ended in the middle of a part")
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            if form.writer is not None:
                await form.writer.abort(exc)
            await discard(store, list(form.received.files))
            await _drain(stream)
        raise
    return form.received


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except FormParserError as exc:
        raise InvalidInput(f"the multipart/form-data body is malformed: {exc}") from None


async def _drain(stream: AsyncIterator[bytes]) -> None:
    seen = 0
    with contextlib.suppress(ClientDisconnect, RuntimeError, BodyTimeout):  # a silent client is not waited for
        async for chunk in stream:
            seen += len(chunk)
            if seen > DRAIN_BYTES:
                return


async def discard(store: ObjectStore, names: list[str]) -> None:
    """Deletes ``names`` from ``store``, then, for a local store, its folder once empty, so a failed upload
    leaves no ``raw/<id>/`` behind (best effort: a failure is logged, the original error stands)."""

    def delete_all() -> None:
        for name in names:
            store.delete(name)
        if isinstance(store, LocalStore) and os.path.isdir(store.root) and not os.listdir(store.root):
            os.rmdir(store.root)

    try:
        await run_in_threadpool(delete_all)
    except Exception:
        log.warning("could not remove the uploaded files %s from %s", names, store.uri, exc_info=True)
