"""PostgreSQL settings of a run's transaction, and of its one parallel statement."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

__all__ = ["WORK_MEM", "TUNING", "STATISTICS", "LOOKUPS", "HALVES", "tune", "tuned"]

#: Memory PostgreSQL may use per hash of a run (so a million rows a side hash in memory).
WORK_MEM = "256MB"
#: Settings of a run's transaction on PostgreSQL: hashes in memory, no JIT (compiling the
#: statements cost more than it saved), and the main key's grouping as one sequential pass into
#: a hash table (the planner's other choices, an index walk in key order or a sort spilled to
#: disk, measured slower: its estimate of the hash table is about twice what it uses).
TUNING = {"work_mem": WORK_MEM, "jit": "off", "enable_indexscan": "off", "enable_bitmapscan": "off",
          "enable_sort": "off"}
#: Also for a run (not the benchmark's floor, which analyses nothing): its temporary tables are
#: analysed from 3,000 sampled rows (PostgreSQL's default target, 100, reads 30,000). Their plans
#: need row counts and rough distributions, not fine histograms.
STATISTICS = {"default_statistics_target": "10"}
#: After the main key, on PostgreSQL: the planner's usual choices again, with index lookups priced
#: for a cached table, so the later phases look up their few rows by key instead of scanning.
LOOKUPS = {"enable_indexscan": "on", "enable_bitmapscan": "on", "enable_sort": "on", "random_page_cost": "1.1"}
#: For the main key's statement only (then put back): its two halves of the key space as a
#: parallel append, each half in a parallel worker while the run's own process gathers what they
#: keep (without a worker to be had, it runs both halves itself). Each half reads the whole table:
#: a parallel sequential scan under each half's grouping would send every row through a Gather
#: instead. Parallel plans are priced as cheap so that the planner takes this one. Each worker
#: looks up by id the txn ids of its half's breaks, and the columns of the rows its half leaves
#: unpaired (index lookups priced as in :data:`LOOKUPS`); the grouping still reads the table in one
#: sequential pass (an index walk over every row is priced far above it).
HALVES = {"max_parallel_workers_per_gather": "2", "parallel_leader_participation": "off",
          "parallel_setup_cost": "0", "parallel_tuple_cost": "0.001", "min_parallel_table_scan_size": "8GB",
          "enable_parallel_append": "on", "enable_indexscan": "on", "random_page_cost": "1.1"}


def tune(connection: sa.Connection, settings: dict[str, str] = TUNING) -> None:
    """Apply :data:`TUNING` (or other settings) to the connection's transaction (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        for name, value in settings.items():
            connection.execute(sa.text("SELECT set_config(:name, :value, true)"), {"name": name, "value": value})


@contextmanager
def tuned(connection: sa.Connection, settings: dict[str, str]) -> Iterator[None]:
    """``settings`` for the statements run inside (PostgreSQL only), then the transaction's values again.

    (When a statement inside fails, the transaction is aborted: nothing is put back.)
    """
    if connection.dialect.name != "postgresql":
        yield
        return
    before = {name: connection.execute(sa.text("SELECT current_setting(:name)"), {"name": name}).scalar()
              for name in settings}
    tune(connection, settings)
    yield
    tune(connection, before)
