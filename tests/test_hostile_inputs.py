"""Hostile inputs against the real gateway (uvicorn, PostgreSQL, a local store, the filesystem broker).

Every path-like field gets the same corpus: traversal (``../``, ``..%2f``, ``%2e%2e/``, backslashes), NUL
and other control characters, text that is not UTF-8, over-long and non-ASCII names, encoded separators,
absolute server paths, foreign buckets and sibling prefixes (``.../allowed-evil`` beside ``.../allowed``),
and a symbolic link inside the root that leads out. The fields: the register ``uri``, every job type's
``dataset``, evaluate's ``model``, train and dataset ``name``s, uploaded file names, and the model names
and versions in ``/v1/models/...`` paths. Each case has its expected status: 403 outside the roots, 422
malformed, 404 only for something inside the roots that does not exist.

A refused request leaves everything as it was: no row (or, for an upload, only its ``failed`` row), no
object in the store, no message on the broker, and no connection to S3 (the gateway's S3 endpoint is a
canary that counts connections: a foreign bucket must be refused from the URI alone). An existing and a
missing server folder outside the roots get the same answer: no existence oracle.
"""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Gateway, publish_tiny, serve_gateway, stored
from pydantic import ValidationError
from sqlalchemy import func, select

from emgpose.access import OutsideRoots, confine
from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, Job
from emgpose.names import check_file_name
from emgpose.settings import Settings

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, synth_folder

S3_ROOT = "s3://emgpose-data/lab"  # an allowed S3 prefix; nothing may ever be fetched from S3 here
MODEL = "hand"  # a model published in the store, so that evaluate's other fields can be tested alone


class Canary:
    """A TCP listener that counts connections: the gateway's S3 endpoint, which no case may reach."""

    def __init__(self) -> None:
        self.connections = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@dataclass
class Setup:
    gw: Gateway
    base: Path  # the module's folder: allowed/, outside/, allowed-evil/, store/
    allowed: Path  # in ALLOWED_DATA_ROOTS; holds the dataset lab/ and the link escape/ -> outside/
    canary: Canary
    pre: str  # a ready preprocessed dataset inside the store
    metadata: bytes  # a valid metadata.csv, sent beside a hostile file name

    def fill(self, template: str) -> str:
        return template.format(base=self.base, allowed=self.allowed)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pg_url: str, synth_folder: Path) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("hostile")
    allowed = base / "allowed"
    shutil.copytree(synth_folder, allowed / "lab")
    shutil.copytree(synth_folder, base / "outside")  # a real dataset outside the roots
    shutil.copytree(synth_folder, base / "allowed-evil")  # a sibling whose name starts like the root's
    (allowed / "escape").symlink_to(base / "outside", target_is_directory=True)
    with Canary() as canary, pytest.MonkeyPatch.context() as mp:
        env = {
            "ALLOWED_DATA_ROOTS": f"{allowed.as_uri()},{S3_ROOT}",
            "S3_ENDPOINT_URL": canary.url,
            "S3_MAX_ATTEMPTS": "1",
            "S3_CONNECT_TIMEOUT": "1",
        }
        with serve_gateway(mp, base, pg_url, **env) as gw:
            publish_tiny(gw.settings.store_uri, MODEL, "v1", "2026-11-01T00:00:00Z", 12.0)
            with session_scope(gw.settings.database_url) as session:
                uri = f"{gw.settings.store_uri}/preprocessed/pre"
                row = Dataset(name="pre", kind="preprocessed", source="job", uri=uri, state="ready", info={})
                session.add(row)
            metadata = (synth_folder / "metadata.csv").read_bytes()
            yield Setup(gw, base, allowed, canary, row.id, metadata)


def _state(setup: Setup) -> dict[str, Any]:
    """Everything a request could change: rows, store objects, broker messages, S3 connections."""
    with session_scope(setup.gw.settings.database_url) as session:
        datasets = session.scalar(select(func.count()).select_from(Dataset))
        ready = session.scalar(select(func.count()).select_from(Dataset).where(Dataset.state == "ready"))
        jobs = session.scalar(select(func.count()).select_from(Job))
    return {
        "datasets": datasets,
        "ready": ready,
        "jobs": jobs,
        "store": stored(setup.gw.store_root),
        "queued": (setup.gw.queued("preprocess"), setup.gw.queued("train")),
        "s3_connections": setup.canary.connections,
        "outside": sorted(p.name for p in (setup.base / "outside").iterdir()),
    }


