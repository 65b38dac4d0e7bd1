"""Checks a raw dataset before it is marked ready, and describes what it holds.

Both ways in use it: an upload (after its files are stored under ``raw/<id>/``) and a registration of
an existing prefix. :class:`emgpose.preprocess.dataset.Dataset` does the real validation (metadata.csv
parses, every listed file exists and opens as a session, the sessions agree); this module adds the
upload's own rules and turns "a listed file is missing" into the caller's mistake (422), not 404.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from emgpose.errors import DataFormatError, InvalidInput, NotFound
from emgpose.formats.metadata import METADATA_FILE, read_metadata
from emgpose.names import DATASET_NAME_RULE, check_dataset_name
from emgpose.preprocess.dataset import Dataset
from emgpose.store import ObjectStore
from emgpose_gateway.uploads import NAME_FIELD, SESSION_SUFFIX, Received

SUMMARY_FILE = "summary.json"  # what marks a preprocessed dataset (written by the preprocess job)


def dataset_name(raw: str | None) -> str:
    """The upload's ``name`` field, trimmed, by the dataset-name rule every way in shares (:mod:`emgpose.names`)."""
    if raw is None or not raw.strip():
        raise InvalidInput(f"form field {NAME_FIELD!r} is required: a name for the dataset, {DATASET_NAME_RULE}")
    return check_dataset_name(raw, f"form field {NAME_FIELD!r}")


def check_upload(store: ObjectStore, received: Received) -> dict[str, Any]:
    """Validates a stored upload (``store`` is its prefix); returns the dataset's description."""
    sessions = {name for name in received.files if name.endswith(SESSION_SUFFIX)}
    if METADATA_FILE not in received.files:
        raise InvalidInput(
            f"no {METADATA_FILE} among the uploaded files {sorted(received.files)}: a dataset needs one "
            f"{METADATA_FILE} listing its session files (send it as another 'files' part)"
        )
    if not sessions:
        raise InvalidInput(f"no session files (*{SESSION_SUFFIX}) were uploaded beside {METADATA_FILE}")
    try:
        text = store.get_bytes(METADATA_FILE).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"{METADATA_FILE}: not UTF-8 text ({exc})") from None
    listed = {row.file for row in read_metadata(text, source=METADATA_FILE)}
    missing = sorted(listed - sessions)
    if missing:
        raise InvalidInput(
            f"{METADATA_FILE} lists {missing[0]!r}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + " but it was not uploaded; upload every file the metadata lists"
        )
    extra = sorted(sessions - listed)
    if extra:
        raise InvalidInput(
            f"file {extra[0]!r} was uploaded but {METADATA_FILE} does not list it; add a row for it or leave it out"
        )
    return describe(store.uri)


def check_registered(store: ObjectStore) -> dict[str, Any]:
    """Validates an existing prefix: 404 where there is no dataset, 422 where it breaks the layout."""
    if not store.exists(METADATA_FILE):
        raise NotFound(
            f"no dataset at {store.uri}: {METADATA_FILE} not found (a raw dataset is a folder holding "
            f"{METADATA_FILE} and the session files it lists)"
        )
    return describe(store.uri)


def describe(uri: str) -> dict[str, Any]:
    """Opens the dataset at ``uri`` (validating all of it) and summarises it."""
    try:
        with Dataset(uri) as data:
            rows = [entry.row for entry in data.sessions]
            samples = sum(entry.samples for entry in data.sessions)
            layout = data.layout
            return {
                "sessions": len(rows),
                "splits": dict(sorted(Counter(row.split for row in rows).items())),
                "users": len({row.user for row in rows}),
                "num_channels": layout.num_channels,
                "sample_rate": layout.sample_rate,
                "joint_names": list(layout.joint_names),
                "label_names": list(layout.label_names),
                "has_label": layout.has_label,
                "samples": samples,
                "duration_s": round(samples / layout.sample_rate, 3),
                "metadata_sha256": data.metadata_sha256,
            }
    except NotFound as exc:  # a file the metadata lists is missing: the dataset is incomplete
        raise DataFormatError(exc.message) from None
