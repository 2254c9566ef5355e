"""Readiness: can fairq reach each backend it is configured to use?"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

from app.db import get_db
from app.settings import Settings
from app.storage import make_store

__all__ = ["Check", "check_backends"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """The outcome of one backend check."""

    backend: str
    component: str
    ok: bool
    error: str | None = None


def _database(settings: Settings) -> None:
    with get_db(settings).engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def _broker(settings: Settings) -> None:
    if not settings.broker_url:
        return
    import pika

    parameters = pika.URLParameters(settings.broker_url)
    parameters.socket_timeout = settings.readiness_timeout
    parameters.blocked_connection_timeout = settings.readiness_timeout
    parameters.stack_timeout = settings.readiness_timeout
    parameters.connection_attempts = 1
    connection = pika.BlockingConnection(parameters)
    connection.close()


def _redis(settings: Settings) -> None:
    if not settings.redis_url:
        return
    import redis

    client = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.readiness_timeout,
        socket_connect_timeout=settings.readiness_timeout,
    )
    try:
        client.ping()
    finally:
        client.close()


def _storage(settings: Settings) -> None:
    make_store(settings, timeout=settings.readiness_timeout).check()


_CHECKS: dict[str, tuple[Callable[[Settings], None], str, str]] = {
    # backend: (check, real component, embedded default)
    "database": (_database, "PostgreSQL", "SQLite"),
    "broker": (_broker, "RabbitMQ", "in-process broker"),
    "redis": (_redis, "Redis", "in-memory limits"),
    "storage": (_storage, "S3", "local folder"),
}


def check_backends(settings: Settings) -> list[Check]:
    """Check every backend; never raises."""
    results = []
    for backend, (check, real, embedded) in _CHECKS.items():
        component = embedded if settings.embedded[backend] else real
        try:
            check(settings)
        except Exception as exc:  # any failure means "not ready", with its reason
            logger.warning("readiness: %s (%s) is down: %s", backend, component, type(exc).__name__)
            results.append(Check(backend, component, False, f"{type(exc).__name__}: {exc}"[:300]))
        else:
            results.append(Check(backend, component, True))
    return results
