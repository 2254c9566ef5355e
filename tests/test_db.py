"""app/db.py on SQLite: every connection waits for the write lock, and a transaction that read first can still write."""
import threading

import pytest
import sqlalchemy as sa

from app.db import SQLITE_BUSY_TIMEOUT_MS, make_engine


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fairq.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (id INTEGER PRIMARY KEY, who TEXT)")
        connection.exec_driver_sql("INSERT INTO t (who) VALUES ('seed')")
    yield engine
    engine.dispose()


def test_a_transaction_that_read_the_database_writes_after_another_connection_committed(engine):
    # Given a transaction that has read the database into a temporary table (as a reconciliation
    # does), and another connection that writes while it runs
    read, wrote = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other_writer() -> None:
        read.wait(10)
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("INSERT INTO t (who) VALUES ('other')")
        except BaseException as exc:
            errors.append(exc)
        finally:
            wrote.set()

    writer = threading.Thread(target=other_writer)
    writer.start()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("CREATE TEMP TABLE seen AS SELECT * FROM t WHERE 0")
            connection.exec_driver_sql("INSERT INTO seen SELECT * FROM t")
            read.set()
            wrote.wait(0.5)  # the other writer commits now, unless this transaction holds the lock
            # When it then writes to the database file
            connection.exec_driver_sql("INSERT INTO t (who) VALUES ('reader')")
    finally:
        read.set()
        writer.join(30)

    # Then both writes are in: the second waited for the first instead of "database is locked"
    assert errors == []
    with engine.connect() as connection:
        assert sorted(connection.exec_driver_sql("SELECT who FROM t").scalars()) == ["other", "reader", "seed"]


def test_every_connection_waits_for_the_write_lock_and_begins_writers_immediate(engine):
    connections = [engine.connect() for _ in range(3)]  # three pooled connections, not one reused
    try:
        for connection in connections:
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.connection.dbapi_connection.isolation_level == "IMMEDIATE"
    finally:
        for connection in connections:
            connection.close()


def test_a_connection_used_in_autocommit_begins_writers_immediate_again(engine):
    # Given a pooled connection that ran one statement in autocommit (as the gate's start does)
    with engine.connect() as connection:
        connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "UPDATE t SET who = 'started' WHERE id = 1")
        dbapi_connection = connection.connection.dbapi_connection
    # When it is checked out again (SQLAlchemy put the driver's deferred default back at check-in)
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is dbapi_connection
        # Then its next writing transaction begins IMMEDIATE
        assert dbapi_connection.isolation_level == "IMMEDIATE"
        connection.execute(sa.text("UPDATE t SET who = 'again' WHERE id = 1"))
        connection.commit()
