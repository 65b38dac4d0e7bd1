"""Serving at scale, every target of the issue in one run: the in-process model as the baseline, the
inference service (its production command, several workers, dynamic batching) at 1/16/64 clients, the
gateway's overhead, 32 real-time WebSocket streams, 16 clients while a training job runs, and hot reloads
under 64 clients.

    .venv/bin/python bench/serve.py [--repeats 3] [--seconds 3] [--out serve.json]

Trains a 60-round model on synthetic data into a temporary store, starts ``python -m
emgpose_inference.serve`` (``INFERENCE_WORKERS``, default: the usable CPUs) and, where PostgreSQL answers
at 127.0.0.1:5432, the gateway (``uvicorn emgpose_gateway.main:app``, a fresh database dropped at the
end). One request is one window: 400 samples x 16 channels of float32 (``application/octet-stream``).
The load generator is closed-loop (each client sends its next request when the last is answered) over
keep-alive HTTP/1.1 written by hand on asyncio, so it costs the server's cores little; it runs on the
same machine, as in the issue. Each measurement is repeated ``--repeats`` times; the table shows the
medians and the JSON keeps every run. Ports: 18250-18299.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

from emgpose.preprocess.job import run_preprocess
from emgpose.synth import SynthConfig, write_dataset
from emgpose.train import boost
from emgpose.train.boost import BoostConfig
from emgpose.train.bundle import Bundle, Registry
from emgpose.train.job import run_train
from emgpose.train.predict import Predictor, predict

PORTS = range(18250, 18300)
NAME = "bench"
TARGETS = {  # the targets, checked against the medians
    "clients_16_p99_ms": ("<=", 5.0),
    "clients_64_predictions_per_s": (">=", 1000.0),
    "clients_64_p99_ms": ("<=", 50.0),
    "gateway_overhead_p50_ms": ("<=", 1.0),
    "streams_32_p99_ms": ("<=", 10.0),
    "training_p99_over_idle": ("<=", 2.0),
    "reload_failed": ("<=", 0.0),
}


def free_port(taken: set[int]) -> int:
    for port in PORTS:
        if port in taken:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise SystemExit(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def quantiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50_ms": float("nan"), "p99_ms": float("nan")}
    q = np.percentile(ms, [50, 99])
    return {"p50_ms": round(float(q[0]), 3), "p99_ms": round(float(q[1]), 3)}


# --- the load generator ----------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection; ``Content-Length`` answers only (what uvicorn sends here)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.index(b"content-length:") + 15
        length = int(lower[start : lower.index(b"\r\n", start)])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


def post_request(port: int, path: str, emg: np.ndarray, rate: float) -> bytes:
    body = np.ascontiguousarray(emg, dtype="<f4").tobytes()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"X-EMG-Samples: {emg.shape[0]}\r\nX-EMG-Channels: {emg.shape[1]}\r\nX-Sample-Rate: {rate:g}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Load:
    latencies_ms: list[float]
    completed: int
    failed: int
    seconds: float
    errors: list[str]

    def summary(self) -> dict[str, Any]:
        return {
            **quantiles(self.latencies_ms),
            "predictions_per_s": round(self.completed / self.seconds, 1),
            "requests": self.completed,
            "failed": self.failed,
            "errors": self.errors[:5],
        }


async def closed_loop(port: int, request: bytes, clients: int, seconds: float, warmup: float = 0.5) -> Load:
    """``clients`` connections, each sending ``request`` again as soon as it is answered, for ``seconds``
    after ``warmup``; a non-200 answer or a broken connection counts as failed (the client reconnects)."""
    latencies: list[float] = []
    errors: list[str] = []
    counts = {"completed": 0, "failed": 0}
    start = time.perf_counter()
    begin, end = start + warmup, start + warmup + seconds

    async def client() -> None:
        connection: Connection | None = None
        while (now := time.perf_counter()) < end:
            try:
                if connection is None:
                    connection = await Connection.open(port)
                t = time.perf_counter()
                status, body = await connection.send(request)
                done = time.perf_counter()
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                if now >= begin:
                    counts["failed"] += 1
                    errors.append(repr(exc))
                if connection is not None:
                    connection.close()
                connection = None
                continue
            if t < begin:
                continue
            if status == 200:
                counts["completed"] += 1
                latencies.append((done - t) * 1e3)
            else:
                counts["failed"] += 1
                errors.append(f"{status}: {body[:200]!r}")
        if connection is not None:
            connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return Load(latencies, counts["completed"], counts["failed"], seconds, errors)


async def streams(ws_url: str, emg: np.ndarray, count: int, seconds: float, first: int, stride: int) -> list[float]:
    """``count`` streams, each sending one stride of samples every stride's duration (real time), phases
    spread evenly; the time from sending a chunk that completes a window to its prediction message."""
    rate = 2000.0
    period = stride / rate
    latencies: list[float] = []

    async def one(phase: float) -> None:
        async with websockets.connect(f"{ws_url}/v1/stream?sample_rate={rate:g}", max_size=None) as ws:
            await ws.recv()  # ready
            await ws.send(np.ascontiguousarray(emg[:first], dtype="<f4").tobytes())  # up to the first window's end
            await ws.recv()
            await asyncio.sleep(phase)
            position, t_next = first, time.perf_counter()
            stop = t_next + seconds
            while time.perf_counter() < stop:
                t_next += period
                chunk = emg[position % (len(emg) - stride) :][:stride]
                position += stride
                sent = time.perf_counter()
                await ws.send(np.ascontiguousarray(chunk, dtype="<f4").tobytes())
                message = json.loads(await ws.recv())
                if message.get("type") != "prediction":
                    raise RuntimeError(f"stream answered {message}")
                latencies.append((time.perf_counter() - sent) * 1e3)
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))

    await asyncio.gather(*(one(i * period / count) for i in range(count)))
    return latencies


# --- the services ----------------------------------------------------------------------------------


def wait_ready(url: str, what: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{what} was not ready within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


@contextmanager
def process(
    argv: list[str], env: dict[str, str], log: Path, ready: str, what: str
) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_ready(ready, what, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def gateway_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for the gateway (dropped afterwards), or None where none answers."""
    try:
        import psycopg

        from emgpose.db.migrate import upgrade
    except ImportError:
        yield None
        return
    admin_url, name = "postgresql://postgres@127.0.0.1:5432/postgres", f"emgpose_bench_serve_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"no gateway measurement: PostgreSQL at 127.0.0.1:5432 is not reachable ({exc})", file=sys.stderr)
        yield None
        return
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TRAIN_LOOP = """
import sys
from emgpose.train.boost import BoostConfig
from emgpose.train.job import run_train
while True:  # until the bench stops it: a training job is always running
    run_train(sys.argv[1], sys.argv[2], "trainload", config=BoostConfig(num_rounds=400), promote=False)
"""


