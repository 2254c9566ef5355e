"""What every benchmark sets up: a database of its own, the application role, a RabbitMQ vhost."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

__all__ = ["fresh_environment", "fresh_vhost", "migrated_environment", "empty", "start_worker", "stop", "query"]

ROOT = Path(__file__).resolve().parent.parent


def fresh_environment(*, database: str, vhost: str, app_role: str = "fairq_app") -> None:
    """Create the database and role if missing, empty its schema, and make sure the vhost exists.

    Only loopback servers: PostgreSQL as ``postgres`` (trust auth), RabbitMQ through ``rabbitmqctl``.
    """
    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        if not connection.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database}):
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        if not connection.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": app_role}):
            connection.execute(sa.text(f'CREATE ROLE "{app_role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
    admin.dispose()
    owner = sa.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}")
    with owner.begin() as connection:  # a fresh schema each run: every run migrates from scratch
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    owner.dispose()
    fresh_vhost(vhost)


def fresh_vhost(vhost: str) -> None:
    """Make sure the RabbitMQ vhost exists, ``guest`` may use it (through ``rabbitmqctl``)."""
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "add_vhost", vhost], capture_output=True)
        subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True)


def migrated_environment(*, database: str, vhost: str) -> None:
    """:func:`fresh_environment`, then the database migrated (as the process's settings say)."""
    fresh_environment(database=database, vhost=vhost)
    from app import migrate
    from app.settings import get_settings

    migrate.prepare(get_settings())


def empty(tables: str, *, queues: tuple[str, ...]) -> None:
    """Truncate ``tables`` (the operators' tenant comes back), flush the Redis db, purge ``queues``."""
    import pika
    import redis

    from app.db import get_owner_db
    from app.settings import get_settings

    with get_owner_db().engine.begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        connection.execute(sa.text("INSERT INTO tenants (id, name, weight, plan, paused, created_at) "
                                   "VALUES ('_platform', 'ops', 1, 'default', false, now())"))
    settings = get_settings()
    redis.Redis.from_url(settings.redis_url).flushdb()
    connection = pika.BlockingConnection(pika.URLParameters(settings.broker_url))
    channel = connection.channel()
    for queue in queues:
        try:
            channel.queue_purge(queue)
        except Exception:  # a queue not declared yet closes the channel
            channel = connection.channel()
    connection.close()


#: Workers started and not stopped yet: stopped when the benchmark exits, however it exits.
_running: set[subprocess.Popen] = set()


def _stop_leftovers() -> None:
    for process in list(_running):
        stop(process)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # so that atexit runs (a worker in its own session outlives us)


def start_worker(*, threads: int, module: str = "app.tasks", extra_env: dict | None = None) -> subprocess.Popen:
    """``dramatiq MODULE`` in one process of ``threads`` threads, in a session of its own.

    Its output goes to a temporary file, which :func:`stop` reads for warnings and errors (the
    worker's log level is left as the benchmark set it: more logging would change the cost measured).
    A worker still running when the benchmark exits (an error, Ctrl-C, SIGTERM from ``timeout``) is
    stopped then: in a session of its own, it would otherwise go on using the machine.
    """
    if not _running and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        atexit.register(_stop_leftovers)
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    log = tempfile.NamedTemporaryFile(prefix="fairq-bench-worker-", suffix=".log", delete=False)
    with log:
        process = subprocess.Popen(
            ["dramatiq", module, "--processes", "1", "--threads", str(threads)],
            cwd=ROOT, env={**os.environ, **(extra_env or {})}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log.name  # type: ignore[attr-defined]
    _running.add(process)
    return process


#: What marks a warning or worse in the worker's output (fairq's JSON lines and Dramatiq's own format).
_COMPLAINTS = re.compile(r'"level": "(WARNING|ERROR|CRITICAL)"|\[(WARNING|ERROR|CRITICAL)\]')
#: ... except Dramatiq's own notices of the stop :func:`stop` asked for.
_STOPPING = re.compile(r"Killing (worker|fork) process")


def stop(process: subprocess.Popen) -> list[str]:
    """SIGTERM the worker's process group (SIGKILL after a minute). Returns the warnings and errors
    of its log (and prints how many there were, with the first few: a benchmark's figures can
    hide a worker that complained — a rate limiter unreachable, a deadlock retried)."""
    _running.discard(process)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    path = getattr(process, "log_path", None)
    if path is None:
        return []
    with open(path, errors="replace") as log:
        complaints = [line.rstrip() for line in log if _COMPLAINTS.search(line) and not _STOPPING.search(line)]
    os.unlink(path)
    if complaints:
        print(f"  (the worker logged {len(complaints)} warnings or errors; the first:)", file=sys.stderr)
        for line in complaints[:5]:
            print(f"    {line[:300]}", file=sys.stderr)
    return complaints


def query(sql: str, **params) -> list:
    """Rows of ``sql`` run as the owner (across tenants)."""
    from app.db import get_owner_db

    with get_owner_db().engine.connect() as connection:
        return connection.execute(sa.text(sql), params).all()
