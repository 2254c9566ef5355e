"""The reconciliation benchmark: 1M ledger rows against 1M bank rows, against a bare FULL OUTER JOIN.

    python3 bench/reconcile.py                   # 1,000,000 payments a side, 1 % of each outcome
    python3 bench/reconcile.py --rows 100000     # a quicker look
    python3 bench/reconcile.py --database fairq_bench_mine   # beside another engineer's run
    python3 bench/reconcile.py --reuse           # the data a run loaded before, when it is the same

What runs, on loopback PostgreSQL only (a database of its own, ``fairq_bench_reconcile`` unless
``--database`` names another, made here; the application connects as ``fairq_app``, bound by
row-level security):

1. ``bench/gen_transactions.py`` makes both ledgers of ``--rows`` UPI payments in canonical
   columns, with ``--breaks`` of the payments broken for each of the eight outcomes at known
   rows (see ``reconciliation_rows``); they are loaded straight into ``fintech_transactions``
   with ``COPY`` (the benchmark measures reconciliation, not ingest), then vacuumed and analysed.
   The database then records what it holds (table ``bench_reconcile_data``: ``--rows``,
   ``--breaks``, ``--seed``, the schema's revision, the rows a side, the injected breaks).
   With ``--reuse``, a database that holds the data of the same ``--rows``, ``--breaks`` and
   ``--seed`` at the code's schema revision is not emptied and loaded again: what a run writes
   is emptied instead (jobs, reconciliation runs, breaks, usage; ``TRUNCATE``, and the
   planner's statistics of those tables), so the job starts from the state a fresh load leaves
   (every break found ``new``). Otherwise it loads as without ``--reuse``.
2. The floor: one bare ``FULL OUTER JOIN`` of the two sides on the RRN, counting rows, over the
   same rows the run reads (tenant, ledger, source, the period and its margin), as the
   application's role, with the run's own settings (``engine.TUNING``); best of three.
3. The job path: a ``reconcile`` job enqueued like the API does, its job kind's function run in
   this process as the gate would (matching, breaks written, summary). Then run again (the same
   data: breaks persist, nothing is added).
4. Precision and recall of the breaks found against those injected.

It prints figures; it never passes or fails on time.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The benchmark's database (and RabbitMQ vhost) unless ``--database`` names another.
DB = "fairq_bench_reconcile"
TENANT = "bench"


def environment(database: str) -> dict[str, str]:
    """The process's settings: the application and owner URLs of ``database``."""
    return {
        "FAIRQ_DATABASE_URL": f"postgresql://fairq_app@127.0.0.1:5432/{database}",
        "FAIRQ_DATABASE_OWNER_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "FAIRQ_JWT_SECRET": "bench-only-secret-4f2a9c7e1b3d5f7a9c1e3b5d7f9a1c3e",
        "FAIRQ_LOG_LEVEL": "WARNING",
    }

COPY_COLUMNS = ("ledger", "txn_id", "amount", "status", "txn_time", "direction", "reference", "counterparty",
                "raw_row", "line")
FLOOR = """
SELECT count(*), count(i.reference), count(e.reference)
FROM (SELECT reference FROM fintech_transactions WHERE tenant_id = :tenant AND ledger = 'internal' AND source = 'UPI'
      AND txn_time >= :lo AND txn_time < :hi) i
FULL OUTER JOIN (SELECT reference FROM fintech_transactions WHERE tenant_id = :tenant AND ledger = 'external'
      AND source = 'UPI' AND txn_time >= :lo AND txn_time < :hi) e ON i.reference = e.reference
"""

#: The table that says which data the database holds (the owner's; the application never reads it).
MARKER = "bench_reconcile_data"
#: What a run writes, emptied before a run on reused data (``TRUNCATE ... CASCADE``).
WRITTEN = ("jobs", "reconciliation_runs", "reconciliations", "usage_daily", "usage_monthly")

sys.path.insert(0, str(ROOT))


