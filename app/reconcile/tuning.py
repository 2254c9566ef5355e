"""PostgreSQL settings of a run's transaction."""
from __future__ import annotations

import sqlalchemy as sa

__all__ = ["WORK_MEM", "TUNING", "LOOKUPS", "tune"]

#: Memory PostgreSQL may use per hash of a run (so a million rows a side hash in memory).
WORK_MEM = "256MB"
#: Settings of a run's transaction on PostgreSQL: hashes in memory, no JIT (compiling the
#: statements cost more than it saved), and the main key's grouping as one sequential pass into
#: a hash table (the planner's other choices, an index walk in key order or a sort spilled to
#: disk, measured slower: its estimate of the hash table is about twice what it uses).
TUNING = {"work_mem": WORK_MEM, "jit": "off", "enable_indexscan": "off", "enable_bitmapscan": "off",
          "enable_sort": "off"}
#: After the main key, on PostgreSQL: the planner's usual choices again, with index lookups priced
#: for a cached table, so the later phases look up their few rows by key instead of scanning.
LOOKUPS = {"enable_indexscan": "on", "enable_bitmapscan": "on", "enable_sort": "on", "random_page_cost": "1.1"}


def tune(connection: sa.Connection, settings: dict[str, str] = TUNING) -> None:
    """Apply :data:`TUNING` (or other settings) to the connection's transaction (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        for name, value in settings.items():
            connection.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})
