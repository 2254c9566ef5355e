"""One dispatcher leader at a time: a PostgreSQL advisory lock, or a lock in this process.

The PostgreSQL lock lives on a connection of its own: if the leader's process
dies, the connection closes, the lock is released, and another worker's
dispatcher takes over at its next attempt (every couple of seconds). The same
connection listens for the ``NOTIFY`` of new work.
"""
from __future__ import annotations

import logging
import select
import threading

from sqlalchemy.engine import make_url

from app.scheduling import signals

__all__ = ["Leadership", "LocalLeadership", "PostgresLeadership", "make_leadership", "LOCK_KEY"]

logger = logging.getLogger(__name__)

#: The advisory lock key of the dispatcher (any 64-bit number unique to fairq).
LOCK_KEY = 0x66616972_71640001

_local_lock = threading.Lock()


class Leadership:
    """Interface: who leads, and how the leader hears news."""

    held = False

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def wait_for_news(self, timeout: float) -> set[str]:
        """Tenants announced since the last call, waiting up to ``timeout`` seconds for one."""
        return signals.bus.wait(timeout)


class LocalLeadership(Leadership):
    """The embedded default: one dispatcher per process, news through the in-process bus."""

    def try_acquire(self) -> bool:
        if not self.held:
            self.held = _local_lock.acquire(blocking=False)
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            _local_lock.release()


class PostgresLeadership(Leadership):
    """A session-level advisory lock on a dedicated connection, which also LISTENs."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection = None

    def try_acquire(self) -> bool:
        import psycopg2

        try:
            if self._connection is None or self._connection.closed:
                self.held = False
                url = make_url(self.url).set(drivername="postgresql")
                self._connection = psycopg2.connect(url.render_as_string(hide_password=False), connect_timeout=5)
                self._connection.autocommit = True
            with self._connection.cursor() as cursor:
                if not self.held:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                    self.held = bool(cursor.fetchone()[0])
                    if self.held:
                        cursor.execute(f"LISTEN {signals.CHANNEL}")
                else:
                    cursor.execute("SELECT 1")  # still connected, so still the leader
        except psycopg2.Error:
            logger.warning("lost the dispatcher's database connection")
            self._drop()
        return self.held

    def wait_for_news(self, timeout: float) -> set[str]:
        connection = self._connection
        if connection is None or connection.closed:
            return set()
        try:
            if not connection.notifies:
                readable, _, _ = select.select([connection], [], [], timeout)
                if readable:
                    connection.poll()
            else:
                connection.poll()
            news = {n.payload for n in connection.notifies}
            connection.notifies.clear()
            return news
        except Exception:
            logger.warning("lost the dispatcher's database connection while listening")
            self._drop()
            return set()

    def release(self) -> None:
        self._drop()

    def _drop(self) -> None:
        self.held = False
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken
                pass
        self._connection = None


def make_leadership(database_url: str) -> Leadership:
    """Leadership for the database at ``database_url``."""
    if database_url.startswith("postgresql"):
        return PostgresLeadership(database_url)
    return LocalLeadership()
