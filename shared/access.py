"""Data confinement: a data or model location named in a request must lie below an allowed root.

The services read and write only below the object store (``STORE_URI``: the upload area ``raw/``,
preprocessed outputs, models) and the roots an operator lists in ``ALLOWED_DATA_ROOTS`` (``s3://bucket``
or ``s3://bucket/prefix`` and local folders as ``/path`` or ``file:///path``). :func:`confine` is the one
check every place that takes a location from a caller goes through: ``POST /v1/datasets/register``,
every job's ``dataset``, evaluate's ``model``, and the workers again when they resolve what a job row
names (a row written some other way is refused there too).

:func:`confine` works in two steps, and the first does no I/O at all:

1. **Normalise the text** (:func:`parse`). Refused with 422 (:class:`~emgpose.errors.InvalidInput`):
   control characters (NUL included), text that was not UTF-8 (lone surrogates), backslashes,
   percent-encoded characters (``%2f``, ``%2e``: the store never decodes them, so they only hide a
   separator or a dot), ``.`` and ``..`` segments, empty segments (``a//b``), a segment over 255 bytes,
   a location over 1024 characters, relative paths, ``file://host/...``, invalid bucket names and
   schemes other than ``s3://`` and ``file://``.
2. **Compare segment-wise** with the roots: ``s3://bucket/data-evil`` is not below ``s3://bucket/data``,
   and another bucket is never below a root of this one. Outside every root is a 403
   (:class:`OutsideRoots`) naming ``ALLOWED_DATA_ROOTS``, decided from the text alone, so the answer is
   the same whether or not anything exists there: no existence oracle, and no request to a foreign
   bucket with this server's credentials. Only a local location already inside a root is then resolved
   on disk (``realpath``), so that a symbolic link inside a root cannot lead out of it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from emgpose.errors import Forbidden, InvalidInput
from emgpose.names import ENCODED, bad_character, dataset_id_problem, is_location, shown, split_model_ref

if TYPE_CHECKING:
    from emgpose.settings import Settings

SETTING = "ALLOWED_DATA_ROOTS"
MAX_LOCATION = 1024  # characters; S3 keys end at 1024 bytes
MAX_SEGMENT_BYTES = 255  # one file or folder name (ext4, xfs)
ACCEPTED = "s3://bucket/prefix, file:///absolute/path or /absolute/path"
SHOWN = 300  # characters of a refused location echoed in the message (a whole path, never a flood)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # as emgpose.store (S3's naming rules)


class OutsideRoots(Forbidden):
    """A location outside the object store and ALLOWED_DATA_ROOTS (HTTP 403)."""


@dataclass(frozen=True)
class Location:
    """A normalised location: ``file`` with an absolute path, or ``s3`` with a bucket and key prefix."""

    scheme: str  # "file" or "s3"
    bucket: str  # "" for file
    parts: tuple[str, ...]  # path or key segments, none empty, "." or ".."

    @property
    def uri(self) -> str:
        """``file:///a/b`` or ``s3://bucket/a/b``: what :func:`emgpose.store.open_store` takes."""
        if self.scheme == "s3":
            return "/".join((f"s3://{self.bucket}", *self.parts))
        return "file:///" + "/".join(self.parts)

    @property
    def path(self) -> str:
        """The absolute local path of a ``file`` location."""
        return "/" + "/".join(self.parts)

    def within(self, root: Location) -> bool:
        """Whether this location is ``root`` or below it, segment by segment (never a string prefix)."""
        same_place = (self.scheme, self.bucket) == (root.scheme, root.bucket)
        return same_place and self.parts[: len(root.parts)] == root.parts


def _refuse(field: str, text: str, problem: str) -> InvalidInput:
    return InvalidInput(f"{field} {shown(text, SHOWN)} is not a usable location: {problem}; give {ACCEPTED}")


