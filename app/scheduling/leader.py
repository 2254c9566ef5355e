"""One dispatcher leader at a time: a PostgreSQL advisory lock, or a lock in this process.

The PostgreSQL lock lives on a connection of its own: if the leader's process
dies, the connection closes, the lock is released, and another worker's
dispatcher takes over at its next attempt (every couple of seconds). The same
connection listens for the ``NOTIFY`` of new work.

A dispatcher companion (:mod:`app.scheduling.companion`, a process of its own
beside the worker processes) also holds a second lock, shared: while any
companion is up, the dispatcher threads of worker processes stand by, and one
that leads steps down (see :class:`~app.scheduling.dispatcher.Dispatcher`).

On SQLite the lock is a thread lock in this process and, across processes on
the same database file, an ``flock`` on a file beside it, which a process keeps
from its first leadership until it exits: with the in-process broker a job in
flight lives in one process, so the next process to lead must find its
predecessors gone (and then puts back every job they left in flight:
``LocalLeadership.predecessors_gone``).

PostgreSQL cannot say as much: its locks are held by connections, and a
connection can close (a server restart, a network cut) while its process lives
on, running jobs from its in-process broker. So, with the in-process broker on
PostgreSQL, a process's first leadership says only that it has not led before
(``PostgresLeadership.first_in_process``): the jobs earlier leaders left
``dispatched`` can go back to the queue at once (should their process live, the
gate runs one copy of each), the ones left ``running`` wait for their lease.
"""
from __future__ import annotations

import logging
import os
import select
import threading

from sqlalchemy.engine import make_url

from app.scheduling import signals

__all__ = ["Leadership", "LocalLeadership", "PostgresLeadership", "make_leadership", "LOCK_KEY", "COMPANION_KEY"]

logger = logging.getLogger(__name__)

#: The advisory lock key of the dispatcher (any 64-bit number unique to fairq).
LOCK_KEY = 0x66616972_71640001
#: The advisory lock every dispatcher companion holds, shared, while it is up.
COMPANION_KEY = LOCK_KEY + 1

#: A 64-bit advisory lock shows in ``pg_locks`` as its high half (classid) and low half (objid).
_COMPANION_HELD = """
    SELECT EXISTS (
        SELECT 1 FROM pg_locks
        WHERE locktype = 'advisory' AND objsubid = 1 AND mode = 'ShareLock' AND granted
          AND classid = %s::bigint::oid AND objid = %s::bigint::oid
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    )
"""

_local_lock = threading.Lock()
#: The lock files this process holds (see :func:`_hold_for_life`): path -> open file descriptor.
_held_files: dict[str, int] = {}
_held_files_lock = threading.Lock()
#: The processes (ids) in which a PostgreSQL leadership was taken (see ``PostgresLeadership.first_in_process``).
_led_in: set[int] = set()


class Leadership:
    """Interface: who leads, and how the leader hears news."""

    held = False
    #: a dispatcher companion's leadership (see the module docstring)
    companion = False

    def try_acquire(self) -> bool:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError

    def wait_for_news(self, timeout: float) -> set[str]:
        """Tenants announced since the last call, waiting up to ``timeout`` seconds for one."""
        return signals.bus.wait(timeout)

    def companion_alive(self) -> bool:
        """Whether a dispatcher companion is up (there is none on the embedded default)."""
        return False


class LocalLeadership(Leadership):
    """The embedded default: one dispatcher per process, news through the in-process bus.

    Parameters:
      lock_path: a file whose ``flock`` the leading process holds until it exits (beside the SQLite
        database: one leading process per database). ``None``: this process alone is considered.
    """

    def __init__(self, lock_path: str | None = None) -> None:
        self.lock_path = lock_path
        #: set by the acquisition that took the lock file for this process: every process that led
        #: before on this database has exited, and with it whatever its in-process broker held
        self.predecessors_gone = False

    def try_acquire(self) -> bool:
        if not self.held:
            self.held = _local_lock.acquire(blocking=False)
            if self.held and self.lock_path is not None:
                try:
                    taken = _hold_for_life(self.lock_path)
                except OSError:
                    logger.exception("could not open the dispatcher's lock file %s", self.lock_path)
                    taken = None
                if taken is None:  # another process leads
                    self.held = False
                    _local_lock.release()
                else:
                    self.predecessors_gone = taken
        return self.held

    def release(self) -> None:
        if self.held:
            self.held = False
            _local_lock.release()


