"""Structured JSON logs for every fairq process.

Each line is one JSON object with the time, level, logger and message, plus
``request_id``, ``job_id``, ``tenant_id`` and ``user_id`` where the current
request or job has them. The values live in context variables, so threads and
requests never see each other's.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "log_context", "bind", "CONTEXT_FIELDS"]

#: The fields every log line carries when they are known.
CONTEXT_FIELDS = ("request_id", "job_id", "tenant_id", "user_id")

_context: dict[str, ContextVar[str | None]] = {
    name: ContextVar(f"fairq_{name}", default=None) for name in CONTEXT_FIELDS
}


def bind(**values: Any) -> None:
    """Set context fields for the rest of the current context (request, job or thread)."""
    for name, value in values.items():
        _context[name].set(None if value is None else str(value))


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Set context fields for the duration of a block."""
    tokens = {name: _context[name].set(None if v is None else str(v)) for name, v in values.items()}
    try:
        yield
    finally:
        for name, token in tokens.items():
            _context[name].reset(token)


class ContextFilter(logging.Filter):
    """Copies the context fields onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _context.items():
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        return True


_HANDLER_NAME = "fairq-json"


def configure_logging(level: str = "INFO", *, stream: Any = None) -> None:
    """Send every log record of the process to ``stream`` (stderr) as one JSON line.

    Calling it again replaces fairq's handler rather than adding a second one.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    # pika and botocore narrate every frame at DEBUG and INFO.
    for noisy in ("pika", "botocore", "boto3", "urllib3", "werkzeug", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
