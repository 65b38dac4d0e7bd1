"""Real HTTP servers for service tests: an ASGI app under uvicorn in a thread, or a uvicorn subprocess.

``UvicornThread(app)`` serves an app object in this process (lifespan on, fast to start, the app's
state is inspectable); ``UvicornProcess("pkg.module:app", env)`` runs the exact production command in a
child process with its own environment. Both are context managers, bind 127.0.0.1 on a free port, wait
until the server answers, and expose ``url`` (``http://...``) and ``ws_url`` (``ws://...``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class UvicornThread:
    """``with UvicornThread(create_app()) as server: httpx.get(server.url + "/healthz")``."""

    def __init__(self, app: Any, *, startup_timeout: float = 30.0, **config: Any) -> None:
        self.port = free_port()
        options = {"log_config": None, "lifespan": "on", "ws": "websockets-sansio", **config}
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, **options))
        self.thread = threading.Thread(target=self.server.run, name=f"uvicorn-{self.port}", daemon=True)
        self.startup_timeout = startup_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> UvicornThread:
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"uvicorn on port {self.port} stopped during startup (see the log above)")
            if time.monotonic() > deadline:
                self.server.should_exit = True
                raise RuntimeError(f"uvicorn on port {self.port} did not start within {self.startup_timeout}s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class UvicornProcess:
    """``uvicorn <target> --host 127.0.0.1 --port <free>`` in a child process; output goes to ``log_path``."""

    def __init__(
        self,
        target: str,
        env: dict[str, str],
        log_path: Path,
        *,
        ready_path: str = "/healthz",
        startup_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
        self.command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> UvicornProcess:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.command)} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code < 500:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError(f"{' '.join(self.command)} did not answer within {self.startup_timeout}s:\n{self.log()}")

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
