"""Chaos: jobs submitted through the gateway while a random worker is killed with SIGKILL every K seconds.

    .venv/bin/python bench/chaos.py [--jobs 100] [--kill-every 10] [--backend servers|embedded]

Starts the stack as local processes with the compose commands: the gateway (which runs the reaper), two
preprocessor and two trainer workers, on its own PostgreSQL and Redis (``servers``, as compose) or on
SQLite and the filesystem broker (``embedded``, as ``emgpose up``). It submits ``--jobs`` jobs through the
REST API, alternating preprocess jobs (12 synthetic sessions) and train jobs (``--rounds``), while a
killer sends SIGKILL to a random worker every ``--kill-every`` seconds and starts a new one a second
later, as ``restart: unless-stopped`` would. Reported: jobs submitted / succeeded / failed (with the
reason) / stuck (not ended ``--settle`` seconds after the last submission), and recovery times: from a
kill to the moment every unit the killed worker held was running on another worker (or done).
Writes ``--out`` (JSON) and a timeline plot beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the private PostgreSQL and Redis servers of the fault tests

from backends import OwnPostgres, OwnRedis  # noqa: E402
from servers import free_port  # noqa: E402

from emgpose.db.migrate import upgrade  # noqa: E402
from emgpose.db.models import Job, JobPart  # noqa: E402
from emgpose.preprocess.job import run_preprocess  # noqa: E402
from emgpose.synth import SynthConfig, write_dataset  # noqa: E402
from emgpose.up import Stack  # noqa: E402

WORKERS = ("preprocessor", "preprocessor", "trainer", "trainer")


class Fleet:
    """The worker processes; ``kill`` one at random and start its replacement a second later."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.work, self.env = work, env
        self.commands = Stack(work).commands()
        self.procs: list[subprocess.Popen] = []
        self.kills: list[dict] = []
        self.started = 0
        for name in WORKERS:
            self.procs.append(self._start(name))
        self.names = list(WORKERS)

    def _start(self, name: str) -> subprocess.Popen:
        self.started += 1
        log = open(self.work / f"{name}-{self.started}.log", "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(self.commands[name], env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def kill_one(self, engine, t0: float) -> None:
        i = random.randrange(len(self.procs))
        proc, name = self.procs[i], self.names[i]
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        held = _held_by(engine, proc.pid)
        self.kills.append({"t": killed - t0, "worker": name, "pid": proc.pid, "units": held, "recovered_s": None})
        time.sleep(1.0)
        self.procs[i] = self._start(name)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _held_by(engine, pid: int) -> list[list]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(JobPart.job_id, JobPart.phase, JobPart.part).where(
                JobPart.state == "running", JobPart.worker.like(f"%:{pid}")
            )
        ).all()
    return [list(r) for r in rows]


