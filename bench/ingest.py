"""The ingest benchmark: a UPI file from S3 through a real worker into PostgreSQL, against ``psql \\copy``.

    python3 bench/ingest.py                  # 1,000,000 rows
    python3 bench/ingest.py --rows 200000    # a quicker look
    python3 bench/ingest.py --database fairq_bench_ing --vhost bench_ing --redis-db 11   # own namespaces

What runs, all on loopback: PostgreSQL (a database of its own, ``fairq_bench_ingest``,
made here; the application connects as ``fairq_app``, bound by row-level security),
RabbitMQ (a vhost of its own), Redis (db 9) (``--database``, ``--vhost``, ``--redis-db``: others,
so that runs beside each other do not share them), and a local S3-compatible server (moto's,
in this process). The file is made by ``bench/gen_transactions.py`` (seeded, clean
switch-report layout) and uploaded to the tenant's folder.

1. ``psql \\copy`` of the same rows, pre-rendered in the seed table's own layout, into a
   plain table with the seed schema (raw_row JSONB, UNIQUE (tenant_id, txn_id)).
2. fairq: the ``ingest`` job enqueued like the API does, run by a ``dramatiq app.tasks``
   worker process (1 process, 2 threads): the real job path (dispatcher, gate, S3 stream,
   plugin parser, COPY to staging, INSERT ... ON CONFLICT, progress, usage). Rate: rows
   over the job's run time as the gate measured it. Peak RSS: the worker process's VmHWM.
3. The same file ingested again: recognised as the file job 1 read (same path, same ETag,
   same parser), so not read; its time and the rows it added (0).
4. The same file again with ``force``: read, parsed and merged in full; its time and rows (0).

It prints figures; it never passes or fails on time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB = "fairq_bench_ingest"
VHOST = "fairq_bench_ingest"
TENANT = "bench"
REDIS_DB = 9
ENV = {
    "FAIRQ_JWT_SECRET": "bench-only-secret-7c1d9e2f4a6b8c0d1e3f5a7b9c1d3e5f",
    "FAIRQ_LOG_LEVEL": "WARNING",
    "FAIRQ_S3_BUCKET": "fairq-bench-ingest",
    "FAIRQ_S3_ACCESS_KEY_ID": "bench",
    "FAIRQ_S3_SECRET_ACCESS_KEY": "bench",
}
#: The seed's table, for ``\\copy``: same columns, types and key as migration 0001.
SEED_TABLE = """
DROP TABLE IF EXISTS bench_seed_copy;
CREATE TABLE bench_seed_copy (
    id bigserial PRIMARY KEY,
    tenant_id varchar(64) NOT NULL,
    txn_id varchar(64) NOT NULL,
    source varchar(32),
    amount numeric(18, 2) NOT NULL,
    currency char(3) NOT NULL DEFAULT 'INR',
    status varchar(16),
    txn_time timestamptz,
    raw_row jsonb,
    created_at timestamptz NOT NULL,
    UNIQUE (tenant_id, txn_id)
);
"""
COPY_COLUMNS = "tenant_id, txn_id, source, amount, currency, status, txn_time, raw_row, created_at"

sys.path.insert(0, str(ROOT))


def namespaces(database: str, vhost: str, redis_db: int) -> dict[str, str]:
    """The settings naming the bench's database, vhost and Redis database."""
    return {
        "FAIRQ_DATABASE_URL": f"postgresql://fairq_app@127.0.0.1:5432/{database}",
        "FAIRQ_DATABASE_OWNER_URL": f"postgresql://postgres@127.0.0.1:5432/{database}",
        "FAIRQ_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "FAIRQ_REDIS_URL": f"redis://127.0.0.1:6379/{redis_db}",
    }


def psql(*args: str, database: str | None = None) -> subprocess.CompletedProcess:
    database = database or DB
    done = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1",
                           "-q", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr)
    return done


def setup() -> None:
    """The bench database (fresh schema, migrated), the app role and the RabbitMQ vhost."""
    from bench.support import fresh_environment

    fresh_environment(database=DB, vhost=VHOST)
    import redis

    redis.Redis.from_url(os.environ["FAIRQ_REDIS_URL"]).flushdb()
    from app import migrate
    from app.settings import get_settings

    migrate.prepare(get_settings())
    from app.tenancy import service

    service.create_tenant(TENANT)