def setup(database: str) -> None:
    """The bench database (fresh schema, migrated) and the app role; the tenant."""
    from bench.support import fresh_environment

    fresh_environment(database=database, vhost=database)
    from app import migrate
    from app.settings import get_settings

    migrate.prepare(get_settings())
    from app.tenancy import service

    service.create_tenant(TENANT)


def load(folder: Path) -> None:
    """Both files into ``fintech_transactions`` with COPY (as the owner), then VACUUM ANALYZE."""
    from app.db import get_owner_db

    engine = get_owner_db().engine
    with engine.begin() as connection:
        for column, default in (("tenant_id", f"'{TENANT}'"), ("source", "'UPI'"), ("created_at", "now()")):
            connection.exec_driver_sql(f"ALTER TABLE fintech_transactions ALTER COLUMN {column} SET DEFAULT {default}")
        cursor = connection.connection.dbapi_connection.cursor()
        for name in ("internal.tsv", "external.tsv"):
            with (folder / name).open("rb") as stream:
                cursor.copy_expert(f"COPY fintech_transactions ({', '.join(COPY_COLUMNS)}) FROM STDIN", stream,
                                   size=1 << 20)
        cursor.close()
        for column in ("tenant_id", "source", "created_at"):
            connection.exec_driver_sql(f"ALTER TABLE fintech_transactions ALTER COLUMN {column} DROP DEFAULT")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE fintech_transactions")


def mark(wanted: dict, internal: int, external: int, expected: list[dict]) -> None:
    """Record the data just loaded: ``wanted`` (rows, breaks, seed), the schema's revision, the rows, the breaks."""
    from app import migrate
    from app.db import get_owner_db

    with get_owner_db().engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE {MARKER} (wanted TEXT NOT NULL, revision TEXT NOT NULL, "
                                   "internal BIGINT NOT NULL, external BIGINT NOT NULL, expected TEXT NOT NULL)")
        connection.exec_driver_sql(f"INSERT INTO {MARKER} VALUES (%s, %s, %s, %s, %s)",
                                   (json.dumps(wanted, sort_keys=True), migrate.head(), internal, external,
                                    json.dumps(expected)))


def loaded(database: str, wanted: dict) -> tuple[int, int, list[dict]] | None:
    """The rows a side and the injected breaks, if ``database`` holds the data of ``wanted`` at the
    code's schema revision (recorded by :func:`mark`); else ``None``."""
    import sqlalchemy as sa

    from app import migrate
    from app.db import get_owner_db

    admin = sa.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    with admin.connect() as connection:
        exists = connection.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": database})
    admin.dispose()
    if not exists:
        return None
    with get_owner_db().engine.connect() as connection:
        if connection.scalar(sa.text("SELECT to_regclass(:t)"), {"t": MARKER}) is None:
            return None
        row = connection.exec_driver_sql(f"SELECT wanted, revision, internal, external, expected FROM {MARKER}").first()
    if row is None or json.loads(row[0]) != wanted or not row[1] == migrate.head() == migrate.current(get_owner_db()):
        return None
    return row[2], row[3], json.loads(row[4])


def reset() -> None:
    """Empty what a run writes (:data:`WRITTEN`) and those tables' planner statistics, as a fresh schema has them."""
    from app.db import get_owner_db

    with get_owner_db().engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {', '.join(WRITTEN)} RESTART IDENTITY CASCADE")
        # a fresh schema's tables were never analysed: plans on them (the breaks' writes) start from that
        connection.exec_driver_sql("DELETE FROM pg_statistic WHERE starelid = ANY (%s::regclass[])", (list(WRITTEN),))


def period() -> tuple[date, date]:
    """The days the generated payments span, in the files' time zone."""
    from app.db import get_owner_db

    with get_owner_db().engine.connect() as connection:
        first, last = connection.exec_driver_sql(
            "SELECT min(txn_time AT TIME ZONE 'Asia/Kolkata')::date, max(txn_time AT TIME ZONE 'Asia/Kolkata')::date "
            "FROM fintech_transactions WHERE ledger = 'internal'").one()
    return first, last


