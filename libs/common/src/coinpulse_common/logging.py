"""Structured logging (structlog) for every coinpulse process: key=value on a console, JSON lines in production."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import FilteringBoundLogger


def configure(fmt: str | None = None, level: str | None = None) -> None:
    from coinpulse_common.settings import get_settings

    s = get_settings()
    fmt = fmt or s.log_format
    lvl = getattr(logging, (level or s.log_level).upper(), logging.INFO)
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")


def get_logger(name: str | None = None, **bound: object) -> FilteringBoundLogger:
    log: FilteringBoundLogger = structlog.get_logger(name).bind(**bound)
    return log
