"""Dependencies as ``Annotated`` aliases (STYLE.md, habit 2).

Long-lived objects (the database session factory, the Celery app, the pooled HTTP client for the
inference service, the object store and its model registry) live in the lifespan state, which
Starlette copies into every ``request.state``; settings are fixed when the app is created
(``app.state.settings``). The getters are ``async`` so that they run on the event loop, not in a
thread; the session dependency is sync because closing a session may wait on the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

import httpx
from celery import Celery
from fastapi import Depends
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from starlette.requests import HTTPConnection

from emgpose.errors import Unavailable
from emgpose.settings import Settings
from emgpose.store import ObjectStore
from emgpose.train.bundle import Registry
from emgpose_gateway.deadline import mark_database_use


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and the readiness report)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def database_unavailable(settings: Settings, exc: BaseException) -> Unavailable:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    return Unavailable(f"the database at {redact(settings.database_url)} is not reachable: {reason}")


async def get_settings_(conn: HTTPConnection) -> Settings:
    return conn.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_)]


async def get_sessions(conn: HTTPConnection) -> sessionmaker[Session]:
    return conn.state.sessions


SessionsDep = Annotated[sessionmaker[Session], Depends(get_sessions)]


def get_session(conn: HTTPConnection, sessions: SessionsDep, settings: SettingsDep) -> Iterator[Session]:
    """A session for one request; routes commit explicitly (a job row before its task is sent).

    A lost database connection, or no free pooled connection within ``DB_TIMEOUT_S``, becomes
    :class:`~emgpose.errors.Unavailable` (503) naming the database; opening the session starts the
    request's deadline (:mod:`emgpose_gateway.deadline`) for a database that does not answer at all.
    """
    mark_database_use(conn.scope)
    with sessions() as session:
        try:
            yield session
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            raise database_unavailable(settings, exc) from exc


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def get_celery(conn: HTTPConnection) -> Celery:
    return conn.state.celery


CeleryDep = Annotated[Celery, Depends(get_celery)]


async def get_store(conn: HTTPConnection) -> ObjectStore:
    return conn.state.store


StoreDep = Annotated[ObjectStore, Depends(get_store)]


async def get_registry(conn: HTTPConnection) -> Registry:
    return conn.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


async def get_inference(conn: HTTPConnection) -> httpx.AsyncClient:
    return conn.state.inference


InferenceDep = Annotated[httpx.AsyncClient, Depends(get_inference)]
