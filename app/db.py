"""The database: engine, sessions and the declarative base.

Sessions are scoped per request (see :func:`init_app`) and per job (actors
open one with :meth:`Database.session`). Commits belong to the service layer.
"""
from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import event
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.settings import Settings, get_settings

__all__ = ["Base", "Database", "AFTER_COMMIT", "BigID", "JSONType", "UTCDateTime", "utcnow", "get_db", "get_owner_db",
           "init_app", "is_locked"]

logger = logging.getLogger(__name__)

#: Constraint names Alembic can find again on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: The key of ``Connection.info`` and ``Session.info`` holding callables to run after commit.
AFTER_COMMIT = "after_commit"

#: A 64-bit key; SQLite only auto-increments a plain INTEGER primary key.
BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: JSON everywhere, JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """A point in time: ``timestamptz`` on PostgreSQL, UTC text on SQLite; always aware in Python."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where a UTC time is needed")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every fairq model."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


#: Milliseconds a SQLite connection waits for another connection's write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 10_000
#: How the sqlite3 driver begins the transaction it opens before a transaction's first write.
SQLITE_BEGIN = "IMMEDIATE"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _sqlite_begin_immediate(dbapi_connection, _record, _proxy) -> None:
    # SQLAlchemy puts the driver's default ("", a deferred BEGIN) back when a connection that ran
    # with isolation_level="AUTOCOMMIT" is checked in: every checkout starts writers IMMEDIATE again.
    if dbapi_connection.isolation_level is not None and not dbapi_connection.in_transaction:
        dbapi_connection.isolation_level = SQLITE_BEGIN


def make_engine(url: str, *, pre_ping: bool = True) -> Engine:
    """An engine for ``url``; for SQLite the folder is created, WAL is on and writers begin IMMEDIATE.

    On SQLite the sqlite3 driver begins a transaction at its first write (a read before it
    runs on its own and takes no lock); that ``BEGIN`` is ``BEGIN IMMEDIATE`` here, so the
    write lock is taken at once, waiting up to :data:`SQLITE_BUSY_TIMEOUT_MS` for another
    writer. A deferred ``BEGIN`` would leave the lock to the first statement that writes to
    the database file: after a transaction had read it (a statement filling a temporary table
    from it, say), SQLite refuses that statement "database is locked" at once, without
    waiting, when another connection has written since or is writing.

    Parameters:
      pre_ping: test each pooled connection before use (one round trip more per checkout).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={
            "check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "isolation_level": SQLITE_BEGIN,
        })
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "checkout", _sqlite_begin_immediate)
        return engine
    return sa.create_engine(url, pool_pre_ping=pre_ping, pool_size=10, max_overflow=10, pool_recycle=300)


class Database:
    """One engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._system_engine: Engine | None = None

    @property
    def system_engine(self) -> Engine:
        """A separate pool for system work across tenants (the dispatcher, the gate).

        Its connections are opened for all tenants once (``fairq.all_tenants``
        at session level), so hot paths pay no extra round trip per
        transaction; tenant sessions never borrow them.
        """
        if self._system_engine is None:
            if self.dialect == "postgresql":
                # the hot path: no ping per checkout (a dropped connection fails one statement,
                # which the dispatcher and the gate already treat as "try again later")
                engine = make_engine(self.url, pre_ping=False)

                def _all_tenants(dbapi_connection, _record) -> None:
                    cursor = dbapi_connection.cursor()
                    cursor.execute("SELECT set_config('fairq.all_tenants', 'on', false)")
                    cursor.close()
                    dbapi_connection.commit()

                event.listen(engine, "connect", _all_tenants)
                self._system_engine = engine
            else:
                self._system_engine = self.engine
        return self._system_engine

    @contextmanager
    def system(self, *, lock_wait_ms: int | None = None) -> Iterator[sa.Connection]:
        """A Core connection in a transaction, across all tenants; commits at the end of the block.

        Callables appended to ``connection.info["after_commit"]`` run once the commit is done.

        Parameters:
          lock_wait_ms: on SQLite, wait at most this long for another connection's write lock
            (default :data:`SQLITE_BUSY_TIMEOUT_MS`); ignored on PostgreSQL.
        """
        short = lock_wait_ms is not None and self.dialect == "sqlite"
        with self.system_engine.begin() as connection:
            if short:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={int(lock_wait_ms)}")
            try:
                yield connection
            finally:  # info belongs to the pooled connection: never leave callbacks behind
                callbacks = connection.info.pop(AFTER_COMMIT, ())
                if short:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        for callback in callbacks:
            callback()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back if it raises."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._system_engine is not None and self._system_engine is not self.engine:
            self._system_engine.dispose()


def is_locked(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another connection held the write lock too long."""
    return isinstance(exc, sa.exc.OperationalError) and "database is locked" in str(exc.orig)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(AFTER_COMMIT, ()):
        callback()


@event.listens_for(Session, "after_soft_rollback")
def _forget_after_commit(session: Session, _previous_transaction) -> None:
    session.info.pop(AFTER_COMMIT, None)


_lock = threading.Lock()
_databases: dict[str, Database] = {}


def get_db(settings: Settings | None = None) -> Database:
    """The process's :class:`Database` for ``settings`` (default: the process settings)."""
    url = (settings or get_settings()).sqlalchemy_url
    with _lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


def get_owner_db(settings: Settings | None = None) -> Database:
    """The :class:`Database` of the tables' owner: what migrations run with."""
    settings = settings or get_settings()
    url = settings.sqlalchemy_owner_url
    if url == settings.sqlalchemy_url:
        return get_db(settings)
    with _lock:
        if url not in _databases:
            _databases[url] = Database(url)
        return _databases[url]


def init_app(app: Flask, settings: Settings) -> None:
    """Bind the database to ``app``."""
    app.extensions["fairq.db"] = get_db(settings)