def make_file(rows: int, seed: int, folder: Path) -> Path:
    from bench.gen_transactions import payments, write_switch_report

    path = folder / f"upi_{rows}.csv"
    with path.open("w", encoding="utf-8", newline="") as out:
        write_switch_report(out, payments(rows, seed=seed), seed=seed)
    return path


def parse_only(path: Path, *, staged: bool = False) -> tuple[int, float]:
    """Rows the UPI plugin yields from the file, and the seconds it takes (one core).

    ``staged``: its ``stage`` parser, what the loader reads (clean rows as ``COPY`` text).
    """
    from app.hooks import ParseContext
    from app.ingest.sources import find_source

    source = find_source("UPI")
    parse = source.stage if staged and source.stage is not None else source.parse
    started = time.perf_counter()
    with path.open("rb") as stream:
        count = sum(1 for _ in parse(stream, ParseContext()))
    return count, time.perf_counter() - started


def render_seed_layout(path: Path, out_path: Path) -> int:
    """The file's rows in the seed table's own layout (tab-separated, for ``\\copy``)."""
    from app.hooks import ParseContext, Transaction
    from app.ingest import rows as render
    from app.ingest.sources import find_source

    parse = find_source("UPI").parse
    created = "2025-09-01T00:00:00+00:00"
    count = 0
    with path.open("rb") as stream, out_path.open("w", encoding="utf-8") as out:
        for tx in parse(stream, ParseContext()):
            if not isinstance(tx, Transaction):
                continue
            line = render.copy_line(tx).rstrip("\n").split("\t")
            # copy_line: txn_id, amount, status, txn_time, direction, currency, ..., line, raw_row
            out.write("\t".join((TENANT, line[0], "UPI", line[1], line[5], line[2], line[3], line[11], created)))
            out.write("\n")
            count += 1
    return count


def psql_copy(tsv: Path) -> float:
    psql("-c", SEED_TABLE)
    started = time.perf_counter()
    psql("-c", f"\\copy bench_seed_copy ({COPY_COLUMNS}) FROM '{tsv}'")
    return time.perf_counter() - started


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            for child in task.read_text().split():
                found.append(int(child))
                todo.append(int(child))
    return found


def peak_rss_mb(pids: list[int]) -> float:
    peak = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]))
        except FileNotFoundError:
            continue
    return peak / 1024


def ingest(s3_path: str, worker: subprocess.Popen, *, force: bool = False) -> dict:
    """Enqueue the ingest like the API does; wait for the worker; the job's figures."""
    import app.tasks  # noqa: F401  (the job kinds, as the API has them)
    from app.ingest.service import enqueue_ingest
    from app.scheduling.models import Job
    from app.settings import get_settings
    from app.tenancy.scoping import system_session, tenant_session

    with tenant_session(TENANT) as session:
        job, _ = enqueue_ingest(session, get_settings(), s3_path=s3_path, source="UPI", force=force)
        job_id = job.id
    started = time.perf_counter()
    last = ""
    while True:
        time.sleep(0.5)
        with system_session() as session:
            job = session.get(Job, job_id)
        if job.progress_message and job.progress_message != last:
            last = job.progress_message
            print(f"    {time.perf_counter() - started:6.1f} s  {last}", flush=True)
        if job.state in ("succeeded", "dead", "cancelled"):
            break
        if worker.poll() is not None:
            raise RuntimeError("the worker exited")
    if job.state != "succeeded":
        raise RuntimeError(f"job {job_id} {job.state}: {job.last_error}")
    return {"job_id": job_id, "run_seconds": job.run_seconds, "wall": time.perf_counter() - started,
            "result": job.result, "attempts": job.attempts}


def stored_rows() -> int:
    return int(psql("-At", "-c", "SELECT count(*) FROM fintech_transactions").stdout.strip())


