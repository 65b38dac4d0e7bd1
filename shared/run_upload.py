"""Upload a local dataset folder once: ``emgpose run`` reuses the previous upload when nothing changed.

Each upload stores a full copy of the files (``raw/<id>/`` in the object store), so a rerun of the main
job used to add another 228 MB to ``runs/demo``. The content hash of the files (names and bytes) is
recorded next to the data together with the dataset's id; a later upload of the same content returns
that dataset while the gateway still has it ``ready``, and uploads afresh otherwise (the files changed,
the dataset failed or is gone, e.g. with another database).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emgpose.client import ApiError, Client

log = logging.getLogger(__name__)

RECORD_SUFFIX = ".upload.json"  # <folder>.upload.json, beside the folder (the folder holds only the dataset)
CHUNK = 1 << 20


def dataset_files(folder: Path) -> list[Path]:
    """What :meth:`Client.upload_dataset` sends: ``metadata.csv`` and the HDF5 sessions."""
    return [folder / "metadata.csv", *sorted(folder.glob("*.hdf5"))]


def folder_digest(folder: Path) -> str:
    """SHA-256 over each uploaded file's name, size and bytes, in upload order."""
    digest = hashlib.sha256()
    for path in dataset_files(folder):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def record_path(folder: Path) -> Path:
    return folder.with_name(folder.name + RECORD_SUFFIX)


@dataclass
class Upload:
    dataset: dict[str, Any]  # the gateway's dataset (``GET /v1/datasets/{id}`` or the upload's answer)
    reused: bool
    sha256: str


def upload_once(api: Client, name: str, folder: Path) -> Upload:
    """The dataset holding exactly ``folder``'s files: the recorded one while it is ``ready`` on the
    gateway and the files are unchanged, else a new upload (then recorded)."""
    sha = folder_digest(folder)
    record = record_path(folder)
    previous = _read_record(record)
    if previous.get("sha256") == sha and isinstance(previous.get("dataset"), str):
        try:
            dataset = api.call("GET", f"/v1/datasets/{previous['dataset']}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            log.info("dataset %s of the previous upload is gone: uploading again", previous["dataset"])
        else:
            if dataset.get("state") == "ready":
                return Upload(dataset, True, sha)
            log.info("dataset %s is %s: uploading again", dataset["id"], dataset.get("state"))
    dataset = api.upload_dataset(name, folder)
    record.write_text(json.dumps({"dataset": dataset["id"], "sha256": sha, "name": name}, indent=2) + "\n")
    return Upload(dataset, False, sha)


def _read_record(path: Path) -> dict[str, Any]:
    """The recorded upload, or nothing where there is none or it cannot be read (then we upload)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
