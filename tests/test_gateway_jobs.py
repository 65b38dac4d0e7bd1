"""Gateway jobs API over real HTTP: submission (row committed, then a message on the broker), validation
that queues nothing, idempotency, listing, cancelling; PostgreSQL and SQLite; the filesystem transport
and real Redis as brokers, and a broker that is down."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from gateway_support import serve_gateway

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset, Job

REDIS_DB = 13  # a database of the local Redis that nothing else in the suite uses

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder


def _raw(gw, folder: Path) -> str:
    with gw.client() as client:
        response = client.post("/v1/datasets/register", json={"name": "lab", "uri": folder.as_uri()})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _preprocessed(gw) -> str:
    uri = f"{gw.settings.store_uri}/preprocessed/pre"  # inside the store: a row outside the roots is refused
    with session_scope(gw.settings.database_url) as session:
        row = Dataset(name="pre", kind="preprocessed", source="job", uri=uri, state="ready", info={})
        session.add(row)
    return row.id


def _set(gw, job_id: str, **values) -> None:
    with session_scope(gw.settings.database_url) as session:
        job = session.get(Job, job_id)
        for key, value in values.items():
            setattr(job, key, value)


def test_submit_commits_the_row_then_queues_one_message(gateway, synth_folder: Path) -> None:
    dataset = _raw(gateway, synth_folder)
    with gateway.client() as client:
        response = client.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": dataset}})
        assert response.status_code == 202, response.text
        job = response.json()
        assert response.headers["location"] == f"/v1/jobs/{job['id']}"
        assert job["state"] == "queued" and job["type"] == "preprocess" and job["progress"] == 0.0
        assert job["params"]["dataset"] == dataset and job["params"]["config"]["moving_average"] == 50
        assert client.get(f"/v1/jobs/{job['id']}").json() == job
    assert gateway.queued("preprocess") == 1 and gateway.queued("train") == 0
    with session_scope(gateway.settings.database_url) as session:
        row = session.get(Job, job["id"])
        assert row.state == "queued" and row.dataset_id == dataset


def test_submit_by_uri_and_train_on_a_preprocessed_dataset(gateway, synth_folder: Path) -> None:
    pre = _preprocessed(gateway)
    with gateway.client() as client:
        by_uri = client.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": synth_folder.as_uri()}})
        assert by_uri.status_code == 202, by_uri.text
        train = client.post("/v1/jobs", json={"type": "train", "params": {"dataset": pre, "config": {"max_depth": 3}}})
        assert train.status_code == 202, train.text
    assert gateway.queued("preprocess") == 1 and gateway.queued("train") == 1


def test_benchmark_jobs_go_to_the_train_queue_with_or_without_a_dataset(
    gateway, synth_folder: Path, tmp_path: Path
) -> None:
    with gateway.client() as client:
        synthetic = client.post("/v1/jobs", json={"type": "benchmark", "params": {"rounds": 20}})
        assert synthetic.status_code == 202, synthetic.text
        job = synthetic.json()
        assert job["type"] == "benchmark" and job["dataset_id"] is None
        assert job["params"]["configs"] == ["cpu", "gpu-builtin", "gpu-kernels", "gpu-kernels-objective"]
        on_data = client.post("/v1/jobs", json={"type": "benchmark", "params": {"dataset": synth_folder.as_uri()}})
        assert on_data.status_code == 202, on_data.text
        nowhere = (tmp_path / "nowhere").as_uri()  # inside ALLOWED_DATA_ROOTS, nothing there: 404
        missing = client.post("/v1/jobs", json={"type": "benchmark", "params": {"dataset": nowhere}})
        assert missing.status_code == 404 and "no raw dataset at" in missing.json()["detail"]
        assert client.get("/v1/jobs", params={"type": "benchmark"}).json()["total"] == 2
    assert gateway.queued("train") == 2 and gateway.queued("preprocess") == 0


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"type": "preprocess", "params": {"dataset": "0" * 32}}, 404, "no dataset '00000000000000000000000000000000'"),
        ({"type": "train", "params": {"dataset": "RAW"}}, 409, "is raw; this job needs a preprocessed dataset"),
        ({"type": "preprocess", "params": {"dataset": "NOWHERE"}}, 404, "no raw dataset at"),
        ({"type": "preprocess", "params": {"dataset": "file:///nowhere/at/all"}}, 403, "outside ALLOWED_DATA_ROOTS"),
        ({"type": "train", "params": {"dataset": "RAWURI"}}, 409, "holds a raw dataset; a train job needs"),
        ({"type": "evaluate", "params": {"model": "ghost", "dataset": "PRE"}}, 404, "model 'ghost' not found"),
    ],
)
def test_bad_references_queue_nothing(
    gateway, synth_folder: Path, tmp_path: Path, body: dict, status: int, message: str
) -> None:
    refs = {"RAW": _raw(gateway, synth_folder), "RAWURI": synth_folder.as_uri(), "PRE": _preprocessed(gateway)}
    refs["NOWHERE"] = (tmp_path / "nowhere" / "at" / "all").as_uri()  # inside ALLOWED_DATA_ROOTS
    body["params"] = {k: refs.get(v, v) for k, v in body["params"].items()}
    with gateway.client() as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]
        assert client.get("/v1/jobs").json()["total"] == 0
    assert gateway.queued("preprocess") == gateway.queued("train") == 0


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"type": "preprocess", "params": {"dataset": "x", "bogus": 1}}, ["body", "preprocess", "params", "bogus"]),
        (
            {"type": "preprocess", "params": {"dataset": "x", "config": {"windw": {}}}},
            ["body", "preprocess", "params", "config", "windw"],
        ),  # noqa: E501
        (
            {"type": "train", "params": {"dataset": "x", "config": {"num_rounds": "many"}}},
            ["body", "params", "config", "num_rounds"],
        ),  # noqa: E501
        ({"type": "sleep", "params": {}}, ["body"]),
        ({"type": "benchmark", "params": {"configs": ["gpu-fast"]}}, ["body", "benchmark", "params", "configs", 0]),
        (
            {"type": "benchmark", "params": {"synthetic": {"users": 1}}},
            ["body", "benchmark", "params", "synthetic", "users"],
        ),
    ],
)
def test_invalid_bodies_are_422_with_the_field(gateway, body: dict, loc: list) -> None:
    with gateway.client() as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422, response.text
        body = response.json()  # one error shape: a sentence naming the fields, and the fields one by one
        assert loc in [e["loc"] for e in body["errors"]] and body["detail"].startswith("invalid request: ")
        assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])  # the submitted values are not echoed
        assert client.get("/v1/jobs").json()["total"] == 0
    assert gateway.queued("preprocess") == gateway.queued("train") == 0


def test_idempotency_key(gateway, synth_folder: Path) -> None:
    dataset = _raw(gateway, synth_folder)
    body = {"type": "preprocess", "params": {"dataset": dataset}}
    with gateway.client() as client:
        first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-1"})
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json()["id"] == first.json()["id"] and again.headers["location"] == first.headers["location"]
        other = client.post(
            "/v1/jobs", json={**body, "params": {**body["params"], "name": "b"}}, headers={"Idempotency-Key": "k-1"}
        )  # noqa: E501
        assert other.status_code == 409
        assert "Idempotency-Key 'k-1' was already used for a different request" in other.json()["detail"]
        fresh = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k-2"})
        assert fresh.status_code == 202 and fresh.json()["id"] != first.json()["id"]
    assert gateway.queued("preprocess") == 2


def test_list_filters_and_paging(gateway, synth_folder: Path) -> None:
    raw, pre = _raw(gateway, synth_folder), _preprocessed(gateway)
    with gateway.client() as client:
        ids = [
            client.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": raw}}).json()["id"]
            for _ in range(3)
        ]  # noqa: E501
        train = client.post("/v1/jobs", json={"type": "train", "params": {"dataset": pre}}).json()["id"]
        client.post(f"/v1/jobs/{ids[0]}/cancel")

        def listed(**params) -> tuple[list[str], int]:
            body = client.get("/v1/jobs", params=params).json()
            return [j["id"] for j in body["items"]], body["total"]

        assert listed() == ([train, *reversed(ids)], 4)  # newest first
        assert listed(type="train") == ([train], 1)
        assert listed(dataset_id=raw) == (list(reversed(ids)), 3)
        assert listed(state="cancelled") == ([ids[0]], 1)
        assert listed(state="queued", type="preprocess") == ([ids[2], ids[1]], 2)
        assert listed(limit=2) == ([train, ids[2]], 4)
        assert listed(limit=2, offset=2) == ([ids[1], ids[0]], 4)
        for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"state": "done"}, {"type": "x"}):
            assert client.get("/v1/jobs", params=bad).status_code == 422


def test_cancel(gateway, synth_folder: Path) -> None:
    raw = _raw(gateway, synth_folder)
    with gateway.client() as client:
        body = {"type": "preprocess", "params": {"dataset": raw}}
        queued, running, done = (client.post("/v1/jobs", json=body).json()["id"] for _ in range(3))
        _set(gateway, running, state="running")
        _set(gateway, done, state="succeeded")
        cancelled = client.post(f"/v1/jobs/{queued}/cancel")
        assert cancelled.status_code == 202
        assert cancelled.json()["state"] == "cancelled" and cancelled.json()["finished_at"] is not None
        asked = client.post(f"/v1/jobs/{running}/cancel")
        assert asked.status_code == 202
        assert asked.json()["state"] == "running" and asked.json()["cancel_requested"] is True
        for finished in (done, queued):
            refused = client.post(f"/v1/jobs/{finished}/cancel")
            assert refused.status_code == 409 and "only queued or running jobs can be cancelled" in refused.text
        assert client.post("/v1/jobs/nope/cancel").status_code == 404
        assert client.get("/v1/jobs/nope").json() == {"detail": "no job 'nope'"}


def test_sqlite_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, synth_folder: Path) -> None:
    from emgpose.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'gateway.db'}"
    upgrade(url)
    with serve_gateway(monkeypatch, tmp_path, url, ALLOWED_DATA_ROOTS=synth_folder.as_uri()) as gw:
        dataset = _raw(gw, synth_folder)
        with gw.client() as client:
            body = {"type": "preprocess", "params": {"dataset": dataset}}
            first = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
            again = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
            assert (first.status_code, again.status_code) == (202, 200)
            assert client.get("/v1/jobs", params={"dataset_id": dataset}).json()["total"] == 1
            assert client.get(f"/v1/datasets/{dataset}").json()["processing"]["job_id"] == first.json()["id"]
        assert gw.queued() == 1


def test_redis_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path) -> None:
    url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.delete("preprocess")
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis at 127.0.0.1:6379 is not reachable: {exc}")
    try:
        with serve_gateway(
            monkeypatch, tmp_path, pg_url, REDIS_URL=url, ALLOWED_DATA_ROOTS=synth_folder.as_uri()
        ) as gw:
            dataset = _raw(gw, synth_folder)
            with gw.client() as http:
                response = http.post("/v1/jobs", json={"type": "preprocess", "params": {"dataset": dataset}})
            assert response.status_code == 202, response.text
            assert client.llen("preprocess") == 1
            assert response.json()["id"] in client.lindex("preprocess", 0).decode()
    finally:
        client.delete("preprocess")
        client.close()


def test_broker_down_fails_the_job_with_503(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, synth_folder: Path, free_tcp_port: int
) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_tcp_port}/0", "ALLOWED_DATA_ROOTS": synth_folder.as_uri()}
    with serve_gateway(monkeypatch, tmp_path, pg_url, **env) as gw:
        dataset = _raw(gw, synth_folder)
        body = {"type": "preprocess", "params": {"dataset": dataset}}
        with gw.client() as client:
            response = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
            assert response.status_code == 503
            detail = response.json()["detail"]
            assert f"the job broker at redis://127.0.0.1:{free_tcp_port}/0 did not take the task" in detail
            jobs = client.get("/v1/jobs").json()["items"]
            assert [j["state"] for j in jobs] == ["failed"]
            assert jobs[0]["error"]["type"] == "BrokerUnavailable" and jobs[0]["id"] in detail
            # the key was freed: a retry submits afresh (and fails the same way while the broker is down)
            retry = client.post("/v1/jobs", json=body, headers={"Idempotency-Key": "k"})
            assert retry.status_code == 503 and retry.json()["detail"] != detail
