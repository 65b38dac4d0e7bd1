"""Name rules, defined once: model names and versions, dataset names, uploaded file names, dataset ids.

The gateway checks every name at the edge (the pydantic schemas use the ``Annotated`` types below, so a
bad name is a 422 naming the field and the rule before anything is stored or queued) and the workers,
the registry and the CLI apply the very same functions, so that nothing the gateway accepts fails later
in a worker for a rule the gateway did not know.

Each rule is a ``*_problem`` function returning what is wrong (or ``None``), a ``check_*`` function
raising :class:`~emgpose.errors.InvalidInput` with that message, and, where a schema uses it, an
``Annotated`` type whose JSON schema documents the rule (``pattern``, ``maxLength``) in OpenAPI.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field

from emgpose.errors import InvalidInput
from emgpose.formats.metadata import METADATA_FILE

LATEST = "latest"  # the pointer every model has; never a model name, always a version alias

MODEL_NAME_PATTERN = r"^(?!latest$)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MODEL_NAME_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit, and not 'latest'"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
VERSION_RULE = "1-64 letters, digits, '_', '.' or '-', starting with a letter or digit (or 'latest')"

DATASET_NAME_MAX = 200
DATASET_NAME_RULE = f"1-{DATASET_NAME_MAX} characters, not all spaces, with no control characters or line breaks"
_NAME_CHAR = r"[^\x00-\x1f\x7f-\x9f\u2028\u2029]"  # what bad_character refuses, as a JSON-schema class
DATASET_NAME_PATTERN = rf"^{_NAME_CHAR}*(?=\S){_NAME_CHAR}+$"

DATASET_ID_PATTERN = r"^[0-9a-f]{32}$"
DATASET_ID_RULE = "a dataset id is 32 lower-case hex digits (from POST or GET /v1/datasets)"

FILE_NAME_MAX_BYTES = 255  # what every local file system takes for one name (ext4, xfs: 255 bytes)
SESSION_SUFFIX = ".hdf5"
FILE_NAME_RULE = (
    f"{METADATA_FILE} or a session file *{SESSION_SUFFIX}, named without a folder, not starting with '.', "
    f"without percent-encoding, at most {FILE_NAME_MAX_BYTES} bytes in UTF-8"
)

_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)
_DATASET_ID = re.compile(DATASET_ID_PATTERN)
ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")  # percent-encoding: never decoded here, so it could only hide a '/' or '.'
_BAD_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}  # control characters, lone surrogates, line/paragraph separators


def shown(value: object, limit: int = 80) -> str:
    """``repr`` of what the caller sent, cut to ``limit`` characters: an error echoes input, never a flood."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 4]}...{text[-1]}"


def bad_character(text: str) -> str | None:
    """The first control character, lone surrogate (text that was not UTF-8) or line break in ``text``."""
    for char in text:
        if unicodedata.category(char) in _BAD_CATEGORIES:
            return char
    return None


def _text_problem(text: object) -> str | None:
    if not isinstance(text, str):
        return f"it must be text, not {type(text).__name__}"
    char = bad_character(text)
    if char is None:
        return None
    if unicodedata.category(char) == "Cs":
        return "it is not valid UTF-8 text"
    return f"it contains the control character U+{ord(char):04X}"


# --- model names and versions ---------------------------------------------------------------------------


def model_name_problem(name: object) -> str | None:
    problem = _text_problem(name)
    if problem is None and not _MODEL_NAME.match(name):  # type: ignore[arg-type]
        problem = f"use {MODEL_NAME_RULE}"
    return problem


def check_model_name(name: str, what: str = "model name") -> str:
    """``name`` if it is a valid model name, else :class:`InvalidInput` naming the rule."""
    problem = model_name_problem(name)
    if problem:
        raise InvalidInput(f"{what} {shown(name)} is not valid: {problem}")
    return name


def version_problem(version: object) -> str | None:
    problem = _text_problem(version)
    if problem is None and not _VERSION.match(version):  # type: ignore[arg-type]
        problem = f"use {VERSION_RULE}"
    return problem


def check_version(version: str, what: str = "model version") -> str:
    """``version`` if it is a valid version (or ``latest``), else :class:`InvalidInput` naming the rule."""
    problem = version_problem(version)
    if problem:
        raise InvalidInput(f"{what} {shown(version)} is not valid: {problem}")
    return version


def _model_name(value: str) -> str:
    problem = model_name_problem(value)
    if problem:
        raise ValueError(f"model name {shown(value)} is not valid: {problem}")
    return value


def _version(value: str) -> str:
    problem = version_problem(value)
    if problem:
        raise ValueError(f"model version {shown(value)} is not valid: {problem}")
    return value


ModelName = Annotated[
    str,
    AfterValidator(_model_name),
    Field(json_schema_extra={"pattern": MODEL_NAME_PATTERN, "minLength": 1, "maxLength": 64}, examples=["hand"]),
]
Version = Annotated[
    str,
    AfterValidator(_version),
    Field(json_schema_extra={"pattern": VERSION_PATTERN, "minLength": 1, "maxLength": 64}),
]