def _post_json(setup: Setup, path: str, body: dict[str, Any]) -> httpx.Response:
    """POSTs ``body`` as ASCII JSON (``json.dumps`` escapes NUL and lone surrogates as ``\\u....``)."""
    content = json.dumps(body).encode()
    with setup.gw.client() as client:
        return client.post(path, content=content, headers={"content-type": "application/json"})


def _refused(setup: Setup, path: str, body: dict[str, Any], status: int) -> httpx.Response:
    before = _state(setup)
    response = _post_json(setup, path, body)
    assert response.status_code == status, response.text
    assert _state(setup) == before, "a refused request changed something"
    return response


# --- the register uri ---------------------------------------------------------------------------------

LOCATION_CASES = [
    # (case, location template, status); {allowed} is the allowed folder, {base} the folder holding it
    ("absolute-server-path", "/etc", 403),
    ("existing-dataset-outside", "{base}/outside", 403),
    ("existing-dataset-outside-file-uri", "file://{base}/outside", 403),
    ("missing-folder-outside", "{base}/nowhere", 403),
    ("sibling-prefix-folder", "{base}/allowed-evil", 403),
    ("link-inside-leading-out", "{allowed}/escape", 403),
    ("foreign-bucket", "s3://other-bucket/lab", 403),
    ("allowed-bucket-root", "s3://emgpose-data", 403),
    ("sibling-prefix-bucket", "s3://emgpose-data/lab-evil", 403),
    ("traversal", "{allowed}/../outside", 422),
    ("traversal-after-a-folder", "{allowed}/lab/../../outside", 422),
    ("traversal-file-uri", "file://{allowed}/../outside", 422),
    ("traversal-s3", "s3://emgpose-data/lab/../secret", 422),
    ("encoded-slash", "{allowed}/..%2foutside", 422),
    ("encoded-slash-upper", "{allowed}%2F..%2Foutside", 422),
    ("encoded-dots", "{allowed}/%2e%2e/outside", 422),
    ("encoded-dots-s3", "s3://emgpose-data/lab/%2e%2e/secret", 422),
    ("backslashes", "{allowed}\\..\\outside", 422),
    ("dot-segment", "{allowed}/./lab", 422),
    ("empty-segment", "{allowed}//lab", 422),
    ("nul", "{allowed}/lab\x00", 422),
    ("nul-before-traversal", "{allowed}/lab\x00/../../outside", 422),
    ("control-character", "{allowed}/la\x1bb", 422),
    ("line-break", "{allowed}/la\nb", 422),
    ("not-utf8", "{allowed}/\udcff", 422),
    ("over-long-non-ascii-segment", "{allowed}/" + "é" * 200, 422),
    ("over-long-location", "{allowed}/" + "a/" * 600, 422),
    ("relative", "lab", 422),
    ("relative-dot", "./lab", 422),
    ("relative-up", "../../etc", 422),
    ("file-uri-with-host", "file://evil.example/etc", 422),
    ("cloud-metadata-url", "http://169.254.169.254/latest/meta-data", 422),
    ("invalid-bucket", "s3://EVIL/lab", 422),
    ("inside-but-missing", "{allowed}/missing", 404),
]


@pytest.mark.parametrize(("case", "template", "status"), LOCATION_CASES, ids=[c[0] for c in LOCATION_CASES])
def test_register_uri(setup: Setup, case: str, template: str, status: int) -> None:
    response = _refused(setup, "/v1/datasets/register", {"name": "x", "uri": setup.fill(template)}, status)
    if status == 403:
        assert "is outside ALLOWED_DATA_ROOTS" in response.json()["detail"]
    if status == 404:
        assert "metadata.csv not found" in response.json()["detail"]


def test_register_answers_the_same_for_an_existing_and_a_missing_folder_outside(setup: Setup) -> None:
    existing, missing = setup.fill("{base}/outside"), setup.fill("{base}/nowhere")
    assert (setup.base / "outside" / "metadata.csv").is_file() and not (setup.base / "nowhere").exists()
    answers = [_refused(setup, "/v1/datasets/register", {"name": "x", "uri": uri}, 403) for uri in (existing, missing)]
    assert answers[0].json()["detail"].replace(existing, "<uri>") == answers[1].json()["detail"].replace(
        missing, "<uri>"
    )
    assert answers[0].headers.keys() == answers[1].headers.keys()


