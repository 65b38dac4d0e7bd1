"""Every request example in the inference service's OpenAPI document, and the gateway's /v1/predict example,
posted as written to the real services (the inference service over real HTTP, the gateway proxying to it):
each succeeds and answers exactly one window (the examples are one window of the emg2pose layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import publish_tiny, serve_gateway
from servers import UvicornThread

from emgpose.settings import Settings

pytest_plugins = ["gateway_fixtures"]  # fixtures: pg_url

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
