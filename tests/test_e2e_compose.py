"""The compose stack without Docker: each service started with exactly the command and environment
``docker-compose.yml`` gives it (service hostnames mapped to 127.0.0.1), against a fresh database on the
real PostgreSQL of this machine, its own Redis (append-only, as in compose) and moto's S3 server.

Upload -> preprocess job -> train job -> poll -> inference hot-loads -> predict returns named angles;
then a second version is trained and promoted while a client keeps predicting, and not one request fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psycopg
import pytest
from backends import OwnRedis
from compose import service_commands
from servers import free_port

from emgpose.client import Client, binary_body
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.calibrate import read_recording

pytestmark = pytest.mark.slow

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BIN = str(Path(sys.executable).parent)  # uvicorn, celery and emgpose of this environment



@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    name = f"emgpose_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    """The stack's own Redis, with the append-only file as compose runs it (never the shared server)."""
    with OwnRedis(tmp_path_factory.mktemp("e2e-redis")) as server:
        yield server


@pytest.fixture(scope="module")
def stack(
    database: str, broker: OwnRedis, s3_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    import boto3

    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="emgpose")
    logs = tmp_path_factory.mktemp("e2e-logs")
    gateway_port, inference_port = free_port(), free_port()
    moto = s3_server.removeprefix("http://")
    commands = service_commands(
        {"POSTGRES_USER": "postgres", "POSTGRES_PASSWORD": "unused", "POSTGRES_DB": database,
         "RELOAD_INTERVAL_S": "0.5", "MODEL_NAME": "hand", "DEVICE": "auto"},
        hosts={"postgres:5432": "127.0.0.1:5432", "redis:6379/0": broker.url.removeprefix("redis://"),
               "minio:9000": moto, "inference:8001": f"127.0.0.1:{inference_port}"},
    )  # fmt: skip
    assert set(commands) == {"migrate", "gateway", "inference", "preprocessor", "trainer"}
    ports = {"gateway": gateway_port, "inference": inference_port}
    base = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    for key in ("REDIS_URL", "DATABASE_URL", "STORE_URI", "BROKER_DIR"):  # only compose's environment counts
        base.pop(key, None)

    def start(name: str) -> subprocess.Popen:
        argv, env = commands[name]
        if name in ports:  # same command, a free port and loopback instead of 8000/8001 on all interfaces
            argv = [str(ports[name]) if w in ("8000", "8001") else "127.0.0.1" if w == "0.0.0.0" else w for w in argv]
        if "PROMETHEUS_MULTIPROC_DIR" in env:  # compose mounts a fresh tmpfs there, one per container
            env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp(f"{name}-metrics"))}
        with open(logs / f"{name}.log", "wb") as log:
            return subprocess.Popen(argv, env={**base, **env}, stdout=log, stderr=subprocess.STDOUT)

    migrate = start("migrate")
    assert migrate.wait(120) == 0, (logs / "migrate.log").read_text()
    # compose turns API keys on: an admin key made as the deployment guide says, inside the gateway's environment
    made = subprocess.run(
        ["emgpose", "keys", "create", "--scope", "admin", "--name", "e2e"],
        env={**base, **commands["gateway"][1]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    procs = {name: start(name) for name in ("inference", "gateway", "preprocessor", "trainer")}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    try:
        deadline = time.monotonic() + 60
        for service, url in (("inference", f"{urls['inference']}/healthz"), ("gateway", f"{urls['gateway']}/readyz")):
            while True:
                dead = {n: p.returncode for n, p in procs.items() if p.poll() is not None}
                assert not dead, f"exited: {dead}\n" + "\n".join((logs / f"{n}.log").read_text() for n in dead)
                try:
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, f"{url} not ready:\n" + (logs / f"{service}.log").read_text()
                time.sleep(0.25)
        yield {**urls, "logs": str(logs), "key": key}
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _train(api: Client, dataset_id: str, rounds: int) -> dict:
    job = api.submit("train", {"dataset": dataset_id, "name": "hand", "config": {"num_rounds": rounds}})
    assert job["state"] == "queued"
    seen = []
    done = api.wait(job, timeout_s=300, on_progress=lambda j: seen.append(j["progress"]))
    assert seen == sorted(seen), "progress must never move back"
    return done


def test_upload_preprocess_train_serve_predict_and_swap_without_a_failed_request(stack, tmp_path: Path):
    data = tmp_path / "data"
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=5.0, seed=7), data.as_uri())
    with Client(stack["gateway"], api_key=stack["key"]) as api:
        dataset = api.upload_dataset("e2e", data)
        assert dataset["state"] == "ready" and dataset["uri"].startswith("s3://emgpose/")
        pre = api.wait(api.submit("preprocess", {"dataset": dataset["id"]}), timeout_s=300)
        assert pre["progress"] == 100 and pre["result"]["uri"].startswith("s3://emgpose/preprocessed/")
        first = _train(api, pre["result"]["dataset_id"], rounds=15)["result"]
        api.wait_for_model(first["version"], stack["inference"], timeout_s=60)

        rec = read_recording(str(sorted(data.glob("*.hdf5"))[0])).first(2.0)
        answer = api.predict(rec.emg, rec.sample_rate)
        assert answer["model_version"] == first["version"]
        assert len(answer["joints"]) == 20 and answer["joints"][0].startswith("THUMB")
        degrees = np.asarray(answer["degrees"])
        assert degrees.shape == (len(answer["window_end_s"]), 20) and np.isfinite(degrees).all()
        np.testing.assert_allclose(np.radians(degrees), answer["radians"], rtol=1e-5)

        failures: list[str] = []
        versions: list[str] = []
        stop = threading.Event()

        def hammer() -> None:
            key = {"Authorization": f"Bearer {stack['key']}"}
            with httpx.Client(base_url=stack["gateway"], timeout=30, headers=key) as http:
                body, headers = binary_body(rec.emg, rec.sample_rate)
                while not stop.is_set():
                    try:
                        r = http.post("/v1/predict", content=body, headers=headers)
                        if r.status_code != 200:
                            failures.append(f"{r.status_code}: {r.text[:200]}")
                        else:
                            versions.append(r.json()["model_version"])
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))

        client = threading.Thread(target=hammer)
        client.start()
        try:
            second = _train(api, pre["result"]["dataset_id"], rounds=25)["result"]
            assert second["version"] != first["version"] and second["promoted"]
            api.wait_for_model(second["version"], stack["inference"], timeout_s=60)
            time.sleep(1.0)
        finally:
            stop.set()
            client.join(60)
        assert not failures, failures[:5]
        assert versions[0] == first["version"] and versions[-1] == second["version"]
        assert set(versions) == {first["version"], second["version"]}
        hand = next(m for m in api.models()["items"] if m["name"] == "hand")
        assert hand["latest"] == second["version"] and hand["versions"] == 2
