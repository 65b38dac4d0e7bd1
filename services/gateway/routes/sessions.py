"""``/v1/datasets/{id}/sessions``: the sessions of a raw dataset, and their samples in bounded chunks.

What the web page's "try it live" plays: it reads a session's EMG and true joint angles chunk by chunk,
streams the EMG through ``/v1/stream`` and draws the predictions against the true angles. Any client may
use it to replay a recording.

The dataset's location is confined again (:func:`emgpose.access.confine`) before anything is read, as the
workers do with what a job row names. A session is named by its ``filename`` from ``metadata.csv``, never
by a path, and samples are counted inside the time range that ``metadata.csv`` gives it. Raw datasets are
immutable, so the few sessions read last stay open (:class:`OpenSessions`): an S3 file is fetched once
for the chunks that follow, not once per chunk.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from emgpose import access
from emgpose.errors import Conflict
from emgpose.formats.metadata import METADATA_FILE, read_metadata
from emgpose.formats.session import SessionReader
from emgpose.jobs import repo
from emgpose.preprocess.dataset import Dataset, SessionEntry
from emgpose.settings import Settings
from emgpose.store import open_store
from emgpose_gateway.deadline import end_database_use
from emgpose_gateway.deps import SessionDep, SettingsDep
from emgpose_gateway.schemas import ErrorResponse

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

MAX_CHUNK = 8192  # samples per answer: 4 s at 2 kHz; for 16 channels about 700 kB as base64, 2.5 MB as JSON
KEPT_OPEN = 4  # sessions kept open between chunk requests (each may hold a fetched S3 file)
DatasetId = Annotated[str, Path(description="A raw dataset id from GET /v1/datasets", max_length=32)]
SessionName = Annotated[str, Path(description="A session's `filename` from GET .../sessions", max_length=255)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such dataset, or no such session in its metadata.csv"},
    409: {"model": ErrorResponse, "description": "the dataset is not a ready raw dataset"},
    403: {"model": ErrorResponse, "description": "the dataset's location is outside ALLOWED_DATA_ROOTS now"},
}


class SessionPublic(BaseModel):
    filename: str = Field(examples=["user0_stage0_s0_left"])
    split: str = Field(examples=["test"])
    user: str
    session: str
    stage: str
    side: str
    samples_url: str = Field(description="Where its samples are read in chunks")


class SessionsPublic(BaseModel):
    dataset_id: str
    sample_rate: float | None = Field(description="Hz, from the dataset's validation (null if unknown)")
    num_channels: int | None
    joint_names: list[str]
    items: list[SessionPublic]
    total: int


class SamplesPublic(BaseModel):
    dataset_id: str
    session: str
    start: int = Field(description="Index of the first sample returned, from the start of the session's range")
    count: int = Field(description="Samples returned (0 past the end)")
    total: int = Field(description="Samples in the session's range (metadata.csv start/end)")
    sample_rate: float = Field(description="Hz")
    num_channels: int
    joint_names: list[str]
    encoding: Literal["json", "base64"]
    emg: list[list[float]] | str = Field(
        description="(count, channels) float32: rows of numbers, or base64 of little-endian float32, row-major"
    )
    angles: list[list[float]] | str | None = Field(
        description="(count, joints) true joint angles in radians, encoded as `emg` (float32); null without joints"
    )


class OpenSessions:
    """The last :data:`KEPT_OPEN` sessions read, open (LRU); thread-safe (sync routes run in a pool)."""

    def __init__(self, size: int = KEPT_OPEN) -> None:
        self.size = size
        self._open: OrderedDict[tuple[str, str], Dataset] = OrderedDict()
        self._lock = threading.Lock()

    def entry(self, uri: str, name: str) -> SessionEntry:
        key = (uri, name)
        with self._lock:
            if key in self._open:
                self._open.move_to_end(key)
                return self._open[key].sessions[0]
        data = Dataset(uri, only=[name])  # validates the session; fetches it where the store is S3
        with self._lock:
            self._open[key] = data
            while len(self._open) > self.size:
                _, old = self._open.popitem(last=False)
                old.close()
            return data.sessions[0]


OPEN = OpenSessions()


def _raw_uri(request: Request, session: Session, dataset_id: str, settings: Settings) -> tuple[str, dict[str, Any]]:
    """The confined location and description of a ready raw dataset. The database is done with after
    this, so the request's database deadline ends here: reading a session may take longer."""
    row = repo.get_dataset(session, dataset_id)
    if row.kind != "raw" or row.state != "ready":
        what = f"a {row.state} {row.kind} dataset"
        raise Conflict(f"dataset {dataset_id} is {what}; sessions are read from ready raw datasets")
    uri, info = row.uri, dict(row.info or {})
    session.close()
    end_database_use(request.scope)
    return access.confine(uri, settings, f"dataset {dataset_id}'s location"), info