def main(argv: list[str] | None = None) -> int:
    global DB, VHOST
    parser = argparse.ArgumentParser(description="fairq ingest vs psql \\copy")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="worker threads")
    parser.add_argument("--database", default=DB, help="the PostgreSQL database (emptied)")
    parser.add_argument("--vhost", default=VHOST, help="the RabbitMQ vhost")
    parser.add_argument("--redis-db", type=int, default=REDIS_DB, help="the Redis database (flushed)")
    args = parser.parse_args(argv)
    DB, VHOST = args.database, args.vhost

    from moto.server import ThreadedMotoServer

    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    os.environ.update({**ENV, **namespaces(DB, VHOST, args.redis_db), "FAIRQ_S3_ENDPOINT_URL": f"http://{host}:{port}"})
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="fairq-bench-ingest-"))
    worker = None
    try:
        setup()
        from app.ingest.paths import tenant_prefix
        from app.settings import get_settings
        from app.storage import make_store

        print(f"generating {args.rows:,} UPI rows ...", flush=True)
        path = make_file(args.rows, args.seed, folder)
        size_mb = path.stat().st_size / 1e6
        store = make_store(get_settings())
        store.ensure()
        with path.open("rb") as stream:
            store.put(tenant_prefix(TENANT) + path.name, stream)
        print(f"  {size_mb:.0f} MB uploaded to the local S3 server", flush=True)

        parsed, parse_seconds = parse_only(path)
        print(f"plugin parse alone: {parsed / parse_seconds:,.0f} rows/s", flush=True)
        staged, stage_seconds = parse_only(path, staged=True)
        print(f"plugin stage parser alone: {staged / stage_seconds:,.0f} rows/s", flush=True)
        tsv = folder / "seed_layout.tsv"
        rendered = render_seed_layout(path, tsv)
        copy_seconds = psql_copy(tsv)
        print(f"psql \\copy: {rendered / copy_seconds:,.0f} rows/s", flush=True)

        worker = subprocess.Popen(
            ["dramatiq", "app.tasks", "--processes", "1", "--threads", str(args.threads)],
            cwd=ROOT, env=dict(os.environ), start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        print("fairq ingest (a dramatiq worker process) ...", flush=True)
        first = ingest(path.name, worker)
        after_first = stored_rows()
        print("fairq ingest of the same file again ...", flush=True)
        second = ingest(path.name, worker)
        after_second = stored_rows()
        print("fairq ingest of the same file again, read anyway (force) ...", flush=True)
        forced = ingest(path.name, worker, force=True)
        after_forced = stored_rows()
        rss = peak_rss_mb(descendants(worker.pid))
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(60)
        s3.stop()
        shutil.rmtree(folder, ignore_errors=True)

    fairq_rate = args.rows / first["run_seconds"]
    copy_rate = rendered / copy_seconds
    rows = [
        ("rows in the file", f"{args.rows:,} ({size_mb:.0f} MB)"),
        ("psql \\copy into the seed table", f"{copy_seconds:.1f} s, {copy_rate:,.0f} rows/s"),
        ("UPI plugin parse alone (one core)", f"{parse_seconds:.1f} s, {parsed / parse_seconds:,.0f} rows/s"),
        ("UPI plugin stage parser alone (one core)", f"{stage_seconds:.1f} s, {staged / stage_seconds:,.0f} rows/s"),
        ("fairq ingest (job run time)", f"{first['run_seconds']:.1f} s, {fairq_rate:,.0f} rows/s"),
        ("  enqueue to done (wall)", f"{first['wall']:.1f} s"),
        ("  ratio to \\copy", f"{fairq_rate / copy_rate:.2f} x (target >= 0.6)"),
        ("  result", str(first["result"])),
        ("worker peak RSS", f"{rss:.0f} MB (target < 300)"),
        ("re-ingest of the same file", f"{second['run_seconds']:.1f} s, "
                                       f"{args.rows / second['run_seconds']:,.0f} rows/s"),
        ("  rows added", f"{after_second - after_first:,} (stored: {after_second:,})"),
        ("  result", str(second["result"])),
        ("re-ingest read anyway (force)", f"{forced['run_seconds']:.1f} s, "
                                          f"{args.rows / forced['run_seconds']:,.0f} rows/s"),
        ("  rows added", f"{after_forced - after_second:,}"),
        ("  result", str(forced["result"])),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print(f"| {'measure':<{width}} | figure |")
    print(f"| {'-' * width} | ------ |")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