def parse(text: object, field: str = "uri", relative: bool = False) -> Location:
    """The normalised :class:`Location` of ``text``, or :class:`InvalidInput` (422) naming the rule broken.

    Pure text processing, no I/O. ``relative`` (for the operator's own settings, never for requests)
    lets a path be relative to the working directory (``./runs/store``, ``file://./runs/store``).
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput(f"{field} {shown(text, SHOWN)} is empty; give {ACCEPTED}")
    if len(text) > MAX_LOCATION:
        raise _refuse(field, text, f"it is {len(text)} characters long, over {MAX_LOCATION}")
    char = bad_character(text)
    if char is not None:
        surrogate = 0xD800 <= ord(char) <= 0xDFFF
        what = "it is not valid UTF-8 text" if surrogate else f"it contains the control character U+{ord(char):04X}"
        raise _refuse(field, text, what)
    if "\\" in text:
        raise _refuse(field, text, "it contains a backslash; separate folders with '/'")
    if ENCODED.search(text):
        raise _refuse(field, text, "it contains percent-encoded characters (such as %2f); write the path as it is")
    if text.startswith("s3://"):
        bucket, _, key = text[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            rule = "3-63 lower-case letters, digits, '.' or '-'"
            raise _refuse(field, text, f"{shown(bucket)} is not an S3 bucket name ({rule})")
        return Location("s3", bucket, _segments(field, text, key))
    if text.startswith("file://"):
        path = text[len("file://") :]
        dotted = path.startswith(("./", "../")) or path in (".", "..")
        if not path.startswith("/") and not (relative and dotted):
            raise _refuse(field, text, "a file URI needs an absolute path (file:///path), without a host")
    elif "://" in text:
        raise _refuse(field, text, "unsupported store URI scheme")
    else:
        path = text
    if not path.startswith("/"):
        if not relative:
            raise _refuse(field, text, "it is a relative path; the server does not guess a folder")
        path = os.path.abspath(path)  # the operator's relative setting, resolved as open_store does
    return Location("file", "", _segments(field, text, path[1:]))


def _segments(field: str, text: str, rest: str) -> tuple[str, ...]:
    """The segments of a path or key (without its leading '/'); one trailing '/' is allowed."""
    if rest.endswith("/"):
        rest = rest[:-1]
    if not rest:
        return ()
    parts = tuple(rest.split("/"))
    for part in parts:
        if not part:
            raise _refuse(field, text, "it has an empty segment ('//')")
        if part in (".", ".."):
            raise _refuse(field, text, f"it has a {part!r} segment")
        if len(part.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise _refuse(field, text, f"a segment is over {MAX_SEGMENT_BYTES} bytes long")
    return parts


def parse_root(text: str) -> Location:
    """One entry of ALLOWED_DATA_ROOTS (relative paths are taken from the working directory)."""
    return parse(text, SETTING, relative=True)


def roots(settings: Settings) -> list[Location]:
    """The object store first (always allowed), then every ALLOWED_DATA_ROOTS entry."""
    return [parse(settings.store_uri, "STORE_URI", relative=True), *map(parse_root, settings.allowed_data_roots)]


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def confine(text: object, settings: Settings, field: str = "uri") -> str:
    """The normalised URI of a data or model location a caller named, if it lies below an allowed root.

    :class:`InvalidInput` (422) for text that is not a usable location, :class:`OutsideRoots` (403) for
    one outside the store and ALLOWED_DATA_ROOTS, decided before any I/O (module docstring).
    """
    where = parse(text, field)
    allowed = roots(settings)
    inside = any(where.within(root) for root in allowed)
    if inside and where.scheme == "file":  # a link inside a root must not lead out of every root
        real = os.path.realpath(where.path)
        inside = any(_under(real, os.path.realpath(r.path)) for r in allowed if r.scheme == "file")
    if not inside:
        listed = ", ".join(root.uri for root in allowed[1:]) or "none set"
        raise OutsideRoots(
            f"{field} {shown(text, SHOWN)} is outside {SETTING}: this server reads data and models only below its "
            f"object store ({allowed[0].uri}) and the roots in {SETTING} ({listed}); put the data there, or "
            f"have the operator add its folder or S3 prefix to {SETTING}"
        )
    return where.uri


def confine_model_ref(ref: str, settings: Settings, field: str = "model") -> None:
    """Checks a model reference: a name (and version) against the name rules; a location also confined."""
    location, _, _ = split_model_ref(ref)
    if location is not None:
        confine(location, settings, f"{field} {shown(ref, SHOWN)}: its store")


def check_dataset_ref(ref: object, field: str = "dataset") -> str:
    """``ref`` if it has the form of a dataset id or of a location (checked further by :func:`confine`)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"{field} {shown(ref, SHOWN)} is empty: give a dataset id or {ACCEPTED}")
    if not is_location(ref) and dataset_id_problem(ref):
        raise InvalidInput(
            f"{field} {shown(ref, SHOWN)} is neither a dataset id ({dataset_id_problem(ref)}) nor {ACCEPTED}"
        )
    return ref
