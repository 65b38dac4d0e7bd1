"""Inference latency: the service over HTTP and WebSocket against ``predict()`` called in-process.

    .venv/bin/python bench/inference.py [--requests 300] [--chunk-ms 250]

Trains a small model (synthetic data, 60 rounds) into a temporary store, starts the inference service
with its production command (``uvicorn emgpose_inference.main:app``) and times, one request at a time:
``predict()`` in this process (the baseline), ``POST /v1/predict`` with a JSON body and with a float32
body, and a ``WS /v1/stream`` session fed ``--stream-ms`` chunks (the time from sending a chunk to the
prediction of the window it completes). Prints percentiles and the ratio of each to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

from emgpose.client import binary_body
from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.boost import BoostConfig
from emgpose.train.bundle import Registry
from emgpose.train.calibrate import read_recording
from emgpose.train.job import run_train
from emgpose.train.predict import predict


def percentiles(ms: list[float]) -> dict[str, float]:
    q = np.percentile(ms, [50, 95, 99])
    return {"p50_ms": round(float(q[0]), 2), "p95_ms": round(float(q[1]), 2), "p99_ms": round(float(q[2]), 2)}


def timed(fn, n: int) -> list[float]:  # noqa: ANN001
    fn()  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


async def stream_latency(url: str, emg: np.ndarray, rate: float, chunk: int, window: int) -> list[float]:
    out = []
    async with websockets.connect(f"{url}/v1/stream?sample_rate={rate:g}", max_size=None) as ws:
        await ws.recv()  # {"type": "ready"}
        for i in range(0, len(emg) - chunk + 1, chunk):
            t = time.perf_counter()
            await ws.send(np.ascontiguousarray(emg[i : i + chunk], dtype="<f4").tobytes())
            if i + chunk >= window:  # a reply comes once a window is complete
                message = json.loads(await ws.recv())
                assert message["type"] == "prediction", message
                out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--chunk-ms", dest="chunk_ms", type=float, default=250.0, help="EMG per request")
    parser.add_argument("--stream-ms", dest="stream_ms", type=float, default=50.0, help="EMG per stream chunk")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emgpose-bench-inference-"))
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=10.0, seed=1), (work / "data").as_uri())
    run_preprocess((work / "data").as_uri(), (work / "pre").as_uri(), workers=1)
    store = (work / "store").as_uri()
    run_train((work / "pre").as_uri(), store, "bench", config=BoostConfig(num_rounds=60))
    bundle = Registry(store).load("bench")
    rec = read_recording(str(sorted((work / "data").glob("*.hdf5"))[0]))
    rate = rec.sample_rate
    n = int(args.chunk_ms / 1000 * rate)
    emg = rec.emg[:n]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STORE_URI": store, "MODEL_NAME": "bench", "LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "uvicorn", "emgpose_inference.main:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(argv, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("inference did not become ready")
            time.sleep(0.2)
        results = {"baseline: predict() in-process": timed(lambda: predict(bundle, emg), args.requests)}
        body = json.dumps({"emg": emg.tolist(), "sample_rate": rate}).encode()
        raw, headers = binary_body(emg, rate)
        with httpx.Client(base_url=url, timeout=30) as http:
            results["POST /v1/predict, JSON"] = timed(
                lambda: http.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
                .raise_for_status(),
                args.requests,
            )  # fmt: skip
            results["POST /v1/predict, float32"] = timed(
                lambda: http.post("/v1/predict", content=raw, headers=headers).raise_for_status(), args.requests
            )
        chunk = int(args.stream_ms / 1000 * rate)
        results[f"WS /v1/stream, {args.stream_ms:g} ms chunks"] = asyncio.run(
            stream_latency(url.replace("http", "ws"), rec.emg, rate, chunk, bundle.meta["window"]["length_samples"])
        )
    finally:
        server.terminate()
        server.wait(15)
    base = statistics.median(results["baseline: predict() in-process"])
    print(f"{n} samples x {emg.shape[1]} channels per request ({args.chunk_ms:g} ms of EMG), {args.requests} requests")
    for name, ms in results.items():
        p = percentiles(ms)
        print(f"  {name:<34} p50 {p['p50_ms']:7.2f} ms  p95 {p['p95_ms']:7.2f} ms  p99 {p['p99_ms']:7.2f} ms  "
              f"({p['p50_ms'] / base:.1f}x baseline p50)")  # fmt: skip


if __name__ == "__main__":
    main()
