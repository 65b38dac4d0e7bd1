"""Engines and sessions for ``DATABASE_URL``: PostgreSQL in compose, SQLite for the embedded default.

SQLite gets WAL mode, a busy timeout and foreign keys so that the gateway and the workers (separate
processes) can share one file; a relative SQLite path is made absolute and its folder created.

PostgreSQL gets bounds from ``DB_TIMEOUT_S`` so that a server that is down or hung costs seconds, not
minutes: libpq's ``connect_timeout`` (whole seconds; libpq treats anything under 2 as 2), the same wait
for a free pooled connection (``pool_timeout``), TCP keepalives that find a dead peer, and a server-side
``statement_timeout`` of ``STATEMENT_TIMEOUT_FACTOR`` times it (30 s by default) that ends a statement
stuck on a lock without cutting the workers' legitimately slower ones (it bounds each statement, not a
transaction). None of these covers a server that accepts TCP and never answers on an open connection
(a frozen process); the gateway bounds its requests for that (``emgpose_gateway.deadline``).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from emgpose.errors import InvalidInput
from emgpose.settings import get_settings

ACCEPTED = "postgresql+psycopg://user:password@host:5432/db or sqlite:///path/to/file.db"
STATEMENT_TIMEOUT_FACTOR = 10  # statement_timeout = this x DB_TIMEOUT_S


def normalize_url(url: str) -> str:
    """``url`` with a bare ``postgresql://`` mapped to psycopg 3 and relative SQLite paths made absolute."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise InvalidInput(f"DATABASE_URL {url!r} is not a database URL; use {ACCEPTED}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        path = os.path.abspath(parsed.database)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        parsed = parsed.set(database=path)
    if not parsed.drivername.startswith(("sqlite", "postgresql")):
        raise InvalidInput(f"DATABASE_URL uses {parsed.drivername!r}; supported: {ACCEPTED}")
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def postgres_connect_args(timeout_s: float, query: Mapping[str, Any]) -> dict[str, Any]:
    """libpq parameters bounding connects, statements and dead peers; ones set in the URL's query win."""
    args: dict[str, Any] = {
        "connect_timeout": max(1, math.ceil(timeout_s)),
        "options": f"-c statement_timeout={round(timeout_s * STATEMENT_TIMEOUT_FACTOR * 1000)}",
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }
    return {key: value for key, value in args.items() if key not in query}


@functools.lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """One pooled engine per URL per process (default: the settings' ``DATABASE_URL``)."""
    url = normalize_url(url or get_settings().database_url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        timeout = get_settings().db_timeout_s
        engine = create_engine(
            url,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            pool_timeout=timeout,
            connect_args=postgres_connect_args(timeout, make_url(url).query),
        )
    _engines.append(engine)
    return engine


@functools.lru_cache(maxsize=8)
def _factory(url: str | None) -> sessionmaker[Session]:
    return sessionmaker(get_engine(url), expire_on_commit=False)


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """A session committed at the end of the block, rolled back on error."""
    with _factory(url)() as session, session.begin():
        yield session


_engines: list[Engine] = []


def reset_engines() -> None:
    """Disposes of and forgets the cached engines (tests that change ``DATABASE_URL``)."""
    for engine in _engines:
        engine.dispose()
    _engines.clear()
    get_engine.cache_clear()
    _factory.cache_clear()
