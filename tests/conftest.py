"""Fixtures: the real servers (PostgreSQL, RabbitMQ, Redis, a local S3 server) and the app.

The test process runs on the real column: before any ``app`` module is
imported, the ``FAIRQ_*`` variables point at the servers on their default
loopback ports (``FAIRQ_TEST_*`` variables override each). The embedded
column is tested by starting ``fairq up`` with no ``FAIRQ_*`` variable at all
(``tests/test_embedded.py``) and with apps built on SQLite (``sqlite_app``).
"""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Where the test servers are; each can be overridden by FAIRQ_TEST_<NAME>. The application
#: connects as a role that owns no table (so row-level security binds it); migrations as the owner.
TEST_SERVERS = {
    "DATABASE_URL": "postgresql://fairq_app@127.0.0.1:5432/fairq_test",
    "DATABASE_OWNER_URL": "postgresql://postgres@127.0.0.1:5432/fairq_test",
    "BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/%2F",
    "REDIS_URL": "redis://127.0.0.1:6379/15",
}

for _name, _default in TEST_SERVERS.items():
    os.environ["FAIRQ_" + _name] = os.environ.get("FAIRQ_TEST_" + _name, _default)
os.environ.setdefault("FAIRQ_LOG_LEVEL", "INFO")
os.environ["FAIRQ_JWT_SECRET"] = secrets.token_urlsafe(48)
os.environ["FAIRQ_BCRYPT_ROUNDS"] = "4"  # fast hashes in tests; the default is 12

ROOT = Path(__file__).resolve().parent.parent
# Subprocesses (``fairq``, ``dramatiq``) import this checkout's ``app``, not whichever tree the
# editable install points at (a git worktree's tests must test the worktree).
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any FAIRQ_ variable: the embedded default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FAIRQ_")}
    env.update(extra)
    return env


def ensure_database(url: str, *, app_role: str | None = None) -> None:
    """Create the PostgreSQL database of ``url`` (and the application's role) if missing."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    target = make_url(url)
    admin = sa.create_engine(
        target.set(drivername="postgresql+psycopg2", database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        ).scalar()
        if not exists:
            connection.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
        if app_role and not connection.execute(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": app_role}
        ).scalar():
            connection.execute(sa.text(f'CREATE ROLE "{app_role}" LOGIN NOSUPERUSER NOBYPASSRLS'))
    admin.dispose()


@pytest.fixture(scope="session")
def settings():
    from app.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def database(settings):
    """The test database on PostgreSQL, migrated from scratch once per session."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from app import migrate
    from app.db import get_db, get_owner_db

    ensure_database(settings.database_owner_url, app_role=make_url(settings.database_url).username)
    with get_owner_db(settings).engine.begin() as connection:  # whatever an earlier run left goes
        connection.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    migrate.prepare(settings)
    return get_db(settings)


@pytest.fixture
def db(database, settings):
    """The migrated test database, emptied before each test (the operators' tenant stays)."""
    import sqlalchemy as sa

    import app.models  # noqa: F401
    from app.db import Base, get_owner_db

    with get_owner_db(settings).engine.begin() as connection:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        connection.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        connection.execute(sa.text(
            "INSERT INTO tenants (id, name, weight, plan, paused, created_at) "
            "VALUES ('_platform', 'fairq operators', 1, 'default', false, now())"
        ))
    return database


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A local S3-compatible server (moto's) on a free loopback port; yields its URL."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def real_settings(settings, s3_server, db):
    """Settings for every real backend, S3 included, with a fresh bucket per test."""
    import uuid

    from app.settings import Settings, use_settings
    from app.storage import make_store

    real = Settings.load(
        s3_endpoint_url=s3_server,
        s3_bucket=f"fairq-test-{uuid.uuid4().hex[:12]}",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    make_store(real).ensure()
    _forget_failed_logins(real)
    use_settings(real)
    yield real
    use_settings(None)


def _forget_failed_logins(settings) -> None:
    """Failed-login counts live in Redis, which outlives a test: each test starts without any."""
    import redis

    client = redis.Redis.from_url(settings.redis_url)
    keys = client.keys("fairq:login*")
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def app(real_settings):
    """The app on the real servers."""
    from app import create_app

    return create_app(real_settings)


@pytest.fixture
def fast_retries(real_settings):
    """The real settings with retries after 50–200 ms and ingest batches of 100 rows."""
    from app.settings import Settings, use_settings

    settings = Settings.load(**{**real_settings.model_dump(), "retry_backoff_seconds": 0.05,
                                "retry_backoff_max_seconds": 0.2, "ingest_batch_rows": 100})
    use_settings(settings)
    return settings


@pytest.fixture
def worker(fast_retries, db):
    """An in-process Dramatiq worker on RabbitMQ; its dispatcher leads (PostgreSQL advisory lock)."""
    import dramatiq

    from app.tasks import broker

    fresh_flush(broker)
    worker = dramatiq.Worker(broker, worker_threads=4, worker_timeout=100)
    worker.start()
    yield worker
    worker.stop()
    fresh_flush(broker)


def fresh_flush(broker) -> None:
    """Empty the broker's queues on a new connection: this thread's old one may have idled past
    its heartbeats (pika's blocking connection only answers them while in use) and been closed
    by RabbitMQ."""
    if hasattr(broker, "state"):
        del broker.connection
    broker.flush_all()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def sqlite_app(tmp_path):
    """The app on the embedded default (SQLite, local folder), migrated."""
    from app import create_app, migrate
    from app.settings import Settings, use_settings

    embedded = Settings.load(
        data_dir=tmp_path / "data", database_url="", database_owner_url="", broker_url="",
        redis_url="", s3_bucket="", jwt_secret=None,
    )
    migrate.prepare(embedded)
    yield create_app(embedded)
    use_settings(None)


def run_fairq(*args: str, env: dict[str, str] | None = None, timeout: float = 60, cwd=None):
    """Run the ``fairq`` console script; returns the completed process."""
    return subprocess.run(
        ["fairq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=cwd,
    )


@pytest.fixture
def fairq_up(tmp_path):
    """`fairq up` in a subprocess on a free port, on the embedded default (no FAIRQ_ variable,
    run in ``tmp_path``); yields (base URL, process, its folder)."""
    import time
    import urllib.request

    port = free_port()
    process = subprocess.Popen(
        ["fairq", "up", "--port", str(port)], cwd=tmp_path, env=clean_env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"fairq up exited early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("fairq up did not answer within 60 s")
    yield base, process, tmp_path
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()
