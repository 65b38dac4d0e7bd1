"""Gateway datasets API over real HTTP: streamed uploads (local store and S3), their failures, register,
list and show. PostgreSQL for the rows; the store is inspected directly."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import pytest
from gateway_support import serve_gateway, stored, upload_parts

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, Job

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder


def _upload(gw, folder: Path, names: list[str] | None = None, name: str | None = "lab"):
    data = {"name": name} if name is not None else {}
    with gw.client() as client:
        return client.post("/v1/datasets", data=data, files=upload_parts(folder, names))


def _assert_nothing_kept(gw, response) -> None:
    """A refused upload: no ready dataset, its row failed with the reason, no object left in the store."""
    with gw.client() as client:
        items = client.get("/v1/datasets").json()["items"]
    assert [d["state"] for d in items] == ["failed"]
    assert items[0]["error"] == response.json()["detail"] and items[0]["name"] == "lab"
    assert stored(gw.store_root) == []


def test_upload_streams_files_to_the_store_and_validates(gateway, synth_folder: Path) -> None:
    response = _upload(gateway, synth_folder)
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/datasets/{body['id']}"
    assert body["state"] == "ready" and body["kind"] == "raw" and body["source"] == "upload"
    assert body["name"] == "lab" and body["files"] == 5
    sent = sorted(p.name for p in synth_folder.iterdir())
    assert body["bytes"] == sum((synth_folder / n).stat().st_size for n in sent)
    assert body["info"]["sessions"] == 4 and body["info"]["num_channels"] == 16
    assert body["info"]["sample_rate"] == 2000.0 and len(body["info"]["joint_names"]) == 20
    assert body["uri"] == (gateway.store_root / "raw" / body["id"]).as_uri()
    assert stored(gateway.store_root) == [f"raw/{body['id']}/{n}" for n in sent]
    for name in sent:  # byte for byte
        assert (gateway.store_root / "raw" / body["id"] / name).read_bytes() == (synth_folder / name).read_bytes()
    with gateway.client() as client:
        shown = client.get(f"/v1/datasets/{body['id']}").json()
        assert shown["state"] == "ready" and shown["processing"] is None
        listed = client.get("/v1/datasets", params={"kind": "raw"}).json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == body["id"]
        assert client.get("/v1/datasets", params={"kind": "preprocessed"}).json()["total"] == 0


def test_upload_without_metadata_is_refused(gateway, synth_folder: Path) -> None:
    sessions = sorted(p.name for p in synth_folder.glob("*.hdf5"))
    response = _upload(gateway, synth_folder, sessions)
    assert response.status_code == 422
    assert "no metadata.csv among the uploaded files" in response.json()["detail"]
    _assert_nothing_kept(gateway, response)


def test_upload_missing_a_listed_session_is_refused(gateway, synth_folder: Path) -> None:
    names = ["metadata.csv", *sorted(p.name for p in synth_folder.glob("*.hdf5"))]
    left_out = names.pop()
    response = _upload(gateway, synth_folder, names)
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"metadata.csv lists {left_out!r} but it was not uploaded; upload every file the metadata lists"
    )
    _assert_nothing_kept(gateway, response)


def test_upload_with_a_corrupt_session_is_refused(gateway, synth_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(synth_folder, folder)
    victim = sorted(folder.glob("*.hdf5"))[1]
    victim.write_bytes(b"not an HDF5 file" * 100)
    response = _upload(gateway, folder)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert victim.name in detail and "not a readable HDF5 file" in detail
    _assert_nothing_kept(gateway, response)


def test_upload_with_a_session_in_the_wrong_layout_is_refused(gateway, synth_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "layout"
    shutil.copytree(synth_folder, folder)
    victim = sorted(folder.glob("*.hdf5"))[0]
    with h5py.File(victim, "a") as f:
        del f["emg2pose"].attrs["sample_rate"]
    response = _upload(gateway, folder)
    assert response.status_code == 422
    assert "group attribute 'sample_rate' is required" in response.json()["detail"]
    _assert_nothing_kept(gateway, response)


def test_upload_over_the_size_limit_is_413_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path
) -> None:
    with serve_gateway(monkeypatch, tmp_path, pg_url, MAX_UPLOAD_MB="0.5") as gw:
        response = _upload(gw, synth_folder)  # metadata.csv fits and is stored first; the first session does not
        assert response.status_code == 413
        first = sorted(p.name for p in synth_folder.glob("*.hdf5"))[0]
        assert response.json()["detail"].startswith(f"file {first!r} is larger than the upload limit of 0.5 MB")
        _assert_nothing_kept(gw, response)


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": None}, "form field 'name' is required"),
        ({"extra": "x"}, "unknown form field 'extra'"),
        ({"file": "notes.txt"}, "file name 'notes.txt' is not usable: it is neither a session file (*.hdf5) nor"),
        ({"file": "metadata.csv"}, "file 'metadata.csv' was sent twice"),
    ],
)
def test_upload_form_rules(gateway, synth_folder: Path, form: dict, message: str) -> None:
    data = {"name": "lab"} if form.get("name", "lab") else {}
    if "extra" in form:
        data["extra"] = form["extra"]
    files = upload_parts(synth_folder)
    if "file" in form:
        files.append(("files", (form["file"], b"x", "text/plain")))
    with gateway.client() as client:
        response = client.post("/v1/datasets", data=data, files=files)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert stored(gateway.store_root) == []


def test_upload_with_the_name_after_the_files(gateway, synth_folder: Path) -> None:
    boundary = "emgpose-test-boundary"
    parts = [
        (f'name="files"; filename="{name}"', (synth_folder / name).read_bytes())
        for name in sorted(p.name for p in synth_folder.iterdir())
    ] + [('name="name"', b"late name")]
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Disposition: form-data; {disposition}\r\n\r\n".encode() + data + b"\r\n"
            for disposition, data in parts
        )
        + f"--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    with gateway.client() as client:
        response = client.post("/v1/datasets", content=body, headers=headers)
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "late name" and response.json()["files"] == 5
        truncated = client.post("/v1/datasets", content=body[: len(body) // 2], headers=headers)
        assert truncated.json() == {"detail": "the multipart body ended in the middle of a part"}
        assert truncated.status_code == 422
    assert len(stored(gateway.store_root)) == 5  # the first upload's files only


def test_upload_that_is_not_multipart_is_415(gateway) -> None:
    with gateway.client() as client:
        response = client.post("/v1/datasets", json={"name": "lab"})
    assert response.status_code == 415
    assert "multipart/form-data" in response.json()["detail"]


def test_upload_to_s3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path, s3_store_uri: str, s3_client
) -> None:
    bucket = s3_store_uri.split("/")[2]
    with serve_gateway(monkeypatch, tmp_path, pg_url, STORE_URI=s3_store_uri) as gw:
        response = _upload(gw, synth_folder)
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["uri"] == f"{s3_store_uri}/raw/{body['id']}" and body["state"] == "ready"
        keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))
        assert keys == sorted(f"prefix/raw/{body['id']}/{p.name}" for p in synth_folder.iterdir())
        # a refused upload leaves no object behind, not even a temporary one
        names = ["metadata.csv", *sorted(p.name for p in synth_folder.glob("*.hdf5"))[:-1]]
        assert _upload(gw, synth_folder, names).status_code == 422
        after = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))
        assert after == keys


# --- register, show -----------------------------------------------------------------------------------


def test_register_an_existing_prefix(gateway, synth_folder: Path) -> None:
    with gateway.client() as client:
        response = client.post("/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["source"] == "registered" and body["state"] == "ready" and body["uri"] == synth_folder.as_uri()
        assert body["files"] == 5 and body["bytes"] is None and body["info"]["sessions"] == 4
        assert response.headers["location"] == f"/v1/datasets/{body['id']}"
        again = client.post("/v1/datasets/register", json={"name": "again", "uri": str(synth_folder)})
        assert again.status_code == 409 and body["id"] in again.json()["detail"]


def test_register_refusals(gateway, synth_folder: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(synth_folder, broken)
    missing = sorted(broken.glob("*.hdf5"))[0]
    missing.unlink()
    with gateway.client() as client:
        nothing = client.post("/v1/datasets/register", json={"name": "x", "uri": (tmp_path / "none").as_uri()})
        assert nothing.status_code == 404 and "metadata.csv not found" in nothing.json()["detail"]
        incomplete = client.post("/v1/datasets/register", json={"name": "x", "uri": broken.as_uri()})
        assert incomplete.status_code == 422
        assert missing.name in incomplete.json()["detail"] and "does not exist" in incomplete.json()["detail"]
        unknown = client.post("/v1/datasets/register", json={"name": "x", "uri": "ftp://host/x", "size": 1})
        assert unknown.status_code == 422
        assert [e["loc"] for e in unknown.json()["errors"]] == [["body", "size"]]
        assert unknown.json()["detail"] == "invalid request: size: Extra inputs are not permitted"
        scheme = client.post("/v1/datasets/register", json={"name": "x", "uri": "ftp://host/x"})
        assert scheme.status_code == 422 and "unsupported store URI" in scheme.json()["detail"]
        assert client.get("/v1/datasets").json()["total"] == 0


def test_show_reports_the_latest_preprocess_job(gateway, synth_folder: Path) -> None:
    with gateway.client() as client:
        raw = client.post("/v1/datasets/register", json={"name": "lab", "uri": synth_folder.as_uri()}).json()
        job = client.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": raw["id"]}}).json()
        processing = client.get(f"/v1/datasets/{raw['id']}").json()["processing"]
        assert processing == {
            "job_id": job["id"],
            "job": f"/v1/jobs/{job['id']}",
            "state": "queued",
            "stage": "queued",
            "progress": 0.0,
            "dataset_id": None,
            "dataset": None,
        }
        # the job finishes and registers its output (what the preprocess worker does)
        with session_scope(gateway.settings.database_url) as session:
            row = session.get(Job, job["id"])
            assert row.dataset_id == raw["id"]
            row.state = "succeeded"
            out = Dataset(name="pre", kind="preprocessed", source="job", uri="file:///x", state="ready", info={})
            out.parent_id, out.job_id = raw["id"], job["id"]
            session.add(out)
        processing = client.get(f"/v1/datasets/{raw['id']}").json()["processing"]
        assert processing["state"] == "succeeded"
        assert processing["dataset_id"] == out.id and processing["dataset"] == f"/v1/datasets/{out.id}"
        assert client.get("/v1/datasets/nope").status_code == 404
        assert client.get("/v1/datasets/nope").json() == {"detail": "no dataset 'nope'"}
