"""What the web page reads, over HTTP and WebSocket without a browser: the page's own files, a session's
samples in chunks, a version's plots, ``/v1/whoami``, and ``WS /v1/stream`` relayed by the gateway with
the key in the handshake header or as a subprotocol (the browser's way)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from web_support import PEPPER, WebStack, web_stack
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from emgpose import auth
from emgpose.db.engine import session_scope
from emgpose.formats.session import SessionReader
from emgpose.preprocess.dataset import Dataset

pytest_plugins = ["gateway_fixtures"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url: str, train_model, train_synth: Path) -> Iterator[WebStack]:
    with web_stack(tmp_path_factory.mktemp("web-api"), pg_url, train_model, train_synth) as served:
        yield served


def test_the_page_and_its_files_are_served_with_a_strict_content_security_policy(stack: WebStack) -> None:
    with stack.gateway.client() as client:
        page = client.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css")):
            assert f"/web/{name}" in page.text
            asset = client.get(f"/web/{name}")
            assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
        missing = client.get("/web/index.py")
        assert missing.status_code == 404 and "app.js" in missing.json()["detail"]


def test_sessions_are_listed_with_their_split_and_read_in_bounded_chunks(stack: WebStack, train_synth: Path) -> None:
    with stack.gateway.client() as client:
        listing = client.get(f"/v1/datasets/{stack.dataset_id}/sessions").json()
        assert listing["total"] == len(listing["items"]) > 0 and listing["num_channels"] == 16
        assert {item["split"] for item in listing["items"]} >= {"train", "test"}
        first = listing["items"][0]
        with Dataset(str(train_synth / "data"), only=[first["filename"]]) as data:  # its metadata time range
            entry = data.sessions[0]
            with SessionReader(entry.path) as reader:
                truth = reader.read(entry.start_index + 100, entry.start_index + 400)
        plain = client.get(first["samples_url"], params={"start": 100, "count": 300}).json()
        assert plain["count"] == 300 and plain["total"] > 400 and plain["encoding"] == "json"
        np.testing.assert_allclose(np.array(plain["emg"]), truth.emg, rtol=1e-6, atol=1e-7)
        packed = client.get(first["samples_url"], params={"start": 100, "count": 300, "encoding": "base64"}).json()
        emg = np.frombuffer(base64.b64decode(packed["emg"]), "<f4").reshape(300, 16)
        angles = np.frombuffer(base64.b64decode(packed["angles"]), "<f4").reshape(300, len(packed["joint_names"]))
        np.testing.assert_array_equal(emg, truth.emg)
        np.testing.assert_allclose(angles, truth.joint_angles, rtol=1e-6)
        past = client.get(first["samples_url"], params={"start": plain["total"]}).json()
        assert past["count"] == 0 and past["emg"] == []
        too_many = client.get(first["samples_url"], params={"count": 100_000})
        assert too_many.status_code == 422 and "count" in too_many.json()["detail"]
        unknown = client.get(f"/v1/datasets/{stack.dataset_id}/sessions/no-such-session/samples")
        assert unknown.status_code == 404 and "lists no session" in unknown.json()["detail"]


def test_a_versions_plots_are_served_and_nothing_the_bundle_does_not_list(stack: WebStack) -> None:
    base = f"/v1/models/hand/versions/{stack.version}"
    with stack.gateway.client() as client:
        files = client.get(base).json()["files"]
        plots = sorted(name for name in files if name.startswith("plots/"))
        assert plots, f"the trained version has no plots: {sorted(files)}"
        plot = client.get(f"{base}/files/{plots[0]}")
        assert plot.status_code == 200 and plot.headers["content-type"] == "image/png"
        assert plot.content.startswith(b"\x89PNG")
        assert client.get("/v1/models/hand/versions/latest/files/report.json").json()["model"]["name"] == "hand"
        booster = client.get(f"{base}/files/emg_pose_gpu.json")
        assert booster.status_code == 404 and "plots/" in booster.json()["detail"]


def test_the_stream_through_the_gateway_answers_as_inference_does(stack: WebStack) -> None:
    rng = np.random.default_rng(1)
    emg = (rng.standard_normal((3000, 16)) * 0.05).astype("<f4")
    answers = []
    for base in (stack.gateway.url, stack.inference_url):
        url = base.replace("http://", "ws://") + "/v1/stream?sample_rate=2000"
        with connect(url) as ws:
            ready = json.loads(ws.recv(timeout=10))
            assert ready["type"] == "ready" and ready["model_version"] == stack.version
            ws.send(emg.tobytes())
            answers.append(json.loads(ws.recv(timeout=10)))
    through, direct = answers
    assert through["window_end_sample"] == direct["window_end_sample"] and len(through["radians"]) > 0
    np.testing.assert_allclose(through["radians"], direct["radians"], rtol=1e-6)


def test_the_relay_passes_on_inferences_refusal_with_its_close_code(stack: WebStack) -> None:
    url = stack.gateway.url.replace("http://", "ws://") + "/v1/stream?sample_rate=1000"
    with connect(url) as ws:
        error = json.loads(ws.recv(timeout=10))
        assert error["type"] == "error" and error["status"] == 422 and "sample" in error["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007


def test_an_unreachable_inference_service_is_a_503_error_then_close_1013(
    stack: WebStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pg_url: str, free_tcp_port: int
) -> None:
    from gateway_support import serve_gateway

    with serve_gateway(
        monkeypatch, tmp_path, pg_url, empty=False, INFERENCE_URL=f"http://127.0.0.1:{free_tcp_port}"
    ) as gw:
        with connect(gw.url.replace("http://", "ws://") + "/v1/stream") as ws:
            error = json.loads(ws.recv(timeout=15))
            assert error["status"] == 503 and f"127.0.0.1:{free_tcp_port}" in error["detail"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013


def test_with_keys_on_the_stream_takes_the_key_as_a_subprotocol_and_refuses_without(
    tmp_path_factory, pg_url: str, train_model, train_synth: Path
) -> None:
    env = {"AUTH_ENABLED": "true", "AUTH_PEPPER": PEPPER}
    with web_stack(tmp_path_factory.mktemp("web-auth"), pg_url, train_model, train_synth, **env) as served:
        with session_scope(pg_url) as session:
            submit = auth.create_key(session, PEPPER.encode(), "submit", "streamer")[1]
            read = auth.create_key(session, PEPPER.encode(), "read", "reader")[1]
        url = served.gateway.url.replace("http://", "ws://") + "/v1/stream?sample_rate=2000"
        with connect(url, subprotocols=["emgpose.stream", f"emgpose.key.{submit}"]) as ws:
            assert ws.subprotocol == "emgpose.stream"  # the key itself is never echoed
            ready = json.loads(ws.recv(timeout=10))
            assert ready["type"] == "ready", ready
        with connect(url, additional_headers={"Authorization": f"Bearer {submit}"}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "ready"
        for protocols, status in ((["emgpose.stream"], 401), (["emgpose.stream", f"emgpose.key.{read}"], 403)):
            with connect(url, subprotocols=protocols) as ws:
                error = json.loads(ws.recv(timeout=10))
                assert error["type"] == "error" and error["status"] == status, error
                with pytest.raises(ConnectionClosed) as closed:
                    ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        with served.gateway.client() as client:
            assert client.get("/").status_code == 200  # the page is open: it asks for the key itself
            assert client.get("/v1/whoami").status_code == 401
            who = client.get("/v1/whoami", headers={"Authorization": f"Bearer {read}"}).json()
            assert who == {"auth_enabled": True, "key_id": auth.key_id_of(read), "name": "reader", "scope": "read"}
