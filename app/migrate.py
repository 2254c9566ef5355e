"""Database migrations (Alembic): upgrade, downgrade and the current revision."""
from __future__ import annotations

import io
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from app.db import Database, get_db, get_owner_db
from app.settings import Settings

__all__ = ["upgrade", "downgrade", "current", "head", "prepare", "grant_app_role", "MIGRATIONS_DIR"]

logger = logging.getLogger(__name__)

#: The Alembic scripts, beside the ``app`` package.
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _config(db: Database) -> Config:
    if not (MIGRATIONS_DIR / "env.py").is_file():
        raise RuntimeError(f"Alembic scripts not found in {MIGRATIONS_DIR}")
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = db.url
    return config


def upgrade(db: Database, revision: str = "head") -> None:
    """Upgrade the database to ``revision``."""
    config = _config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def prepare(settings: Settings, revision: str = "head") -> None:
    """Upgrade the database as the tables' owner, then grant the application's role data access."""
    owner = get_owner_db(settings)
    upgrade(owner, revision)
    grant_app_role(owner, get_db(settings))


def grant_app_role(owner: Database, app: Database) -> None:
    """Let the application's role read and write every table, without owning any.

    Row-level security binds a role that does not own the tables (and is no
    superuser), so on PostgreSQL the application should connect as such a
    role (``FAIRQ_DATABASE_URL``) and migrations as the owner
    (``FAIRQ_DATABASE_OWNER_URL``).
    """
    if owner.dialect != "postgresql" or owner is app:
        return
    role = make_url(app.url).username
    if not role or role == make_url(owner.url).username:
        return
    quoted = owner.engine.dialect.identifier_preparer.quote(role)
    with owner.engine.begin() as connection:
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {quoted}"))
        connection.execute(
            sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
        )
        connection.execute(sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}"))
    logger.info("granted data access on every table to role %s", role)


def downgrade(db: Database, revision: str) -> None:
    """Downgrade the database to ``revision`` (``base``: drop everything)."""
    config = _config(db)
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current(db: Database) -> str | None:
    """The database's revision, or ``None`` before the first migration."""
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    """The newest revision in ``migrations/``."""
    return ScriptDirectory.from_config(_config_for_scripts()).get_current_head()


def _config_for_scripts() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config
