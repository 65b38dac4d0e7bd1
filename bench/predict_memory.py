"""Memory of the inference process under concurrent maximum-size predictions.

    .venv/bin/python bench/predict_memory.py [--concurrency 20] [--repeats 3] [--kinds json,binary] [--unbounded]

Trains a small model (synthetic data, 40 rounds) into a temporary store, then for each body kind starts
the inference service with its production command (``uvicorn emgpose_inference.main:app``) and its
default limits, sends one small request (warm-up) and reads the process's resident memory: the
baseline. Then, ``--repeats`` times, it sends ``--concurrency`` requests at once, each of the maximum
size the service accepts (``MAX_PREDICT_SAMPLES`` samples of 16 channels, as JSON with a ``time`` array,
or as float32), while a thread samples the server's RSS every 10 ms. It prints the baseline, each
repeat's peak and the median peak, the answers' statuses and the wall time. ``--unbounded`` repeats the
JSON run with ``PREDICT_MEMORY_MB`` set beyond any need (every request decoded at once): the comparison,
in the same command, for what the memory budget buys. Figures are in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import psutil

from emgpose.preprocess.job import run_preprocess
from emgpose.settings import Settings
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train.boost import BoostConfig
from emgpose.train.job import run_train

MB = 1e6
RATE = 2000.0
CHANNELS = 16


def train(work: Path) -> str:
    write_dataset(SynthConfig(users=2, stages=2, sessions=1, duration_s=8.0, seed=1), (work / "data").as_uri())
    run_preprocess((work / "data").as_uri(), (work / "pre").as_uri(), workers=1)
    store = (work / "store").as_uri()
    run_train((work / "pre").as_uri(), store, "bench", config=BoostConfig(num_rounds=40, nthread=2))
    return store


def bodies(samples: int) -> dict[str, tuple[bytes, dict[str, str]]]:
    """The largest request of each kind: ``samples`` x 16 float32 values; JSON carries a ``time`` array too."""
    emg = (np.random.default_rng(0).standard_normal((samples, CHANNELS)) * 0.05).astype(np.float32)
    times = 1.7e9 + np.arange(samples) / RATE
    as_json = json.dumps({"emg": emg.tolist(), "sample_rate": RATE, "time": times.tolist()}).encode()
    binary = {
        "Content-Type": "application/octet-stream",
        "X-EMG-Samples": str(samples),
        "X-EMG-Channels": str(CHANNELS),
        "X-Sample-Rate": str(RATE),
    }
    return {
        "json": (as_json, {"Content-Type": "application/json"}),
        "binary": (emg.astype("<f4").tobytes(), binary),
    }


class Server:
    """``uvicorn emgpose_inference.main:app`` in a child process, with ``env`` on top of this one's."""

    def __init__(self, store: str, env: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        full = {**os.environ, "STORE_URI": store, "MODEL_NAME": "bench", "LOG_LEVEL": "WARNING", **env}
        argv = [sys.executable, "-m", "uvicorn", "emgpose_inference.main:app", "--host", "127.0.0.1", "--port",
                str(port), "--log-level", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(argv, env=full)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("inference did not become ready")
            time.sleep(0.2)
        self.process = psutil.Process(self.proc.pid)

    def rss(self) -> int:
        return self.process.memory_info().rss

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(15)


class PeakSampler(threading.Thread):
    """Samples a process's RSS every ``interval`` seconds until stopped; keeps the largest."""

    def __init__(self, server: Server, interval: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.server, self.interval = server, interval
        self.peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self.server.rss())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def burst(server: Server, body: bytes, headers: dict[str, str], concurrency: int) -> tuple[int, Counter, float]:
    """``concurrency`` identical requests at once; returns the peak RSS, the statuses and the wall time."""
    sampler = PeakSampler(server)
    sampler.start()
    started = time.perf_counter()

    def send(_: int) -> int:
        with httpx.Client(base_url=server.url, timeout=300) as http:
            return http.post("/v1/predict", content=body, headers=headers).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        statuses = Counter(pool.map(send, range(concurrency)))
    wall = time.perf_counter() - started
    return sampler.stop(), statuses, wall


def run(store: str, kind: str, body: bytes, headers: dict[str, str], args: argparse.Namespace, env: dict) -> dict:
    server = Server(store, env)
    try:
        small = (np.zeros((4000, CHANNELS), dtype="<f4").tobytes(), {**headers} if kind == "binary" else headers)
        if kind == "binary":
            small[1]["X-EMG-Samples"] = "4000"
            httpx.post(f"{server.url}/v1/predict", content=small[0], headers=small[1], timeout=60).raise_for_status()
        else:
            warm = json.dumps({"emg": np.zeros((4000, CHANNELS)).tolist(), "sample_rate": RATE}).encode()
            httpx.post(f"{server.url}/v1/predict", content=warm, headers=headers, timeout=60).raise_for_status()
        baseline = server.rss()
        peaks, statuses, walls = [], Counter(), []
        for _ in range(args.repeats):
            peak, answered, wall = burst(server, body, headers, args.concurrency)
            peaks.append(peak)
            statuses += answered
            walls.append(wall)
        return {"baseline": baseline, "peaks": peaks, "statuses": statuses, "walls": walls, "after": server.rss()}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", default="json,binary", help="json, binary or both")
    parser.add_argument("--unbounded", action="store_true", help="also JSON with no memory budget (the comparison)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="PREDICT_TIMEOUT_S of the server")
    args = parser.parse_args()
    defaults = Settings()
    samples = defaults.max_predict_samples
    work = Path(tempfile.mkdtemp(prefix="emgpose-bench-predict-memory-"))
    store = train(work)
    requests = bodies(samples)
    env = {"PREDICT_TIMEOUT_S": str(args.timeout_s)}
    label = f"PREDICT_MEMORY_MB={defaults.predict_memory_mb:g} (default)"
    runs = [(kind, label, env) for kind in args.kinds.split(",")]
    if args.unbounded:
        runs.append(("json", "PREDICT_MEMORY_MB=100000 (no budget)", {**env, "PREDICT_MEMORY_MB": "100000"}))
    print(
        f"{args.concurrency} concurrent requests of {samples} samples x {CHANNELS} channels (MAX_PREDICT_SAMPLES) "
        f"each, {args.repeats} repeats; JSON body {len(requests['json'][0]) / MB:.1f} MB, float32 body "
        f"{len(requests['binary'][0]) / MB:.1f} MB; {os.cpu_count()} cores"
    )
    for kind, label, extra in runs:
        body, headers = requests[kind]
        result = run(store, kind, body, headers, args, extra)
        peaks = [p / MB for p in result["peaks"]]
        print(
            f"  {kind:<6} {label:<38} baseline {result['baseline'] / MB:6.0f} MB  peaks "
            f"{', '.join(f'{p:.0f}' for p in peaks)} MB  median peak {statistics.median(peaks):6.0f} MB  "
            f"after {result['after'] / MB:.0f} MB  statuses {dict(result['statuses'])}  "
            f"wall {statistics.median(result['walls']):.1f} s"
        )


if __name__ == "__main__":
    main()
