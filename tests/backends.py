"""Private PostgreSQL and Redis servers for fault tests: started on free ports, stopped, restarted, frozen.

``OwnPostgres(folder)`` runs its own cluster (``folder/data``, log in ``folder/postgres.log``) and
``OwnRedis(folder)`` its own ``redis-server``; both are context managers exposing ``url``. They exist so
that a test can stop or freeze a server without touching the shared ones on 5432 and 6379.

PostgreSQL refuses to run as root: as root the cluster belongs to the ``postgres`` user, and the folders
above ``folder`` get the search bit for others (``o+x``, never read) so that user can reach it. The
cluster is made with ``initdb --no-sync`` and runs with ``fsync=off`` (about 0.7 s to make, 0.3 s to
start on the 2-core test machine, so no template cluster is kept). Both servers are child processes of
the test (``postgres`` itself, not ``pg_ctl``'s daemon) that the kernel kills when the test process
dies, so a test run killed by a timeout leaves no server behind.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from servers import free_port

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",  # TCP only: no clash with the shared server's socket
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "60",
    "shared_buffers": "32MB",
}


def postgres_bin(name: str) -> str:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``); skips the test where none exists."""
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        pytest.skip(f"PostgreSQL's {name} is not installed (looked on PATH and in /usr/lib/postgresql/*/bin)")
    return found


def _as_postgres(folder: Path) -> dict[str, Any]:
    """``Popen`` options that run a program as the cluster's owner; gives that user access to ``folder``."""
    if os.geteuid() != 0:
        return {}
    folder.mkdir(parents=True, exist_ok=True)
    shutil.chown(folder, "postgres", "postgres")
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the thread that started it ends (``PR_SET_PDEATHSIG``)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def _spawn(command: list[str], log_path: Path, **options: Any) -> subprocess.Popen[bytes]:
    """``command`` as a child whose output goes to ``log_path``; tied to this process where that is safe
    (the kernel's parent is the starting thread, so only servers started by the main thread are tied)."""
    tied = threading.current_thread() is threading.main_thread()
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if tied else None, **options
        )


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry))
    return found


class OwnPostgres:
    """``with OwnPostgres(tmp_path / "pg") as pg: create_engine(pg.url)``; ``stop``/``start``, ``freeze``/``thaw``."""

    def __init__(self, folder: Path, *, startup_timeout: float = 30.0) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log_path = folder / "postgres.log"
        self.port = free_port()
        self.startup_timeout = startup_timeout
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.frozen = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._owner: dict[str, Any] = {}

    def __enter__(self) -> OwnPostgres:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._owner = _as_postgres(self.folder)
        command = [postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"]
        result = subprocess.run([*command, "-E", "UTF8"], capture_output=True, text=True, timeout=60, **self._owner)
        if result.returncode != 0:
            raise RuntimeError(f"initdb exited with {result.returncode}:\n{result.stdout}{result.stderr}")
        settings = {**SERVER_SETTINGS, "port": str(self.port)}
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def start(self) -> None:
        """Starts the server (same port, same data) and waits until it accepts connections."""
        self.proc = _spawn([postgres_bin("postgres"), "-D", str(self.data)], self.log_path, **self._owner)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    message = f"PostgreSQL on {self.port} does not accept connections:\n{self.log()}"
                    raise RuntimeError(message) from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Fast shutdown (SIGINT, as ``pg_ctl stop -m fast``): open connections are closed, the data stays."""
        self.thaw()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def pid(self) -> int:
        """The postmaster's process id."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"PostgreSQL on {self.port} is not running")
        return self.proc.pid

    def processes(self) -> list[int]:
        """The postmaster and every process it started (backends, checkpointer, walwriter...)."""
        postmaster = self.pid()
        return [postmaster, *_children(postmaster)]

    def freeze(self) -> None:
        """SIGSTOP to the postmaster, then to its children: connections open, but nothing ever answers."""
        os.kill(self.pid(), signal.SIGSTOP)  # first, so that it starts no new child meanwhile
        self.frozen = True
        for pid in self.processes()[1:]:
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT to the children, then to the postmaster."""
        if not self.frozen or self.proc is None or self.proc.poll() is not None:
            self.frozen = False
            return
        for pid in reversed(self.processes()):
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass  # a child that ended meanwhile
        self.frozen = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        self.stop()


class OwnRedis:
    """``with OwnRedis(tmp_path / "redis") as rd: redis.Redis.from_url(rd.url)``; ``stop``/``start``, ``kill``."""

    def __init__(self, folder: Path, appendonly: bool = True, *, startup_timeout: float = 15.0) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.startup_timeout = startup_timeout
        self.command = [
            shutil.which("redis-server") or "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(folder)),
            *("--appendonly", "yes" if appendonly else "no", "--save", "", "--daemonize", "no"),
        ]
        self.log_path = folder / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OwnRedis:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.start()
        return self

    def start(self) -> None:
        """Starts the server (same port and folder: the append-only file is read back) and waits for PING."""
        self.proc = _spawn(self.command, self.log_path)
        deadline = time.monotonic() + self.startup_timeout
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)
        try:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.ping():
                        return
                except redis.BusyLoadingError:
                    pass  # still reading the append-only file
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server on {self.port} did not answer:\n{self.log()}")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM (Redis flushes the append-only file and exits), then waits."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        """SIGKILL: no shutdown work (writes of the last second may be lost with ``appendfsync everysec``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __exit__(self, *exc: object) -> None:
        self.stop()
