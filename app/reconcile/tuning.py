"""PostgreSQL settings of a run's transaction."""
from __future__ import annotations

import sqlalchemy as sa

__all__ = ["WORK_MEM", "TUNING", "LOOKUPS", "tune"]

#: Memory PostgreSQL may use per hash of a run (so a million rows a side hash in memory).
WORK_MEM = "256MB"
#: Settings of a run's transaction on PostgreSQL: hashes in memory, and no JIT (compiling the
#: statements cost more than it saved).
TUNING = {"work_mem": WORK_MEM, "jit": "off"}
#: After the main key, on PostgreSQL: index lookups priced for a cached table, so the later
#: phases look up their few rows by key instead of scanning the table again.
LOOKUPS = {"random_page_cost": "1.1"}


def tune(connection: sa.Connection, settings: dict[str, str] = TUNING) -> None:
    """Apply :data:`TUNING` (or other settings) to the connection's transaction (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        for name, value in settings.items():
            connection.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