# --- model references: NAME, NAME@VERSION, or a location .../models/NAME[/VERSION] --------------------------

MODELS = "models"  # the registry's folder in a store
MODEL_REF_RULE = (
    f"give NAME, NAME@VERSION, or a location ending in /{MODELS}/NAME or /{MODELS}/NAME/VERSION "
    "(s3://bucket/prefix/... or an absolute path)"
)


def is_location(ref: str) -> bool:
    """Whether a dataset or model reference names a place (a URI or a path) rather than an id or a name."""
    return "://" in ref or ref.startswith(("/", "."))


def split_model_ref(ref: str) -> tuple[str | None, str, str | None]:
    """``(location of the store or None, name, version or None)`` of a model reference; pure text, no I/O.

    ``NAME`` and ``NAME@VERSION`` name a model of the default store (location None); a location ending in
    ``/models/NAME`` or ``/models/NAME/VERSION`` names one in the store at what precedes ``/models``.
    Names and versions are checked against their rules; the location is returned as given (the caller
    confines it, :func:`emgpose.access.confine`).
    """
    if not isinstance(ref, str) or not ref:
        raise InvalidInput(f"model reference {shown(ref)} is empty: {MODEL_REF_RULE}")
    if not is_location(ref):
        name, at, version = ref.partition("@")
        check_model_name(name)
        if at:
            check_version(version)
        return None, name, version or None
    parts = ref.rstrip("/").split("/")
    for depth, has_version in ((2, False), (3, True)):
        if len(parts) > depth and parts[-depth] == MODELS:
            root = "/".join(parts[:-depth]) or "/"
            name = check_model_name(parts[-depth + 1])
            version = check_version(parts[-1]) if has_version else None
            return root, name, version
    raise InvalidInput(f"{shown(ref)} is not a model reference: {MODEL_REF_RULE}")


# --- datasets -----------------------------------------------------------------------------------------------


def dataset_name_problem(name: object) -> str | None:
    problem = _text_problem(name)
    if problem is None and (not name.strip() or len(name) > DATASET_NAME_MAX):  # type: ignore[union-attr]
        problem = f"use {DATASET_NAME_RULE}"
    return problem


def check_dataset_name(name: str | None, what: str = "dataset name") -> str:
    """The trimmed name if it follows the dataset-name rule, else :class:`InvalidInput` naming it."""
    problem = dataset_name_problem("" if name is None else name)
    if problem:
        raise InvalidInput(f"{what} {shown(name)} is not valid: {problem}")
    return (name or "").strip()


def _dataset_name(value: str) -> str:
    problem = dataset_name_problem(value)
    if problem:
        raise ValueError(f"dataset name {shown(value)} is not valid: {problem}")
    return value.strip()


DatasetName = Annotated[
    str,
    AfterValidator(_dataset_name),
    Field(
        json_schema_extra={"pattern": DATASET_NAME_PATTERN, "minLength": 1, "maxLength": DATASET_NAME_MAX},
        examples=["lab-2026-11"],
    ),
]


def dataset_id_problem(ref: str) -> str | None:
    return None if _DATASET_ID.match(ref) else DATASET_ID_RULE


# --- uploaded file names ------------------------------------------------------------------------------------


def file_name_problem(name: str) -> str | None:
    """What is wrong with an uploaded file's name (the key it is stored under), or None."""
    problem = _text_problem(name)
    if problem:
        return problem
    if not name.strip():
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it has a folder part ('/' or '\\'); send the plain file name"
    if name.startswith("."):
        return "it starts with '.'"
    if ENCODED.search(name):
        return "it contains percent-encoded characters (such as %2f); send the name as it is"
    if name != name.strip():
        return "it starts or ends with spaces"
    size = len(name.encode("utf-8"))
    if size > FILE_NAME_MAX_BYTES:
        return f"it is {size} bytes long in UTF-8, over the {FILE_NAME_MAX_BYTES} bytes a file name may have"
    if name != METADATA_FILE and not name.endswith(SESSION_SUFFIX):
        return f"it is neither a session file (*{SESSION_SUFFIX}) nor {METADATA_FILE}"
    return None


def check_file_name(name: str) -> str:
    """``name`` if it is a usable uploaded file name, else :class:`InvalidInput` naming the rule."""
    problem = file_name_problem(name)
    if problem:
        raise InvalidInput(f"file name {shown(name)} is not usable: {problem} (the rule: {FILE_NAME_RULE})")
    return name


def _model_ref(value: str) -> str:
    split_model_ref(value)  # InvalidInput is a ValueError: pydantic reports it against the field
    return value


ModelRefText = Annotated[
    str,
    AfterValidator(_model_ref),
    Field(min_length=1, max_length=1024, examples=["hand@latest"]),
]
