"""Every request example of both OpenAPI documents, posted as written to the real services: the inference
service's and the gateway's /v1/predict examples answer exactly one window (they are one window of the
emg2pose layout); every job example is accepted (202) once the datasets and model it names exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import publish_tiny, serve_gateway
from servers import UvicornThread

from emgpose.db.engine import session_scope
from emgpose.db.models import Dataset
from emgpose.settings import Settings

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url, gateway, synth_folder

VERSION = "20261121T120000Z-aaaaaa"


def request_examples(spec: dict[str, Any]) -> list[tuple[str, Any]]:
    """(path, example) for every JSON request-body example of every POST route, wherever the document puts
    it: the media type's ``example`` or ``examples``, or the referenced schema's ``examples``."""
    schemas = spec.get("components", {}).get("schemas", {})
    found = []
    for path, methods in spec["paths"].items():
        body = methods.get("post", {}).get("requestBody", {}).get("content", {}).get("application/json")
        if not body:
            continue
        examples = [body["example"]] if "example" in body else []
        examples += [e["value"] for e in body.get("examples", {}).values()]
        ref = body.get("schema", {}).get("$ref", "")
        if ref:
            examples += schemas[ref.rsplit("/", 1)[-1]].get("examples", [])
        found += [(path, example) for example in examples]
    return found


def windows_in(answer: dict[str, Any]) -> int:
    if "window_end_s" in answer:
        return len(answer["window_end_s"])
    ends = next(o for o in answer["outputs"] if o["name"] == "window_end_s")
    return ends["shape"][0]


def test_every_example_succeeds_when_tried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str) -> None:
    inference = pytest.importorskip("emgpose_inference.main", reason="the inference service is not importable")
    store = (tmp_path / "models").as_uri()
    publish_tiny(store, "hand", VERSION, "2026-11-21T12:00:00+00:00", mae=12.0)
    app = inference.create_app(Settings(store_uri=store, model_name="hand", reload_interval_s=60.0))
    with UvicornThread(app) as upstream:
        spec = httpx.get(upstream.url + "/openapi.json", timeout=30).json()
        examples = request_examples(spec)
        assert {path for path, _ in examples} >= {"/v1/predict", "/v2/models/{name}/infer"}
        for path, example in examples:
            url = upstream.url + path.replace("{name}", "hand").replace("{version}", VERSION)
            answer = httpx.post(url, json=example, timeout=30)
            assert answer.status_code == 200, f"inference {path}: {answer.status_code} {answer.text[:300]}"
            assert windows_in(answer.json()) == 1, path
        with serve_gateway(monkeypatch, tmp_path, pg_url, INFERENCE_URL=upstream.url) as gw, gw.client() as client:
            gateway_examples = [(p, e) for p, e in request_examples(client.get("/openapi.json").json())]
            predict = [e for p, e in gateway_examples if p == "/v1/predict"]
            assert len(predict) == 1
            answer = client.post("/v1/predict", json=predict[0])
    assert answer.status_code == 200, answer.text[:300]
    assert windows_in(answer.json()) == 1


def test_every_job_example_is_accepted(gateway, synth_folder: Path) -> None:
    with gateway.client() as client:
        examples = client.get("/openapi.json").json()["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]
    examples = examples["application/json"]["examples"]
    assert set(examples) >= {"preprocess", "train", "evaluate", "benchmark", "predict"}
    named = {e["value"]["params"].get("dataset") for e in examples.values()} - {None}
    kinds = {e["value"]["params"].get("dataset"): e["value"]["type"] for e in examples.values()}
    with session_scope(gateway.settings.database_url) as session:  # the datasets the examples name
        for dataset in named:
            raw = kinds[dataset] in ("preprocess", "predict", "benchmark")
            uri = synth_folder.as_uri() if raw else f"{gateway.settings.store_uri}/preprocessed/pre"
            kind = "raw" if raw else "preprocessed"
            session.add(Dataset(id=dataset, name="lab", kind=kind, source="registered", uri=uri, state="ready"))
    publish_tiny(gateway.settings.store_uri, "hand", VERSION, "2026-11-21T12:00:00+00:00", mae=12.0)
    with gateway.client() as client:
        for name, example in examples.items():
            response = client.post("/v1/jobs", json=example["value"])
            assert response.status_code == 202, f"example {name}: {response.status_code} {response.text[:300]}"