class PostgresLeadership(Leadership):
    """A session-level advisory lock on a dedicated connection, which also LISTENs."""

    def __init__(self, url: str, *, companion: bool = False) -> None:
        self.url = url
        #: this is a companion's leadership: it holds the companion lock while connected
        self.companion = companion
        self._connection = None
        #: set by the acquisition that was this process's first: no job in flight is its own yet
        self.first_in_process = False

    def _connect(self):
        import psycopg2

        if self._connection is None or self._connection.closed:
            self.held = False
            url = make_url(self.url).set(drivername="postgresql")
            self._connection = psycopg2.connect(
                url.render_as_string(hide_password=False), connect_timeout=5, application_name=self.application_name
            )
            self._connection.autocommit = True
            if self.companion:  # up: hold the lock, and tell the leading thread to hand over
                with self._connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_lock_shared(%s)", (COMPANION_KEY,))
                    cursor.execute("SELECT pg_notify(%s, %s)", (signals.CHANNEL, signals.COMPANION_UP))
        return self._connection

    @property
    def application_name(self) -> str:
        """How its connection shows in ``pg_stat_activity``: which kind of dispatcher, which process."""
        return f"fairq-dispatcher{'-companion' if self.companion else ''}:{os.getpid()}"

    def try_acquire(self) -> bool:
        import psycopg2

        try:
            with self._connect().cursor() as cursor:
                if not self.held:
                    cursor.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                    self.held = bool(cursor.fetchone()[0])
                    if self.held:
                        cursor.execute(f"LISTEN {signals.CHANNEL}")
                        self.first_in_process = os.getpid() not in _led_in
                        _led_in.add(os.getpid())
                else:
                    cursor.execute("SELECT 1")  # still connected, so still the leader
        except psycopg2.Error:
            logger.warning("lost the dispatcher's database connection")
            self._drop()
        return self.held

    def companion_alive(self) -> bool:
        """Whether any companion holds its shared lock (read from ``pg_locks``: trying the lock
        would make two standing-by threads see each other as a companion)."""
        import psycopg2

        if self.companion:
            return True
        try:
            with self._connect().cursor() as cursor:
                cursor.execute(_COMPANION_HELD, (COMPANION_KEY >> 32, COMPANION_KEY & 0xFFFFFFFF))
                return bool(cursor.fetchone()[0])
        except psycopg2.Error:
            logger.warning("lost the dispatcher's database connection")
            self._drop()
            return False

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
        """Give the lock up now, then close the connection. Closing alone frees the lock only once
        the server's backend has ended, a moment after ``close()`` returns: a successor asking at
        once (a handover, or a test) could be refused."""
        import psycopg2

        if self.held and self._connection is not None and not self._connection.closed:
            try:
                with self._connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            except psycopg2.Error:  # a broken connection: its lock goes with it
                pass
        self._drop()

    def _drop(self) -> None:
        self.held = False
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # already broken
                pass
        self._connection = None


def _hold_for_life(path: str) -> bool | None:
    """Take the ``flock`` of ``path`` for this process, and keep it until the process exits.

    Returns:
      ``True`` if taken now, ``False`` if this process held it already, ``None`` if another does.
    """
    import fcntl

    with _held_files_lock:
        if path in _held_files:
            return False
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        _held_files[path] = fd
        return True


def make_leadership(database_url: str, *, companion: bool = False) -> Leadership:
    """Leadership for the database at ``database_url`` (``companion``: a companion's)."""
    if database_url.startswith("postgresql"):
        return PostgresLeadership(database_url, companion=companion)
    database = make_url(database_url).database
    if database and database != ":memory:":
        return LocalLeadership(lock_path=f"{os.path.abspath(database)}-dispatcher.lock")
    return LocalLeadership()
