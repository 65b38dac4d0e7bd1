"""``emgpose up``: every service as a local process, with nothing to install (the embedded default).

Without ``DATABASE_URL``, ``STORE_URI`` and ``REDIS_URL`` the stack uses SQLite, a local object-store
folder and Celery's filesystem transport, all under one work folder; where they are set, the same
command uses PostgreSQL, S3 and Redis instead. The processes run exactly the commands the compose
file gives (uvicorn for the gateway and inference, Celery workers on the ``preprocess`` and ``train``
queues), after the migrations (the compose ``migrate`` step). If one process dies the others are
stopped, so a broken stack never looks alive.

API keys are on (``AUTH_ENABLED=true`` unless the caller's environment says otherwise), as in compose.
Without ``AUTH_PEPPER`` in the environment the stack makes one and keeps it in ``<workdir>/auth/pepper``;
it makes an admin key for the stack in ``<workdir>/auth/admin.key`` (both mode 0600, reused while the key
is valid) and says where that file is, never what is in it.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr, TypeAdapter

from emgpose.auth import create_key, key_digest, key_id_of, pepper_bytes
from emgpose.db.engine import session_scope
from emgpose.db.migrate import upgrade
from emgpose.db.models import ApiKey
from emgpose.errors import Unavailable
from emgpose.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class Stack:
    """The local processes of one stack and where they answer."""

    workdir: Path
    host: str = "127.0.0.1"
    gateway_port: int = 8000
    inference_port: int = 8001
    preprocess_concurrency: int = 2
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    api_key: str | None = None  # the stack's admin key once started (None with AUTH_ENABLED=false)

    @property
    def key_file(self) -> Path:
        """Where the stack's admin key is kept (mode 0600)."""
        return self.workdir.resolve() / "auth" / "admin.key"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def inference_url(self) -> str:
        return f"http://{self.host}:{self.inference_port}"

    def environment(self) -> dict[str, str]:
        """The children's environment: the caller's, plus embedded defaults for what it does not set."""
        env = dict(os.environ)
        work = self.workdir.resolve()
        env.setdefault("DATABASE_URL", f"sqlite:///{work / 'emgpose.db'}")
        env.setdefault("STORE_URI", (work / "store").as_uri())
        env.setdefault("BROKER_DIR", str(work / "broker"))
        env["INFERENCE_URL"] = self.inference_url
        env.setdefault("AUTH_ENABLED", "true")
        env.update(self.env)
        if auth_enabled(env) and not env.get("AUTH_PEPPER", "").strip():
            env["AUTH_PEPPER"] = local_pepper(work / "auth" / "pepper")
        return env

    def commands(self) -> dict[str, list[str]]:
        """The compose services' commands, run with this interpreter."""
        py = sys.executable
        worker = ["--prefetch-multiplier", "1", "--loglevel", "INFO"]
        return {
            "inference": [py, "-m", "emgpose_inference.serve", "--host", self.host,  # INFERENCE_WORKERS
                          "--port", str(self.inference_port)],
            "gateway": [py, "-m", "uvicorn", "emgpose_gateway.main:app", "--host", self.host,
                        "--port", str(self.gateway_port)],
            "preprocessor": [py, "-m", "celery", "-A", "emgpose_preprocessor.worker", "worker", "--queues",
                             "preprocess", "--pool", "threads", "--concurrency", str(self.preprocess_concurrency),
                             "--hostname", "preprocess@%h", *worker],
            "trainer": [py, "-m", "celery", "-A", "emgpose_trainer.worker", "worker", "--queues", "train",
                        "--pool", "threads", "--concurrency", "1", "--hostname", "train@%h", *worker],
        }  # fmt: skip

    def start(self, timeout_s: float = 60.0) -> None:
        env = self.environment()
        self.workdir.mkdir(parents=True, exist_ok=True)
        upgrade(env["DATABASE_URL"])
        if auth_enabled(env):
            self.api_key = admin_key(env["DATABASE_URL"], pepper_bytes(SecretStr(env["AUTH_PEPPER"])), self.key_file)
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        for name, argv in self.commands().items():
            out = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it for its lifetime
            self.processes[name] = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
            out.close()
            log.info("started %s (pid %d), log %s", name, self.processes[name].pid, logs / f"{name}.log")
        self.wait_healthy(timeout_s)

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for url in (f"{self.inference_url}/healthz", f"{self.gateway_url}/readyz"):
            while True:
                self.check_alive()
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise Unavailable(f"{url} did not answer 200 within {timeout_s:g} s; see {self.workdir / 'logs'}")
                time.sleep(0.2)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise Unavailable(
                    f"{name} exited with code {proc.returncode}; see {self.workdir / 'logs' / (name + '.log')}"
                )

    def stop(self, grace_s: float = 20.0) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for name, proc in self.processes.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %g s: killing it", name, grace_s)
                proc.kill()
                proc.wait()
        self.processes.clear()


@contextlib.contextmanager
def running(stack: Stack, timeout_s: float = 60.0) -> Iterator[Stack]:
    """Starts ``stack`` and stops it on exit (also on errors and Ctrl-C)."""
    try:
        stack.start(timeout_s)
        yield stack
    finally:
        stack.stop()


def serve(stack: Stack) -> int:
    """Runs the stack until Ctrl-C or SIGTERM, or until one process dies (then exits non-zero)."""
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    with running(stack):
        settings = get_settings()
        log.info("gateway   %s  (API docs %s/docs)", stack.gateway_url, stack.gateway_url)
        log.info("inference %s  (serving model %r)", stack.inference_url, settings.model_name)
        if stack.api_key is not None:
            log.info("admin API key in %s: export EMGPOSE_API_KEY=$(cat %s)", stack.key_file, stack.key_file)
        else:
            log.info("API keys are off (AUTH_ENABLED=false): every route is open")
        try:
            while not stopping:
                stack.check_alive()
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def auth_enabled(env: dict[str, str]) -> bool:
    """``AUTH_ENABLED`` as the services read it (``true``, ``1``, ``yes``, ``on``, ...)."""
    return TypeAdapter(bool).validate_python(env.get("AUTH_ENABLED", "false").strip() or "false")


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by its owner only (0600, folder 0700), atomically."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def local_pepper(path: Path) -> str:
    """The local stack's AUTH_PEPPER: read from ``path``, or made (256 random bits) and kept there."""
    if path.is_file():
        value = path.read_text().strip()
        if value:
            return value
    value = secrets.token_hex(32)
    write_private(path, value + "\n")
    log.info("made AUTH_PEPPER for this stack in %s", path)
    return value


def admin_key(database_url: str, pepper: bytes, path: Path) -> str:
    """The admin key in ``path`` while it is still a valid admin key of this database; else a new one,
    written there (mode 0600). Only the file's name is ever logged."""
    if path.is_file():
        key = path.read_text().strip()
        key_id = key_id_of(key)
        if key_id is not None:
            with session_scope(database_url) as session:
                row = session.get(ApiKey, key_id)
                if (
                    row is not None
                    and row.revoked_at is None
                    and row.scope == "admin"
                    and hmac.compare_digest(row.digest, key_digest(pepper, key))
                ):
                    return key
    with session_scope(database_url) as session:
        row, key = create_key(session, pepper, "admin", "emgpose up (local stack)")
    write_private(path, key + "\n")
    log.info("made admin API key %s for this stack: %s", row.id, path)
    return key