@router.get(
    "/{dataset_id}/sessions",
    response_model=SessionsPublic,
    summary="The sessions a raw dataset's metadata.csv lists, with their split",
    responses=ERRORS,
)
def list_sessions(
    dataset_id: DatasetId, request: Request, session: SessionDep, settings: SettingsDep
) -> SessionsPublic:
    uri, info = _raw_uri(request, session, dataset_id, settings)
    store = open_store(uri, settings)
    rows = read_metadata(store.get_bytes(METADATA_FILE).decode("utf-8"), source=store.url(METADATA_FILE))
    items = [
        SessionPublic(
            filename=row.filename,
            split=row.split,
            user=row.user,
            session=row.session,
            stage=row.stage,
            side=row.side,
            samples_url=f"/v1/datasets/{dataset_id}/sessions/{row.filename}/samples",
        )
        for row in rows
    ]
    return SessionsPublic(
        dataset_id=dataset_id,
        sample_rate=info.get("sample_rate"),
        num_channels=info.get("num_channels"),
        joint_names=list(info.get("joint_names") or []),
        items=items,
        total=len(items),
    )


def _encode(values: np.ndarray, encoding: str) -> list[list[float]] | str:
    data = np.ascontiguousarray(values, dtype="<f4")
    if encoding == "base64":
        return base64.b64encode(data.tobytes()).decode("ascii")
    return data.astype(np.float64).tolist()  # each float32 exactly (EMG in volts is too small to round)


@router.get(
    "/{dataset_id}/sessions/{name}/samples",
    response_model=SamplesPublic,
    summary="A chunk of a session's EMG and true joint angles",
    description=f"At most {MAX_CHUNK} samples per request; page with `start`. `encoding=base64` sends "
    "little-endian float32 (4 bytes a value, row-major) instead of rows of numbers.",
    responses=ERRORS,
)
def get_samples(
    dataset_id: DatasetId,
    name: SessionName,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    start: Annotated[int, Query(ge=0, le=2**40, description="First sample, from the start of the range")] = 0,
    count: Annotated[int, Query(ge=1, le=MAX_CHUNK, description="Samples wanted")] = 2000,
    encoding: Annotated[Literal["json", "base64"], Query(description="json or base64 (float32)")] = "json",
) -> SamplesPublic:
    uri, _ = _raw_uri(request, session, dataset_id, settings)
    entry = OPEN.entry(uri, name)
    first = min(entry.start_index + start, entry.stop_index)
    with SessionReader(entry.path) as reader:
        chunk = reader.read(first, min(first + count, entry.stop_index))
    info = entry.info
    return SamplesPublic(
        dataset_id=dataset_id,
        session=name,
        start=start,
        count=len(chunk),
        total=entry.samples,
        sample_rate=info.sample_rate,
        num_channels=info.num_channels,
        joint_names=list(info.joint_names),
        encoding=encoding,
        emg=_encode(chunk.emg, encoding),
        angles=None if chunk.joint_angles is None else _encode(chunk.joint_angles, encoding),
    )