def floor_join(run_id: int) -> tuple[float, tuple]:
    """The bare join over the rows the run reads; best of three (seconds, counts)."""
    import sqlalchemy as sa

    from app.reconcile import engine, service
    from app.reconcile.models import ReconciliationRun
    from app.reconcile.rules import find_rules
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    with tenant_session(TENANT) as session:
        run = session.get(ReconciliationRun, run_id)
        start, end = service._bounds(get_settings(), run)
        source, rules = find_rules(run.source)
        margin = engine.Params(TENANT, source, rules, start, end, run.amount_tolerance, run.date_tolerance_hours,
                               0, run_id, start).margin
    best, counts = float("inf"), ()
    for _ in range(3):
        with tenant_session(TENANT) as session:
            engine.tune(session.connection())  # the run's own settings: work_mem, no JIT
            started = time.perf_counter()
            counts = tuple(session.execute(sa.text(FLOOR), {"tenant": TENANT, "lo": start - margin,
                                                            "hi": end + margin}).one())
            best = min(best, time.perf_counter() - started)
    return best, counts


def enqueue(first: date, last: date) -> tuple[int, int]:
    from decimal import Decimal

    import app.tasks  # noqa: F401  (the job kinds, as the API has them)
    from app.reconcile.service import enqueue_reconcile
    from app.settings import get_settings
    from app.tenancy.scoping import tenant_session

    with tenant_session(TENANT) as session:
        job, run, _ = enqueue_reconcile(session, get_settings(), source="UPI", period_from=first, period_to=last,
                                        amount_tolerance=Decimal("0.00"), date_tolerance_hours=48)
        return job.id, run.id


class PhaseTimes(logging.Handler):
    """Collects the engine's per-phase timings (its debug lines) while a run is timed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.phases: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("phase "):
            self.phases.append(record.args)


def run_job(job_id: int) -> tuple[float, dict, list]:
    """The ``reconcile`` job kind's function, run here as the gate hands it over; (seconds, result, phases)."""
    from app.db import get_db
    from app.scheduling.kinds import JobContext, kinds, set_current_job
    from app.scheduling.models import Job
    from app.scheduling.store import Store
    from app.tenancy.scoping import system_session

    with system_session() as session:
        job = session.get(Job, job_id)
        context = JobContext(job_id=job.id, tenant_id=job.tenant_id, kind=job.kind, payload=job.payload,
                             attempt=1, max_retries=job.max_retries, reporter=Store(get_db()))
    times = PhaseTimes()
    engine_log = logging.getLogger("app.reconcile.engine")
    engine_log.addHandler(times)
    engine_log.setLevel(logging.DEBUG)
    engine_log.propagate = False
    set_current_job(context)
    try:
        started = time.perf_counter()
        kinds()["reconcile"].actor.fn(job_id)
        seconds = time.perf_counter() - started
    finally:
        set_current_job(None)
        engine_log.removeHandler(times)
        engine_log.propagate = True
    if context.failure is not None or context.result is None:
        raise RuntimeError(f"the run failed: {context.failure!r}")
    return seconds, context.result, times.phases


