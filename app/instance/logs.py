"""Log lines of an instance's processes: stderr, tagged with the database id."""

from __future__ import annotations

import logging

from app.contracts.instance_settings import InstanceSettings

_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
               "error": logging.ERROR}


def configure_logging(settings: InstanceSettings, role: str = "instance") -> None:
    """Log lines to stderr tagged with the role and the database id."""
    logging.basicConfig(
        level=_LOG_LEVELS.get(settings.log_level, logging.INFO),
        format=f"%(asctime)s %(levelname)s [{role} {settings.database_id}] "
               f"%(name)s: %(message)s",
        force=True)


__all__ = ["configure_logging"]
