"""The ``predict`` job's references: the model it names and the session files it reads.

The gateway calls :func:`check` before queuing (404 for a model, version, dataset or file that does not
exist, 403 for a location outside the store and ALLOWED_DATA_ROOTS, 422 for a reference that cannot be
one) and the worker resolves the same references again through :func:`sources` and :func:`model`, so a
row written some other way is held to the same rules. The work itself is :mod:`emgpose.train.batch`.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from emgpose import access
from emgpose.errors import InvalidInput, NotFound
from emgpose.formats.metadata import METADATA_FILE, read_metadata
from emgpose.jobs import repo
from emgpose.jobs.schemas import PredictParams
from emgpose.names import SESSION_SUFFIX
from emgpose.settings import Settings
from emgpose.store import open_store
from emgpose.train.batch import SessionSource
from emgpose.train.bundle import ModelRef, parse_model_ref

OUTPUTS = "predictions"  # a job's outputs: predictions/<job id>/ in the object store


def output_prefix(job_id: str) -> str:
    return f"{OUTPUTS}/{job_id}"


def model(params: PredictParams, settings: Settings) -> tuple[ModelRef, str]:
    """The model reference and the version it resolves to now (``version``, else the promoted ``latest``)."""
    access.confine_model_ref(params.model, settings, "params.model")  # 403 outside the roots, before any I/O
    ref = parse_model_ref(params.model, settings.store_uri)
    if params.version is not None and ref.version not in (None, params.version):
        raise InvalidInput(
            f"params.model {params.model!r} names version {ref.version!r} but params.version is "
            f"{params.version!r}: give the version in one place"
        )
    return ref, ref.registry.resolve(ref.name, params.version or ref.version)


def sources(session: Session, params: PredictParams, settings: Settings) -> tuple[list[SessionSource], str | None]:
    """The session files a job reads, checked to exist, and the id of the dataset when it names one."""
    if params.dataset is not None:
        return _dataset(session, params, settings)
    if params.prefix is not None:
        return _prefix(params.prefix, settings), None
    return _files(params.files or [], settings), None


def _dataset(session: Session, params: PredictParams, settings: Settings) -> tuple[list[SessionSource], str | None]:
    uri, dataset_id = repo.resolve_dataset(session, params.dataset or "", "raw", settings)  # 403 outside
    store = open_store(uri, settings)
    if not store.exists(METADATA_FILE):
        raise NotFound(f"no raw dataset at {uri}: {METADATA_FILE} not found (a predict job reads raw sessions)")
    rows = read_metadata(store.get_bytes(METADATA_FILE).decode("utf-8"), source=store.url(METADATA_FILE))
    if params.split is not None:
        rows = [row for row in rows if row.split == params.split]
        if not rows:
            raise NotFound(f"{store.url(METADATA_FILE)} lists no session of split {params.split!r}")
    for row in rows:
        if not store.exists(row.file):
            raise NotFound(f"{store.url(row.file)}: file named in {METADATA_FILE} does not exist")
    return [SessionSource(row.filename, store, row.file, row.start, row.end) for row in rows], dataset_id


def _prefix(prefix: str, settings: Settings) -> list[SessionSource]:
    uri = access.confine(prefix, settings, "params.prefix")
    store = open_store(uri, settings)
    keys = sorted(k for k in store.list() if k.endswith(SESSION_SUFFIX))
    if not keys:
        raise NotFound(f"params.prefix: no {SESSION_SUFFIX} session files below {uri}")
    return [SessionSource(k[: -len(SESSION_SUFFIX)], store, k) for k in keys]


def _files(files: list[str], settings: Settings) -> list[SessionSource]:
    found: dict[str, SessionSource] = {}
    for i, text in enumerate(files):
        field = f"params.files[{i}]"
        uri = access.confine(text, settings, field)
        parent, _, key = uri.rpartition("/")
        if not key.endswith(SESSION_SUFFIX) or key == SESSION_SUFFIX:
            raise InvalidInput(f"{field} {uri!r} is not a session file: the name must end with {SESSION_SUFFIX}")
        store = open_store(parent, settings)
        if not store.exists(key):
            raise NotFound(f"{field}: {uri} does not exist")
        name = key[: -len(SESSION_SUFFIX)]
        if name in found:
            raise InvalidInput(
                f"{field} {uri!r} and {found[name].url!r} share the name {name!r}, and so would their outputs; "
                f"predict them in separate jobs or rename one"
            )
        found[name] = SessionSource(name, store, key)
    return list(found.values())


def check(session: Session, params: PredictParams, settings: Settings) -> str | None:
    """Everything a submission can check without reading the sessions; returns the dataset's id, if any."""
    model(params, settings)
    _, dataset_id = sources(session, params, settings)
    return dataset_id
