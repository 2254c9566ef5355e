"""Database migrations (Alembic): upgrade, downgrade and the current revision."""
from __future__ import annotations

import io
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.db import Database

__all__ = ["upgrade", "downgrade", "current", "head", "MIGRATIONS_DIR"]

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