def test_register_inside_the_roots_still_works(setup: Setup) -> None:
    response = _post_json(setup, "/v1/datasets/register", {"name": "Kraków lab ✓", "uri": setup.fill("{allowed}/lab/")})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["uri"] == (setup.allowed / "lab").as_uri() and body["name"] == "Kraków lab ✓"
    job = _post_json(setup, "/v1/jobs", {"type": "preprocess", "params": {"dataset": body["id"]}})
    assert job.status_code == 202, job.text
    by_uri = _post_json(setup, "/v1/jobs", {"type": "benchmark", "params": {"dataset": body["uri"]}})
    assert by_uri.status_code == 202, by_uri.text
    assert setup.canary.connections == 0


# --- every job's dataset ------------------------------------------------------------------------------

DATASET_CASES = [
    *[c for c in LOCATION_CASES if c[0] != "inside-but-missing"],
    ("not-an-id", "abc", 422),
    ("id-with-traversal", "../../etc/passwd", 422),
    ("id-with-nul", "0" * 31 + "\x00", 422),
    ("upper-case-id", "A" * 32, 422),
    ("unknown-id", "0" * 32, 404),
    ("inside-but-missing", "{allowed}/missing", 404),
]
JOB_TYPES = ["preprocess", "train", "evaluate", "benchmark"]


@pytest.mark.parametrize("job_type", JOB_TYPES)
@pytest.mark.parametrize(("case", "template", "status"), DATASET_CASES, ids=[c[0] for c in DATASET_CASES])
def test_job_dataset(setup: Setup, job_type: str, case: str, template: str, status: int) -> None:
    params: dict[str, Any] = {"dataset": setup.fill(template)}
    if job_type == "evaluate":
        params["model"] = MODEL
    response = _refused(setup, "/v1/jobs", {"type": job_type, "params": params}, status)
    if status == 403:
        assert "params.dataset" in response.text and "is outside ALLOWED_DATA_ROOTS" in response.text


def test_a_dataset_row_outside_the_roots_is_refused_by_id(setup: Setup) -> None:
    """A row written some other way (before the roots were narrowed, by hand) is not a way out."""
    with session_scope(setup.gw.settings.database_url) as session:
        uri = (setup.base / "outside").as_uri()
        row = Dataset(name="old", kind="raw", source="registered", uri=uri, state="ready", info={})
        session.add(row)
    try:
        response = _refused(setup, "/v1/jobs", {"type": "preprocess", "params": {"dataset": row.id}}, 403)
        assert f"the location of dataset {row.id}" in response.text and "ALLOWED_DATA_ROOTS" in response.text
    finally:
        with session_scope(setup.gw.settings.database_url) as session:
            session.delete(session.get(Dataset, row.id))


def test_job_dataset_answers_the_same_for_an_existing_and_a_missing_folder_outside(setup: Setup) -> None:
    existing, missing = setup.fill("{base}/outside"), setup.fill("{base}/nowhere")
    answers = [
        _refused(setup, "/v1/jobs", {"type": "preprocess", "params": {"dataset": uri}}, 403)
        for uri in (existing, missing)
    ]
    assert answers[0].json()["detail"].replace(existing, "<uri>") == answers[1].json()["detail"].replace(
        missing, "<uri>"
    )


# --- evaluate's model ---------------------------------------------------------------------------------