@contextmanager
def training(pre: str, store: str, log: Path) -> Iterator[int]:
    """A training job in a child process pinned to the last CPU (as a compose ``cpus`` quota caps the
    trainer): XGBoost's threads follow the affinity (emgpose.devices.usable_cpus). Yields the CPU."""
    cpu = max(os.sched_getaffinity(0))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", TRAIN_LOOP, pre, store],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}),
        )
    try:
        time.sleep(3.0)  # past loading the features: boosting rounds are running
        if proc.poll() is not None:
            raise SystemExit(f"the training job exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        yield cpu
    finally:
        proc.terminate()
        proc.wait(20)


# --- the measurements ------------------------------------------------------------------------------


def in_process(bundle: Bundle, emg: np.ndarray, n: int = 1000) -> dict[str, Any]:
    """``predict()`` on one window in this process: the baseline, with its preprocessing and booster parts."""

    def timed(fn: Callable[[], Any]) -> list[float]:
        for _ in range(50):
            fn()
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    total = timed(lambda: predict(bundle, emg))
    features = Predictor(bundle).prepare(emg).features
    booster = timed(lambda: boost.predict(bundle.booster, features, bundle.outputs))
    prep = timed(lambda: Predictor(bundle).prepare(emg))
    rows = np.repeat(features, 64, axis=0)
    booster64 = timed(lambda: boost.predict(bundle.booster, rows, bundle.outputs))
    return {
        **quantiles(total),
        "predictions_per_s": round(1000 / statistics.mean(total), 1),
        "preprocessing_p50_ms": quantiles(prep)["p50_ms"],
        "booster_p50_ms": quantiles(booster)["p50_ms"],
        "booster_64_rows_p50_ms": quantiles(booster64)["p50_ms"],
    }


def publish_variant(store: str, base: Bundle, i: int) -> str:
    """A new version whose answers differ: ``base``'s booster cut by ``i`` rounds (cycling)."""
    registry = Registry(store)
    bundle = base
    rounds = bundle.booster.num_boosted_rounds()
    trees = rounds - 1 - i % max(1, rounds - 1)
    meta = {k: v for k, v in bundle.meta.items() if k not in ("version", "files", "latest", "format")}
    return registry.publish(meta, bundle.booster[0:trees], files={}, promote=True)


async def reload_under_load(
    port: int, request: bytes, store: str, base: Bundle, seconds: float, url: str
) -> dict[str, Any]:
    """64 clients while new versions are published every second; the service's reload interval is 0.5 s."""
    load = asyncio.ensure_future(closed_loop(port, request, 64, seconds, warmup=0.2))
    published = []
    for i in range(int(seconds)):
        await asyncio.sleep(1.0)
        published.append(await asyncio.to_thread(publish_variant, store, base, i))
    result = await load
    await asyncio.sleep(1.5)
    async with httpx.AsyncClient(timeout=5) as client:
        serving = (await client.get(f"{url}/readyz")).json().get("version")
    return {**result.summary(), "versions_published": len(published), "serving_last": serving == published[-1]}


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per load measurement")
    parser.add_argument("--workers", type=int, default=None, help="INFERENCE_WORKERS (default: usable CPUs)")
    parser.add_argument("--out", type=Path, default=Path("serve.json"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="emgpose-bench-serve-"))
    print(f"training the model in {work} ...", file=sys.stderr, flush=True)
    write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=10.0, seed=1), (work / "data").as_uri())
    pre, store = (work / "pre").as_uri(), (work / "store").as_uri()
    run_preprocess((work / "data").as_uri(), pre, workers=1)
    run_train(pre, store, NAME, config=BoostConfig(num_rounds=60, nthread=1))
    bundle = Registry(store).load(NAME)
    bundle.booster.set_param({"nthread": 1})  # as the service predicts (emgpose_inference.state.Loaded.warm)
    rng = np.random.default_rng(0)
    emg = (rng.standard_normal((40_000, bundle.num_channels)) * 0.05).astype(np.float32)
    first = Predictor(bundle)
    length, stride = first.window_length, first.stream.stride
    window = emg[:length]

    taken: set[int] = set()
    port, gport = free_port(taken), free_port(taken)
    env = {"STORE_URI": store, "MODEL_NAME": NAME, "LOG_LEVEL": "WARNING", "AUTH_ENABLED": "false",
           "RELOAD_INTERVAL_S": "0.5"}  # fmt: skip
    if args.workers:
        env["INFERENCE_WORKERS"] = str(args.workers)
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, "-m", "emgpose_inference.serve", "--host", "127.0.0.1", "--port", str(port)]
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "usable": len(os.sched_getaffinity(0)),
                                           "load_average_before": os.getloadavg()},
                               "request": f"{length} samples x {bundle.num_channels} channels float32"}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}

    def run(name: str, measure: Callable[[], dict[str, Any]]) -> None:
        print(f"  {name} ...", file=sys.stderr, flush=True)
        runs.setdefault(name, []).append(measure())

    with gateway_database() as database, process(serve, env, work / "inference.log", f"{url}/readyz", "inference"):
        workers = args.workers or _workers()
        results["inference_workers"] = workers
        request = post_request(port, "/v1/predict", window, bundle.sample_rate)
        gateway = None
        if database is not None:
            genv = {**env, "DATABASE_URL": database, "INFERENCE_URL": url, "BROKER_DIR": str(work / "broker"),
                    "STORE_URI": store}  # fmt: skip
            gateway = process([sys.executable, "-m", "uvicorn", "emgpose_gateway.main:app", "--host", "127.0.0.1",
                               "--port", str(gport), "--log-level", "warning"], genv, work / "gateway.log",
                              f"http://127.0.0.1:{gport}/healthz", "gateway")  # fmt: skip
        with gateway if gateway is not None else _nothing():
            grequest = post_request(gport, "/v1/predict", window, bundle.sample_rate)
            for repeat in range(args.repeats):
                print(f"repeat {repeat + 1} of {args.repeats}", file=sys.stderr, flush=True)
                run("in_process", lambda: in_process(bundle, window))
                for clients in (1, 16, 64):
                    run(f"clients_{clients}", lambda c=clients: asyncio.run(
                        closed_loop(port, request, c, args.seconds)).summary())  # fmt: skip
                if gateway is not None:
                    run("direct_1", lambda: asyncio.run(closed_loop(port, request, 1, args.seconds)).summary())
                    run("gateway_1", lambda: asyncio.run(closed_loop(gport, grequest, 1, args.seconds)).summary())
                run("streams_32", lambda: quantiles(asyncio.run(
                    streams(f"ws://127.0.0.1:{port}", emg, 32, args.seconds + 2, length, stride))))  # fmt: skip
        with training(pre, store, work / "train.log") as cpu:
            results["training_pinned_to_cpu"] = cpu
            for _ in range(args.repeats):
                run("clients_16_training", lambda: asyncio.run(
                    closed_loop(port, request, 16, args.seconds)).summary())  # fmt: skip
        for _ in range(args.repeats):
            run(
                "reload_64", lambda: asyncio.run(reload_under_load(port, request, store, bundle, args.seconds + 2, url))
            )

    shutil.rmtree(work, ignore_errors=True)
    results["machine"]["load_average_after"] = os.getloadavg()  # other work on the machine skews every figure
    medians = {name: median_of(r) for name, r in runs.items()}
    summary = _summary(medians, sum(r["failed"] for r in runs["reload_64"]))
    results.update(medians=medians, summary=summary, runs=runs)
    args.out.write_text(json.dumps(results, indent=2))
    _print(results, medians, summary)