def _recovered(engine, kill: dict) -> bool:
    """Every unit the killed worker held is done, or running on another worker (or its job ended)."""
    with engine.connect() as connection:
        for job_id, phase, part in kill["units"]:
            row = connection.execute(
                select(JobPart.state, JobPart.worker).where(
                    JobPart.job_id == job_id, JobPart.phase == phase, JobPart.part == part
                )
            ).one()
            if row.state == "queued" or (row.state == "running" and row.worker.endswith(f":{kill['pid']}")):
                if connection.scalar(select(Job.state).where(Job.id == job_id)) in ("queued", "running"):
                    return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--kill-every", type=float, default=10.0, help="seconds between kills")
    parser.add_argument("--backend", choices=("servers", "embedded"), default="servers")
    parser.add_argument("--submit-every", type=float, default=0.5, help="seconds between submissions")
    parser.add_argument("--settle", type=float, default=300.0, help="seconds jobs get after the last submission")
    parser.add_argument("--rounds", type=int, default=150, help="boosting rounds of each train job")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per synthetic session")
    parser.add_argument("--heartbeat-timeout", type=float, default=10.0, help="HEARTBEAT_TIMEOUT_S")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "docs/figures/chaos.json"))
    args = parser.parse_args()
    random.seed(args.seed)

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="emgpose-chaos-")))
        env = {
            **os.environ,
            "STORE_URI": (work / "store").as_uri(),
            "ALLOWED_DATA_ROOTS": work.as_uri(),  # the jobs name the raw and preprocessed data written below
            "BROKER_DIR": str(work / "broker"),
            "DEVICE": "cpu",
            "HEARTBEAT_S": str(args.heartbeat_timeout / 5),
            "HEARTBEAT_TIMEOUT_S": str(args.heartbeat_timeout),
            "REAPER_INTERVAL_S": "1",
            "TASK_RETRY_BACKOFF_S": "1",
            "LOG_LEVEL": "INFO",
        }
        env.pop("REDIS_URL", None)
        if args.backend == "servers":
            postgres = stack.enter_context(OwnPostgres(work / "pg"))
            redis_server = stack.enter_context(OwnRedis(work / "redis"))
            env.update(DATABASE_URL=postgres.url, REDIS_URL=redis_server.url)
        else:
            env["DATABASE_URL"] = f"sqlite:///{work / 'jobs.db'}"
        os.environ.update({k: env[k] for k in ("DATABASE_URL", "STORE_URI")})
        upgrade(env["DATABASE_URL"])
        engine = create_engine(env["DATABASE_URL"])

        raw, pre = work / "raw", work / "pre"
        write_dataset(SynthConfig(users=3, stages=2, sessions=2, duration_s=args.duration, seed=3), raw.as_uri())
        run_preprocess(raw.as_uri(), pre.as_uri(), workers=1)

        port = free_port()
        gateway_log = open(work / "gateway.log", "wb")  # noqa: SIM115
        gateway = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "emgpose_gateway.main:app", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=gateway_log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(gateway.terminate)
        url = f"http://127.0.0.1:{port}"
        http = stack.enter_context(httpx.Client(base_url=url, timeout=30))
        for _ in range(300):
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        fleet = Fleet(work, env)
        stack.callback(fleet.stop)

        t0 = time.monotonic()
        t0_wall = time.time()
        stop = threading.Event()

        def killer() -> None:
            while not stop.wait(args.kill_every):
                fleet.kill_one(engine, t0)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        submitted: dict[str, dict] = {}
        for i in range(args.jobs):
            if i % 2 == 0:
                body = {"type": "preprocess", "params": {"dataset": raw.as_uri()}}
            else:
                body = {"type": "train", "params": {"dataset": pre.as_uri(), "name": f"chaos{i}",
                                                    "config": {"num_rounds": args.rounds, "nthread": 1}}}  # fmt: skip
            job = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": f"chaos-{i}"}).raise_for_status().json()
            submitted[job["id"]] = {"type": body["type"], "submitted": time.monotonic() - t0}
            print(f"\rsubmitted {i + 1}/{args.jobs}, kills {len(fleet.kills)}", end="", flush=True)
            time.sleep(args.submit_every)
        last = time.monotonic()
        ended: dict[str, dict] = {}
        while time.monotonic() - last < args.settle and len(ended) < len(submitted):
            for job_id in [j for j in submitted if j not in ended]:
                job = http.get(f"/v1/jobs/{job_id}").json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    ended[job_id] = job
                    finished = datetime.fromisoformat(job["finished_at"]).timestamp()
                    submitted[job_id]["ended"] = round(finished - t0_wall, 2)
            for kill in fleet.kills:
                if kill["recovered_s"] is None and _recovered(engine, kill):
                    kill["recovered_s"] = round(time.monotonic() - t0 - kill["t"], 2)
            print(f"\rended {len(ended)}/{len(submitted)}, kills {len(fleet.kills)}   ", end="", flush=True)
            time.sleep(1.0)
        stop.set()
        thread.join()
        print()

    states = [job["state"] for job in ended.values()]
    failed = [
        {"id": j["id"], "type": j["type"], "error": j["error"]} for j in ended.values() if j["state"] == "failed"
    ]
    recoveries = [k["recovered_s"] for k in fleet.kills if k["units"] and k["recovered_s"] is not None]
    report = {
        "backend": args.backend,
        "jobs": len(submitted),
        "succeeded": states.count("succeeded"),
        "failed": len(failed),
        "failures": failed,
        "stuck": len(submitted) - len(ended),
        "kills": len(fleet.kills),
        "kills_holding_units": sum(1 for k in fleet.kills if k["units"]),
        "requeues": sum(j["requeues"] for j in ended.values()),
        "recovery_s": {
            "p50": statistics.median(recoveries) if recoveries else None,
            "max": max(recoveries) if recoveries else None,
            "not_recovered": sum(1 for k in fleet.kills if k["units"] and k["recovered_s"] is None),
        },
        "settings": {"kill_every_s": args.kill_every, "heartbeat_timeout_s": args.heartbeat_timeout},
        "wall_s": round(max((s.get("ended", 0) for s in submitted.values()), default=0), 1),
        "timeline": {"kills": fleet.kills, "jobs": submitted},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    _plot(report, out.with_suffix(".png"))
    summary = {k: v for k, v in report.items() if k not in ("timeline", "failures")}
    print(json.dumps(summary, indent=1))
    for failure in failed[:10]:
        print("failed:", failure)


def _plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4))
    jobs = sorted(report["timeline"]["jobs"].values(), key=lambda j: j["submitted"])
    for row, job in enumerate(jobs):
        color = "tab:blue" if job["type"] == "preprocess" else "tab:green"
        end = job.get("ended")
        ax.plot([job["submitted"], end if end is not None else report["wall_s"]], [row, row],
                color=color if end is not None else "tab:red", lw=1.5)  # fmt: skip
    for kill in report["timeline"]["kills"]:
        ax.axvline(kill["t"], color="grey", lw=0.6, ls=":")
    ax.set_xlabel("seconds (dotted: a worker killed with SIGKILL)")
    ax.set_ylabel("job (blue: preprocess, green: train)")
    ax.set_title(
        f"{report['jobs']} jobs, {report['kills']} kills: {report['succeeded']} succeeded, "
        f"{report['failed']} failed, {report['stuck']} stuck; recovery p50 {report['recovery_s']['p50']} s"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