def found_breaks(run_id: int) -> set[tuple]:
    import sqlalchemy as sa

    from app.reconcile.models import Reconciliation
    from app.tenancy.scoping import tenant_session

    with tenant_session(TENANT) as session:
        return set(session.execute(
            sa.select(Reconciliation.mismatch_type, Reconciliation.internal_txn_id, Reconciliation.external_txn_id)
            .where(Reconciliation.run_id == run_id, Reconciliation.status != "resolved")).all())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fairq reconciliation vs a bare FULL OUTER JOIN")
    parser.add_argument("--rows", type=int, default=1_000_000, help="payments (about as many rows a side)")
    parser.add_argument("--breaks", type=float, default=0.01, help="share of payments broken, per outcome")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database", default=DB,
                        help=f"the database (and vhost) to use, emptied first unless --reuse keeps its data "
                             f"(default {DB})")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the data a run of the same --rows, --breaks and --seed loaded "
                             "(only what runs write is emptied)")
    args = parser.parse_args(argv)
    os.environ.update(environment(args.database))

    from bench.gen_transactions import OUTCOMES, write_reconciliation

    wanted = {"rows": args.rows, "breaks": args.breaks, "seed": args.seed}
    held = loaded(args.database, wanted) if args.reuse else None
    if held is not None:
        internal, external, expected = held
        reset()
        print(f"reusing the {internal:,} internal and {external:,} external rows loaded before "
              f"({args.rows:,} payments, {args.breaks:.0%} of each outcome, seed {args.seed}); "
              f"earlier runs' writes emptied", flush=True)
    else:
        folder = Path(tempfile.mkdtemp(prefix="fairq-bench-reconcile-"))
        try:
            setup(args.database)
            print(f"generating {args.rows:,} payments, {args.breaks:.0%} of each outcome ...", flush=True)
            internal, external, expected = write_reconciliation(folder, args.rows, breaks=args.breaks, seed=args.seed)
            started = time.perf_counter()
            load(folder)
            print(f"  {internal:,} internal and {external:,} external rows loaded with COPY in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        mark(wanted, internal, external, expected)
    first, last = period()
    job_id, run_id = enqueue(first, last)
    floor_join(run_id)  # a warm-up: both are timed with the table in the cache
    floor_seconds, counts = floor_join(run_id)
    print(f"bare FULL OUTER JOIN: {floor_seconds:.2f} s ({counts[0]:,} joined rows)", flush=True)
    seconds, result, phases = run_job(job_id)
    print(f"reconcile job: {seconds:.2f} s", flush=True)
    got = found_breaks(run_id)
    again_job, again_run = enqueue(first, last)
    again_seconds, again, _ = run_job(again_job)
    print(f"the same period again: {again_seconds:.2f} s", flush=True)

    want = {(b["type"], b["internal_txn_id"], b["external_txn_id"]) for b in expected}
    hits = len(want & got)
    precision = hits / len(got) if got else 1.0
    recall = hits / len(want) if want else 1.0
    per_type = {kind: (sum(1 for w in want if w[0] == kind), sum(1 for g in got & want if g[0] == kind))
                for kind in OUTCOMES}
    rows_read = internal + external
    ratio = seconds / floor_seconds
    table = [
        ("rows (internal + external)", f"{internal:,} + {external:,}", ""),
        ("injected breaks", f"{len(want):,} ({', '.join(f'{k} {n:,}' for k, (n, _) in per_type.items())})", ""),
        ("bare FULL OUTER JOIN on the RRN (floor)", f"{floor_seconds:.2f} s", ""),
        ("reconcile job", f"{seconds:.2f} s, {rows_read / seconds:,.0f} rows/s", "< 60 s"),
        ("  ratio to the floor", f"{ratio:.2f} x", "<= 3 x"),
        ("  by phase", ", ".join(f"{name} {secs:.2f} s" for name, secs in phases), ""),
        ("  precision", f"{precision:.4%} ({hits:,} of {len(got):,} found)", "100 %"),
        ("  recall", f"{recall:.4%} ({hits:,} of {len(want):,} injected)", "100 %"),
        ("  matched", f"{result['matched']['count']:,} ({result['matched']['amount']})", ""),
        ("  breaks", f"{result['total_breaks']:,}, lifecycle {json.dumps(result['lifecycle'])}", "all new"),
        ("the same period again", f"{again_seconds:.2f} s; breaks {again['total_breaks']:,}, "
                                  f"lifecycle {json.dumps(again['lifecycle'])}", "nothing new"),
    ]
    width = max(len(name) for name, _, _ in table)
    print()
    print(f"| {'measure':<{width}} | measured | target |")
    print(f"| {'-' * width} | -------- | ------ |")
    for name, value, target in table:
        print(f"| {name:<{width}} | {value} | {target} |")
    misses = [kind for kind, (n, hit) in per_type.items() if n != hit]
    if misses:
        print(f"\noutcomes with injected breaks not found: {', '.join(misses)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
