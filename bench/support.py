"""What every benchmark sets up: a database of its own, the application role, a RabbitMQ vhost."""
from __future__ import annotations

import shutil
import subprocess

import sqlalchemy as sa

__all__ = ["fresh_environment"]


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
    ctl = shutil.which("rabbitmqctl")
    if ctl:
        subprocess.run([ctl, "add_vhost", vhost], capture_output=True)
        subprocess.run([ctl, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True)