def _workers() -> int:
    from emgpose.settings import Settings
    from emgpose_inference.serve import workers

    return workers(Settings())


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def _summary(m: dict[str, dict[str, Any]], reload_failed: int) -> dict[str, Any]:
    s: dict[str, Any] = {
        "clients_16_p99_ms": m["clients_16"]["p99_ms"],
        "clients_64_predictions_per_s": m["clients_64"]["predictions_per_s"],
        "clients_64_p99_ms": m["clients_64"]["p99_ms"],
        "streams_32_p99_ms": m["streams_32"]["p99_ms"],
        "training_p99_over_idle": round(m["clients_16_training"]["p99_ms"] / m["clients_16"]["p99_ms"], 2),
        "reload_failed": reload_failed,  # over every repeat, not the median
    }
    if "gateway_1" in m:
        s["gateway_overhead_p50_ms"] = round(m["gateway_1"]["p50_ms"] - m["direct_1"]["p50_ms"], 3)
    return s


def _print(results: dict[str, Any], m: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    machine = results["machine"]
    print(f"\n{results['request']} per request; inference workers: {results['inference_workers']}; "
          f"{machine['usable']} usable CPUs; medians of the repeats; load average "
          f"{machine['load_average_before'][0]:.1f} before, {machine['load_average_after'][0]:.1f} after")  # fmt: skip
    print(f"{'path':<36} {'p50 ms':>8} {'p99 ms':>8} {'pred/s':>9} {'failed':>7}")
    for name, row in m.items():
        print(f"{name:<36} {row.get('p50_ms', float('nan')):>8.2f} {row.get('p99_ms', float('nan')):>8.2f} "
              f"{row.get('predictions_per_s', float('nan')):>9.0f} {row.get('failed', 0):>7.0f}")  # fmt: skip
    base = m["in_process"]
    print(f"in-process: preprocessing {base['preprocessing_p50_ms']:.3f} ms, booster {base['booster_p50_ms']:.3f} ms "
          f"(64 rows: {base['booster_64_rows_p50_ms']:.3f} ms)")  # fmt: skip
    print("\ntarget                              measured   target   met")
    for key, (op, bound) in TARGETS.items():
        if key not in summary:
            print(f"{key:<36} {'n/a':>8}")
            continue
        value = summary[key]
        met = value <= bound if op == "<=" else value >= bound
        print(f"{key:<36} {value:>8.2f}   {op}{bound:<6g} {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