MODEL_CASES = [
    ("absolute-server-path", "/etc/models/hand", 403),
    ("existing-folder-outside", "{base}/outside/models/hand", 403),
    ("sibling-prefix-folder", "{base}/allowed-evil/models/hand", 403),
    ("link-inside-leading-out", "{allowed}/escape/models/hand", 403),
    ("foreign-bucket", "s3://other-bucket/models/hand", 403),
    ("sibling-prefix-bucket", "s3://emgpose-data/lab-evil/models/hand", 403),
    ("traversal", "{allowed}/../outside/models/hand", 422),
    ("encoded-dots", "{allowed}/%2e%2e/models/hand", 422),
    ("encoded-slash", "{allowed}/..%2fmodels/hand", 422),
    ("backslashes", "{allowed}\\..\\models\\hand", 422),
    ("nul-in-location", "{allowed}\x00/models/hand", 422),
    ("relative-location", "./models/hand", 422),
    ("not-a-model-location", "{allowed}/lab", 422),
    ("version-traversal", "hand@../../etc", 422),
    ("version-encoded", "hand@%2e%2e", 422),
    ("name-traversal", "../hand", 422),
    ("name-with-folders", "hand/../../etc", 422),
    ("name-with-backslash", "hand\\..\\x", 422),
    ("name-with-nul", "hand\x00", 422),
    ("over-long-name", "a" * 65, 422),
    ("non-ascii-name", "händ", 422),
    ("latest-as-name", "latest", 422),
    ("missing-model", "ghost", 404),
    ("missing-version", "hand@v9", 404),
    ("missing-model-inside-root", "{allowed}/models/ghost", 404),
]


