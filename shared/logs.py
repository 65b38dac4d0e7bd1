"""Logging for the services: one line per record, level from ``LOG_LEVEL``."""

from __future__ import annotations

import logging

from emgpose.settings import get_settings

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"


def setup_logging(level: str | None = None) -> None:
    """Configures the root logger once (a second call only changes the level)."""
    level = (level or get_settings().log_level).upper()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=level, format=FORMAT)
    root.setLevel(level)
