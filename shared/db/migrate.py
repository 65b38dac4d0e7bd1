"""``emgpose db upgrade``: Alembic migrations, run programmatically (the compose ``migrate`` pre-start step)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import inspect

from emgpose.db.engine import get_engine, normalize_url
from emgpose.settings import get_settings

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", normalize_url(url or get_settings().database_url).replace("%", "%%"))
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Brings the database at ``url`` (default ``DATABASE_URL``) to ``revision``; safe to run again."""
    command.upgrade(alembic_config(url), revision)
    log.info("database at %s is at revision %s", get_engine(url).url.render_as_string(), current(url))


def current(url: str | None = None) -> str | None:
    """The revision the database is at (None before the first migration)."""
    with get_engine(url).connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