@pytest.mark.parametrize(("case", "template", "status"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_evaluate_model(setup: Setup, case: str, template: str, status: int) -> None:
    body = {"type": "evaluate", "params": {"model": setup.fill(template), "dataset": setup.pre}}
    response = _refused(setup, "/v1/jobs", body, status)
    if status == 403:
        assert "params.model" in response.text and "is outside ALLOWED_DATA_ROOTS" in response.text
    if status == 422:
        assert "model" in response.text


def test_evaluate_with_a_model_inside_the_roots_is_queued(setup: Setup) -> None:
    model = f"{setup.gw.settings.store_uri}/models/{MODEL}/v1"
    response = _post_json(setup, "/v1/jobs", {"type": "evaluate", "params": {"model": model, "dataset": setup.pre}})
    assert response.status_code == 202, response.text


# --- names --------------------------------------------------------------------------------------------

NAME_CASES = [
    # (case, job type or "register", field value, status, words the answer must hold)
    ("train-name-65", "train", "a" * 65, 422, ["name", "1-64"]),
    ("train-name-100", "train", "b" * 100, 422, ["name", "1-64"]),
    ("train-name-traversal", "train", "../x", 422, ["name", "1-64"]),
    ("train-name-folder", "train", "a/b", 422, ["name", "1-64"]),
    ("train-name-backslash", "train", "a\\b", 422, ["name", "1-64"]),
    ("train-name-nul", "train", "a\x00", 422, ["name", "U+0000"]),
    ("train-name-non-ascii", "train", "händ", 422, ["name", "1-64"]),
    ("train-name-latest", "train", "latest", 422, ["name", "latest"]),
    ("train-name-hidden", "train", ".hidden", 422, ["name", "1-64"]),
    ("preprocess-name-nul", "preprocess", "lab\x00", 422, ["name", "U+0000"]),
    ("preprocess-name-line-break", "preprocess", "lab\nx", 422, ["name", "U+000A"]),
    ("preprocess-name-over-long", "preprocess", "é" * 201, 422, ["name", "1-200"]),
    ("preprocess-name-blank", "preprocess", "   ", 422, ["name", "1-200"]),
    ("preprocess-name-not-utf8", "preprocess", "lab\udcff", 422, ["name"]),
    ("register-name-nul", "register", "lab\x00", 422, ["name", "U+0000"]),
    ("register-name-over-long", "register", "x" * 201, 422, ["name"]),
    ("register-name-blank", "register", "", 422, ["name"]),
]


@pytest.mark.parametrize(("case", "where", "value", "status", "words"), NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_names_are_refused_at_submission(
    setup: Setup, case: str, where: str, value: str, status: int, words: list[str]
) -> None:
    if where == "register":
        path, body = "/v1/datasets/register", {"name": value, "uri": setup.fill("{allowed}/lab")}
    else:
        dataset = setup.pre if where == "train" else setup.fill("{allowed}/lab")
        path, body = "/v1/jobs", {"type": where, "params": {"dataset": dataset, "name": value}}
    response = _refused(setup, path, body, status)
    for word in words:
        assert word in response.text


def test_a_64_character_model_name_is_accepted(setup: Setup) -> None:
    body = {"type": "train", "params": {"dataset": setup.pre, "name": "m" * 64}}
    response = _post_json(setup, "/v1/jobs", body)
    assert response.status_code == 202, response.text


# --- uploaded file names ------------------------------------------------------------------------------

FILE_NAME_CASES = [
    ("traversal", b"../../etc/cron.d/x.hdf5"),
    ("absolute", b"/etc/passwd.hdf5"),
    ("backslashes", b"..\\..\\x.hdf5"),
    ("encoded-slash", b"..%2f..%2fx.hdf5"),
    ("encoded-inside", b"a%2fb.hdf5"),
    ("encoded-dots", b"%2e%2e.hdf5"),
    ("nul", b"x\x00.hdf5"),
    ("control-character", b"x\x1b.hdf5"),
    ("not-utf8", b"\xff\xfe.hdf5"),
    ("255-non-ascii-characters", ("é" * 250 + ".hdf5").encode()),  # 505 bytes: OSError before, a 500
    ("256-bytes", ("a" * 251 + ".hdf5").encode()),
    ("hidden", b".x.hdf5"),
    ("dot-dot", b".."),
    ("not-a-session", b"notes.txt"),
    ("empty", b""),
]


def _multipart(parts: list[tuple[bytes, bytes | None, bytes]]) -> tuple[bytes, str]:
    """A multipart body built by hand, so that file names go out byte for byte (NUL, invalid UTF-8)."""
    boundary = uuid.uuid4().hex.encode()
    body = b""
    for field, filename, data in parts:
        disposition = b'form-data; name="' + field + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n", f"multipart/form-data; boundary={boundary.decode()}"


@pytest.mark.parametrize(("case", "filename"), FILE_NAME_CASES, ids=[c[0] for c in FILE_NAME_CASES])
def test_upload_file_names(setup: Setup, case: str, filename: bytes) -> None:
    before = _state(setup)
    body, content_type = _multipart(
        [(b"name", None, b"lab"), (b"files", b"metadata.csv", setup.metadata), (b"files", filename, b"\x89HDF")]
    )
    with setup.gw.client() as client:
        response = client.post("/v1/datasets", content=body, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert "file name" in response.text
    after = _state(setup)
    assert after["store"] == before["store"], "a refused upload left files in the store"
    assert after["ready"] == before["ready"] and after["jobs"] == before["jobs"]
    assert after["datasets"] == before["datasets"] + 1  # the upload's own row, marked failed with the reason
    with setup.gw.client() as client:
        newest = client.get("/v1/datasets", params={"limit": 1}).json()["items"][0]
    assert newest["state"] == "failed" and newest["error"] == response.json()["detail"]


def test_the_file_name_rule_takes_non_ascii_names_that_fit() -> None:
    assert check_file_name("sesión-ü.hdf5") == "sesión-ü.hdf5"
    assert check_file_name("é" * 125 + ".hdf5")  # 255 bytes


# --- model names and versions in paths ----------------------------------------------------------------

PATH_CASES = [
    # (case, method, raw path as sent, JSON body or None, status)
    ("name-dot-dot", "GET", "/v1/models/..", None, 422),
    ("name-encoded-dots", "GET", "/v1/models/%2e%2e", None, 422),
    ("name-nul", "GET", "/v1/models/x%00", None, 422),
    ("name-backslash", "GET", "/v1/models/a%5Cb", None, 422),
    ("name-non-ascii", "GET", "/v1/models/h%C3%A4nd", None, 422),
    ("name-not-utf8", "GET", "/v1/models/%FF", None, 422),
    ("name-over-long", "GET", "/v1/models/" + "a" * 65, None, 422),
    ("version-encoded-dots", "GET", f"/v1/models/{MODEL}/versions/%2e%2e", None, 422),
    ("version-backslash", "GET", f"/v1/models/{MODEL}/versions/..%5C..", None, 422),
    ("version-nul", "GET", f"/v1/models/{MODEL}/versions/v1%00", None, 422),
    ("promote-name-dot-dot", "POST", "/v1/models/%2e%2e/promote", {"version": "v1"}, 422),
    ("promote-version-traversal", "POST", f"/v1/models/{MODEL}/promote", {"version": "../../x"}, 422),
    ("promote-version-nul", "POST", f"/v1/models/{MODEL}/promote", {"version": "v1\x00"}, 422),
    # An encoded '/' decodes to a path no route has: the router answers, no name is ever looked up.
    ("name-encoded-slash", "GET", "/v1/models/..%2F..%2Fetc", None, 404),
    ("version-encoded-slash", "GET", f"/v1/models/{MODEL}/versions/..%2F..%2Fx", None, 404),
    ("missing-model", "GET", "/v1/models/ghost", None, 404),
    ("missing-version", "GET", f"/v1/models/{MODEL}/versions/v9", None, 404),
    ("dataset-id-nul", "GET", "/v1/datasets/%00", None, 404),
    ("dataset-id-traversal", "GET", "/v1/datasets/..%5C..", None, 404),
    ("job-id-nul", "GET", "/v1/jobs/%00", None, 404),
    ("cancel-job-id-nul", "POST", "/v1/jobs/%00/cancel", None, 404),
]


def _raw_request(url: str, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes]:
    """Sends ``path`` exactly as written (httpx would normalise ``..`` and re-encode)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        headers = {"content-type": "application/json"} if body is not None else {}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize(("case", "method", "path", "body", "status"), PATH_CASES, ids=[c[0] for c in PATH_CASES])
def test_model_and_id_paths(setup: Setup, case: str, method: str, path: str, body: Any, status: int) -> None:
    before = _state(setup)
    latest = (setup.gw.store_root / "models" / MODEL / "latest").read_bytes()
    got, text = _raw_request(setup.gw.url, method, path, body)
    assert got == status, text
    assert _state(setup) == before
    assert (setup.gw.store_root / "models" / MODEL / "latest").read_bytes() == latest


def test_listing_jobs_of_a_nul_dataset_id_finds_none(setup: Setup) -> None:
    status, text = _raw_request(setup.gw.url, "GET", "/v1/jobs?dataset_id=%00", None)
    assert status == 200 and json.loads(text)["total"] == 0


# --- the setting ----------------------------------------------------------------------------------------


def test_allowed_data_roots_is_read_as_a_list_and_checked_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLOWED_DATA_ROOTS", " s3://lab-data/emg , /srv/data ,")
    assert Settings().allowed_data_roots == ["s3://lab-data/emg", "/srv/data"]
    monkeypatch.setenv("ALLOWED_DATA_ROOTS", '["/srv/a,b", "file:///srv/c"]')  # JSON: a comma inside a name
    assert Settings().allowed_data_roots == ["/srv/a,b", "file:///srv/c"]
    monkeypatch.setenv("ALLOWED_DATA_ROOTS", "")
    assert Settings().allowed_data_roots == []
    for bad, rule in [
        ("/srv/../etc", "'..' segment"),
        ("s3://Lab/x", "not an S3 bucket name"),
        ("ftp://x/y", "scheme"),
    ]:
        monkeypatch.setenv("ALLOWED_DATA_ROOTS", bad)
        with pytest.raises(ValidationError, match=rf"(?s)allowed_data_roots.*ALLOWED_DATA_ROOTS.*{re.escape(rule)}"):
            Settings()


def test_roots_compare_segment_by_segment_and_the_store_is_always_allowed(tmp_path: Path) -> None:
    settings = Settings(store_uri=(tmp_path / "store").as_uri(), allowed_data_roots=["s3://lab-data/emg", "/srv/data"])
    assert confine("s3://lab-data/emg/", settings) == "s3://lab-data/emg"
    assert confine("s3://lab-data/emg/day1", settings) == "s3://lab-data/emg/day1"
    assert confine("/srv/data/x/", settings) == "file:///srv/data/x"
    assert confine(f"{tmp_path}/store/raw/abc", settings) == f"file://{tmp_path}/store/raw/abc"
    for outside in ("s3://lab-data/emg-evil", "s3://lab-data", "s3://lab-data2/emg", "/srv/database", "/srv", "/"):
        with pytest.raises(OutsideRoots, match="is outside ALLOWED_DATA_ROOTS"):
            confine(outside, settings)
    empty = Settings(store_uri=(tmp_path / "store").as_uri(), allowed_data_roots=[])  # the default: the store only
    with pytest.raises(OutsideRoots, match=r"ALLOWED_DATA_ROOTS \(none set\)"):
        confine("/srv/data/x", empty)
