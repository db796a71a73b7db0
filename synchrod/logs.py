"""structlog set-up: JSON lines on stdout for journald, or a console format."""
from __future__ import annotations

import logging
import sys

import structlog

from .pg.connect import redact


def _redact_values(_, __, event_dict):
    for key, value in event_dict.items():
        if isinstance(value, str) and "://" in value:
            event_dict[key] = redact(value)
    return event_dict


def setup(level: str = "info", fmt: str = "json", stream=None) -> None:
    """Configures structlog for the whole process: one line per event at ``level`` or above
    on ``stream`` (stdout), JSON or console, with passwords in DSN values redacted."""
    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                else structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_values,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )
