"""Structured JSON logs for every fairq process.

Each line is one JSON object with the time, level, logger and message, plus
``request_id``, ``job_id``, ``tenant_id`` and ``user_id`` where the current
request or job has them. The values live in context variables, so threads and
requests never see each other's.

Secrets never reach a line: the handler masks the values of secret settings,
the password of any URL, bearer tokens and anything shaped like a JWT, in the
finished line (message, extra fields and traceback alike).
"""
from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging", "adopt_cli_logging", "log_context", "bind", "redact", "CONTEXT_FIELDS"]

#: The fields every log line carries when they are known.
CONTEXT_FIELDS = ("request_id", "job_id", "tenant_id", "user_id")

_context: dict[str, ContextVar[Any]] = {
    name: ContextVar(f"fairq_{name}", default=None) for name in CONTEXT_FIELDS
}


def bind(**values: Any) -> None:
    """Set context fields for the rest of the current context (request, job or thread)."""
    for name, value in values.items():
        _context[name].set(value)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Set context fields for the duration of a block."""
    tokens = {name: _context[name].set(v) for name, v in values.items()}
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
#: Loggers of the servers that run the API, which log to stderr through handlers of their own.
SERVER_LOGGERS = ("gunicorn.error", "gunicorn.access")
#: What is left of a secret in a log line.
MASK = "[redacted]"
#: A JWT (three base64url parts, the first two JSON objects), a bearer token, a URL's password.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(\w://[^:/@\s\"']+:)[^@\s\"']+@")
#: Secrets shorter than this are not searched for (they would mask ordinary words).
_MIN_SECRET = 6


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with secrets masked: the given values, URL passwords, bearer tokens and JWTs."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "earer" in text:
        text = _BEARER.sub(r"\1" + MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1" + MASK + "@", text)
    return text


class RedactingJsonFormatter(JsonFormatter):
    """fairq's JSON line, with :func:`redact` applied to the whole of it."""

    def __init__(self, *args: Any, secrets: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secrets = tuple(s for s in secrets if s and len(s) >= _MIN_SECRET)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def _secret_values() -> tuple[str, ...]:
    """The values of the secret settings, and the passwords in the configured URLs."""
    from urllib.parse import urlsplit

    from app.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError:
        return ()
    values = [s.get_secret_value() for s in (settings.jwt_secret, settings.s3_secret_access_key,
                                              settings.metrics_token) if s is not None]
    for url in (settings.database_url, settings.database_owner_url, settings.broker_url, settings.redis_url):
        password = urlsplit(url).password if url else None
        if password:
            values.append(password)
    return tuple(values)


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
        RedactingJsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            secrets=_secret_values(),
        )
    )
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in SERVER_LOGGERS:  # under gunicorn: its lines too, through fairq's handler
        server = logging.getLogger(name)
        plain = [h for h in server.handlers if type(h) is logging.StreamHandler]
        if plain:
            for h in plain:
                server.removeHandler(h)
            server.propagate = True
    # pika and botocore narrate every frame at DEBUG and INFO.
    for noisy in ("pika", "botocore", "boto3", "urllib3", "werkzeug", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def adopt_cli_logging(level: str = "INFO") -> bool:
    """Turn the text logging that the ``dramatiq`` or ``periodiq`` command set up into fairq's.

    Both commands call ``logging.basicConfig`` before they import ``app.tasks``; the plain
    stream handlers that leaves on the root logger are replaced by fairq's JSON handler on the
    same stream (a worker process's pipe to its parent). Other handlers (pytest's, a
    ``--log-file``) are left alone.

    Returns:
      Whether a handler was replaced.
    """
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler and h.get_name() != _HANDLER_NAME]
    if not plain:
        return False
    for handler in plain:
        root.removeHandler(handler)
    configure_logging(level, stream=plain[0].stream)
    return True
