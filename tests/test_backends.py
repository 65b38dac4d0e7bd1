"""The private servers of ``backends``: PostgreSQL keeps its data across stop/start and stops answering
while frozen; Redis with the append-only file keeps a list across a restart."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
from backends import OwnPostgres, OwnRedis


def _connect(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, connect_timeout=1, autocommit=True)


def test_postgres_stop_start_keeps_data_and_freeze_blocks_connections(tmp_path: Path) -> None:
    with OwnPostgres(tmp_path / "pg") as pg:
        with _connect(pg.dsn) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        pg.stop()
        with pytest.raises(psycopg.OperationalError):
            _connect(pg.dsn)
        pg.start()
        with _connect(pg.dsn) as conn:
            assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]

        pg.freeze()
        start = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            _connect(pg.dsn)
        assert time.monotonic() - start < 3  # the connect timed out; it did not hang
        pg.thaw()
        with _connect(pg.dsn) as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1,)
        pg.freeze()  # leaving the block thaws and stops a frozen server
    assert not (pg.data / "postmaster.pid").exists()


def test_redis_restart_keeps_a_list_with_appendonly(tmp_path: Path) -> None:
    with OwnRedis(tmp_path / "redis") as rd:
        client = redis.Redis.from_url(rd.url, socket_timeout=2)
        client.rpush("queue", "a", "b")
        rd.restart()
        assert client.lrange("queue", 0, -1) == [b"a", b"b"]
        rd.kill()
        with pytest.raises(redis.ConnectionError):
            client.ping()
        client.close()


def test_redis_without_appendonly_forgets(tmp_path: Path) -> None:
    with OwnRedis(tmp_path / "redis", appendonly=False) as rd:
        client = redis.Redis.from_url(rd.url, socket_timeout=2)
        client.rpush("queue", "a")
        rd.restart()
        assert client.llen("queue") == 0
        client.close()


def test_servers_die_with_the_test_process(tmp_path: Path) -> None:
    script = (
        "import sys, time; sys.path.insert(0, 'tests'); from pathlib import Path; "
        "from backends import OwnPostgres, OwnRedis; "
        f"pg = OwnPostgres(Path({str(tmp_path / 'pg')!r})).__enter__(); "
        f"rd = OwnRedis(Path({str(tmp_path / 'redis')!r})).__enter__(); "
        "print(pg.pid(), rd.proc.pid, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in proc.stdout.readline().split()]
    assert len(pids) == 2, "the child did not start both servers"
    proc.kill()  # no __exit__ runs: the kernel ends the servers
    proc.wait()
    proc.stdout.close()
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, f"servers {pids} still run after their test process was killed"
        time.sleep(0.1)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def test_filesystem_broker_messages_appear_whole_or_not_at_all(tmp_path):
    """A consumer listing the queue folder while a message is written never sees a partial file."""
    import threading

    from emgpose.jobs.celery_app import make_celery, queue_size
    from emgpose.settings import Settings

    app = make_celery("fs-test", Settings(broker_dir=str(tmp_path), redis_url=None))
    folder = tmp_path / "queue"
    seen_partial, stop = [], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for name in os.listdir(folder):
                if name.endswith(".msg"):
                    try:
                        data = (folder / name).read_bytes()
                    except FileNotFoundError:
                        continue
                    if not data.endswith(b"}"):
                        seen_partial.append(name)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(200):
            app.send_task("emgpose.train.fit", args=["x" * 5000, i], queue="train", routing_key="train")
    finally:
        stop.set()
        watcher.join()
    assert not seen_partial
    assert queue_size(app, "train") == 200
    assert not [n for n in os.listdir(folder) if n.endswith(".tmp")]
