"""Loading on PostgreSQL (COPY, row-level security) and on SQLite: idempotent, exact, nothing lost.

The ``ingest`` actor runs in the test's thread here (``run_job``), as a worker's gate would
hand it over; ``test_ingest_e2e.py`` runs it through RabbitMQ.
"""
import csv
import io
import threading
from decimal import Decimal

import pytest

from app.storage import make_store
from tests.helpers import job_row, sign_up
from tests.test_ingest_support import (
    EXAMPLES,
    UPI_HEADER,
    count,
    enqueued,
    get_errors,
    run_job,
    stored,
    upi_file,
    upi_row,
    uploaded,
)


@pytest.fixture
def small_batches(real_settings):
    """Batches of 100 rows, so that a few hundred rows make several transactions."""
    from app.settings import Settings, use_settings

    settings = Settings.load(**{**real_settings.model_dump(), "ingest_batch_rows": 100})
    use_settings(settings)
    return settings


def ingest(client, who, data: bytes, source="UPI", **extra):
    """Upload, enqueue and run an ingest job; returns (job id, job context)."""
    job_id = enqueued(client, who, uploaded(client, who, data), source, **extra)
    return job_id, run_job(job_id)


def errors_csv(client, who, job_id) -> list[dict]:
    response = get_errors(client, who, job_id)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


@pytest.mark.parametrize(
    ("name", "source", "ledger", "rows"),
    [("upi_sample.csv", "UPI", "external", 20), ("upi_ledger.csv", "upi", "internal", 20),
     ("neft_statement.csv", "NEFT", "external", 12), ("neft_ledger.csv", "neft", "internal", 7)],
)
def test_the_example_files_ingest_cleanly(client, real_settings, name, source, ledger, rows):
    a = sign_up(client, "acme")
    # Given the file placed straight in the bucket under the tenant's folder (the seed's way)
    with (EXAMPLES / name).open("rb") as stream:
        make_store(real_settings).put(f"tenants/acme/{name}", stream)
    job_id = enqueued(client, a, name, source, ledger=ledger)
    context = run_job(job_id)
    assert context.failure is None
    assert context.result == {"rows_read": rows, "rows_loaded": rows, "duplicates": 0, "conflicts": 0,
                              "rejected": 0}
    loaded = stored("acme")
    assert len(loaded) == rows and {t.ledger for t in loaded} == {ledger}
    assert {t.source for t in loaded} == {source.upper()} and {t.job_id for t in loaded} == {job_id}
    assert errors_csv(client, a, job_id) == []


def test_canonical_columns_and_raw_row_are_stored(client):
    a = sign_up(client, "acme")
    ingest(client, a, (EXAMPLES / "upi_sample.csv").read_bytes())
    first = stored("acme", txn_id="HDF6513270E269E0D37F2A74DE452E6B438")[0]
    assert (first.amount, first.status, first.direction, first.reference) == (
        Decimal("1205.00"), "SUCCESS", "CR", "524187366946")
    assert first.counterparty == "ravi.kumar@okhdfcbank" and first.currency == "INR"
    assert first.txn_time.isoformat() == "2025-08-29T03:30:00+00:00"  # 09:00 in Kolkata
    assert str(first.settlement_date) == "2025-08-30" and first.line == 5
    assert first.raw_row["Transaction Amount"] == "1,205.00" and first.raw_row["Response Code"] == "00"
    deemed = stored("acme", reference="524193817444")[0]
    assert deemed.status == "PENDING" and deemed.raw_row["Status"] == "DEEMED"
    neft = sign_up(client, "globex")
    ingest(client, neft, (EXAMPLES / "neft_statement.csv").read_bytes(), "NEFT")
    utr = stored("globex", txn_id="CITIN52025082917691328")[0]
    assert (utr.ifsc, utr.direction, utr.amount) == ("CITI0000002", "CR", Decimal("15000.00"))


def test_the_same_file_twice_adds_nothing_the_second_time(client, small_batches):
    a = sign_up(client, "acme")
    data = upi_file(350)
    _, first = ingest(client, a, data)
    _, second = ingest(client, a, data)
    assert first.result == {"rows_read": 350, "rows_loaded": 350, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert second.result == {"rows_read": 350, "rows_loaded": 0, "duplicates": 350, "conflicts": 0, "rejected": 0}
    assert count("acme") == 350


def placed(settings, tenant_id: str, path: str, data: bytes) -> str:
    """``data`` put straight into the tenant's folder (as users do with the S3 console)."""
    make_store(settings).put(f"tenants/{tenant_id}/{path}", io.BytesIO(data))
    return path


def never_read(monkeypatch):
    """Make any read of a file through a parser fail the test."""
    from app.ingest import loader

    def load(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(loader, "load", load)
    monkeypatch.setattr("app.ingest.service.load", load)


def recognised_again(settings, client, who, tenant_id, monkeypatch):
    """Ingest a file with a loaded row, a duplicate, a conflict and a rejected row; then the
    same object again: it is recognised, not read, and tells the same story."""
    ingest(client, who, upi_file(2))  # rows 0 and 1, from another file
    data = (UPI_HEADER + upi_row(0) + upi_row(1, amount="9.00") + upi_row(2) + "=1+2,1,abc,,,,,,,\n").encode()
    path = placed(settings, tenant_id, "daily/report.csv", data)
    first_id = enqueued(client, who, path)
    first = run_job(first_id)
    assert first.result == {"rows_read": 4, "rows_loaded": 1, "duplicates": 1, "conflicts": 1, "rejected": 1}

    with monkeypatch.context() as patch:
        never_read(patch)
        second_id = enqueued(client, who, path)
        second = run_job(second_id)
    assert second.failure is None
    assert second.result == {"rows_read": 4, "rows_loaded": 0, "duplicates": 2, "conflicts": 1, "rejected": 1,
                             "same_file_as_job": first_id}
    assert job_row(second_id).progress_message.startswith(f"the file job {first_id} ingested, unchanged")
    # the new job has its own record of the rows not loaded: the same rows, the same reasons
    assert [(r["line"], r["kind"], r["reason"]) for r in errors_csv(client, who, second_id)] == [
        (r["line"], r["kind"], r["reason"]) for r in errors_csv(client, who, first_id)]
    assert count(tenant_id) == 3

    # read anyway when asked: the same counts from the file itself
    forced = run_job(enqueued(client, who, path, force=True))
    assert forced.result == {"rows_read": 4, "rows_loaded": 0, "duplicates": 2, "conflicts": 1, "rejected": 1}

    # a new version of the object under the same path is read
    placed(settings, tenant_id, path, data + upi_row(3).encode())
    changed = run_job(enqueued(client, who, path))
    assert changed.result == {"rows_read": 5, "rows_loaded": 1, "duplicates": 2, "conflicts": 1, "rejected": 1}
    assert count(tenant_id) == 4

    # so is the same object into the other ledger, or read by another parser setup
    assert "same_file_as_job" not in run_job(enqueued(client, who, path, ledger="internal")).result
    from app.settings import Settings, get_settings, use_settings

    use_settings(Settings.load(**{**get_settings().model_dump(), "ingest_timezone": "UTC"}))
    assert "same_file_as_job" not in run_job(enqueued(client, who, path)).result


def test_the_same_object_ingested_again_is_recognised_and_not_read(client, real_settings, monkeypatch):
    recognised_again(real_settings, client, sign_up(client, "acme"), "acme", monkeypatch)


def test_another_tenants_identical_file_is_read_for_its_own_tenant(client, real_settings, monkeypatch):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    data = upi_file(3)
    run_job(enqueued(client, a, placed(real_settings, "acme", "same.csv", data)))
    again = run_job(enqueued(client, b, placed(real_settings, "globex", "same.csv", data)))
    assert again.result == {"rows_read": 3, "rows_loaded": 3, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert count("globex") == 3


def test_a_job_that_fails_after_a_batch_and_is_retried_loads_each_row_once(client, small_batches, monkeypatch):
    from app.ingest import loader

    a = sign_up(client, "acme")
    job_id = enqueued(client, a, uploaded(client, a, upi_file(450)))
    real_merge, calls = loader._merge, []

    def crash_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("the database went away")
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(loader, "_merge", crash_on_the_third_batch)
    first = run_job(job_id, attempt=1)
    assert first.result is None and "went away" in str(first.failure)
    assert count("acme") == 200  # two batches were committed before the crash

    second = run_job(job_id, attempt=2)
    assert second.failure is None
    # the retry reports (and meters) the file's rows once: those of the first attempt count as its own
    assert second.result == {"rows_read": 450, "rows_loaded": 450, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert count("acme") == 450
    assert sorted(t.line for t in stored("acme")) == list(range(2, 452))


def test_a_differing_row_is_a_conflict_and_an_identical_one_a_quiet_duplicate(client):
    a = sign_up(client, "acme")
    ingest(client, a, upi_file(10))
    # Given a second file: 5 rows as before, 3 changed, 2 new, and 2 repeats of a new row
    changed = [
        upi_row(5, amount="999.00"),
        upi_row(6, status="FAILED"),
        upi_row(7, rrn="599999999999"),
    ]
    data = (UPI_HEADER + "".join(upi_row(n) for n in range(5)) + "".join(changed) + upi_row(10) + upi_row(11)
            + upi_row(11) + upi_row(11, amount="5.00")).encode()
    job_id, context = ingest(client, a, data)
    assert context.result == {"rows_read": 12, "rows_loaded": 2, "duplicates": 6, "conflicts": 4, "rejected": 0}
    assert count("acme") == 12
    # the stored rows are kept as they were
    assert stored("acme", line=7)[0].amount == Decimal("100.00")
    conflicts = errors_csv(client, a, job_id)
    assert [row["line"] for row in conflicts] == ["7", "8", "9", "13"]
    assert {row["kind"] for row in conflicts} == {"conflict"}
    assert "amount 999.00 (stored: 100.00)" in conflicts[0]["reason"]
    assert "status FAILED (stored: SUCCESS)" in conflicts[1]["reason"]
    assert "reference 599999999999 (stored: 500000000007)" in conflicts[2]["reason"]
    assert '"Transaction Amount": "999.00"' in conflicts[0]["raw"] or '"Transaction Amount":"999.00"' in conflicts[0]["raw"]


def test_internal_and_external_records_of_a_payment_are_both_kept(client, real_settings):
    a = sign_up(client, "acme")
    ingest(client, a, (EXAMPLES / "upi_sample.csv").read_bytes(), ledger="external")
    _, internal = ingest(client, a, (EXAMPLES / "upi_ledger.csv").read_bytes(), ledger="internal")
    # the ledger's amounts differ (1250.00 vs the bank's 1205.00): not a conflict across ledgers
    assert internal.result["rows_loaded"] == 20 and internal.result["conflicts"] == 0
    both = stored("acme", txn_id="HDF6513270E269E0D37F2A74DE452E6B438")
    assert sorted((t.ledger, t.amount) for t in both) == [
        ("external", Decimal("1205.00")), ("internal", Decimal("1250.00"))]
    assert count("acme") == 40


def test_rejected_rows_are_recorded_and_the_csv_is_safe_in_a_spreadsheet(client):
    a = sign_up(client, "acme")
    bad = [
        '=HYPERLINK("http://evil.example"),524187366946,abc,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n',
        "+cmd|' /C calc'!A0,524187366947,12.00.00,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n",
        "-2+3,524187366948,-,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n",
        "@SUM(1+1),524187366949,,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n",
    ]
    data = (UPI_HEADER + upi_row(1) + "".join(bad) + upi_row(2)).encode()
    job_id, context = ingest(client, a, data)
    assert context.result == {"rows_read": 6, "rows_loaded": 2, "duplicates": 0, "conflicts": 0, "rejected": 4}
    rows = errors_csv(client, a, job_id)
    assert [row["line"] for row in rows] == ["3", "4", "5", "6"]
    assert {row["kind"] for row in rows} == {"rejected"}
    assert all(row["reason"] for row in rows)
    assert [row["raw"][:2] for row in rows] == ["'=", "'+", "'-", "'@"]
    assert rows[0]["raw"] == "'" + bad[0].rstrip("\n")


def test_a_missing_object_fails_with_not_found_and_no_traceback(client):
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, "uploads/nothing-here.csv")
    context = run_job(job_id)
    assert context.result is None
    assert "not found" in repr(context.failure) and "Traceback" not in repr(context.failure)
    assert type(context.failure).__name__ == "IngestFailed"


def test_a_file_without_header_fails_with_the_parsers_reason(client):
    a = sign_up(client, "acme")
    _, context = ingest(client, a, b"hello,world\n1,2\n3,4\n")
    assert "no recognisable header" in str(context.failure)


def test_a_file_with_no_valid_row_fails_and_keeps_its_rejected_rows(client):
    a = sign_up(client, "acme")
    data = (UPI_HEADER + "X1,524187366946,abc,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n"
            + "X2,524187366947,,x@ok,y@ok,CR,SUCCESS,00,29-08-2025 10:00:00,\n").encode()
    job_id, context = ingest(client, a, data)
    assert "no valid rows" in str(context.failure)
    assert [row["line"] for row in errors_csv(client, a, job_id)] == ["2", "3"]
    assert count("acme") == 0


def test_progress_is_written_on_the_job(client, small_batches):
    a = sign_up(client, "acme")
    job_id, _ = ingest(client, a, upi_file(250))
    job = client.get(f"/jobs/{job_id}", headers=a.headers).get_json()
    assert job["progress"]["done"] == job["progress"]["total"] == 250
    assert "250 rows read, 250 loaded" in job["progress"]["message"]


def test_a_cancelled_job_stops_at_a_checkpoint_between_batches(client, small_batches, monkeypatch):
    from app.scheduling import kinds
    from app.scheduling.models import Job
    from app.tenancy.scoping import system_session

    monkeypatch.setattr(kinds, "PROGRESS_INTERVAL", 0.0)  # ask at every checkpoint

    a = sign_up(client, "acme")
    job_id = enqueued(client, a, uploaded(client, a, upi_file(1000)))
    with system_session() as session:
        session.get(Job, job_id).cancel_requested = True
    context = run_job(job_id)
    assert context.cancelled and context.result is None
    assert count("acme") < 1000


def test_rows_stream_through_several_chunks_and_batches(client, small_batches, monkeypatch):
    from app.ingest import loader

    monkeypatch.setattr(loader, "CHUNK_ROWS", 7)
    monkeypatch.setattr(loader, "QUEUE_CHUNKS", 2)
    a = sign_up(client, "acme")
    _, context = ingest(client, a, upi_file(1234))
    assert context.result["rows_loaded"] == 1234 and count("acme") == 1234


def test_texts_that_need_escaping_in_copy_survive(client):
    a = sign_up(client, "acme")
    header = UPI_HEADER.rstrip("\n") + ",Remarks\n"
    row = upi_row(1).rstrip("\n") + ',"tab\there, back\\slash, new\nline, quote "" and ₹"\n'
    _, context = ingest(client, a, (header + row).encode())
    assert context.result["rows_loaded"] == 1
    assert stored("acme")[0].raw_row["Remarks"] == 'tab\there, back\\slash, new\nline, quote " and ₹'


def test_another_tenant_sees_none_of_the_rows(client):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    ingest(client, a, upi_file(5))
    assert count("acme") == 5 and count("globex") == 0
    _, context = ingest(client, b, upi_file(5))  # the same txn_ids in another tenant: its own rows
    assert context.result["rows_loaded"] == 5 and count("globex") == 5


def test_two_jobs_ingesting_the_same_file_at_once_store_it_once(client, small_batches):
    a = sign_up(client, "acme")
    path = uploaded(client, a, upi_file(600))
    ids = [enqueued(client, a, path), enqueued(client, a, path)]
    results = {}

    def run(job_id):
        results[job_id] = run_job(job_id).result

    threads = [threading.Thread(target=run, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert count("acme") == 600
    assert sum(r["rows_loaded"] for r in results.values()) == 600
    assert sum(r["duplicates"] for r in results.values()) == 600


# -- SQLite, the embedded default ---------------------------------------------------------------


def test_on_sqlite_examples_load_idempotently_with_conflicts_and_both_ledgers(sqlite_app):
    client = sqlite_app.test_client()
    a = sign_up(client, "acme")
    _, first = ingest(client, a, (EXAMPLES / "upi_sample.csv").read_bytes())
    _, again = ingest(client, a, (EXAMPLES / "upi_sample.csv").read_bytes())
    _, internal = ingest(client, a, (EXAMPLES / "upi_ledger.csv").read_bytes(), ledger="internal")
    _, neft = ingest(client, a, (EXAMPLES / "neft_statement.csv").read_bytes(), "NEFT")
    assert first.result == {"rows_read": 20, "rows_loaded": 20, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert again.result == {"rows_read": 20, "rows_loaded": 0, "duplicates": 20, "conflicts": 0, "rejected": 0}
    assert internal.result["rows_loaded"] == 20 and neft.result["rows_loaded"] == 12
    assert count("acme") == 52
    changed = (UPI_HEADER + upi_row(1) + upi_row(1, amount="7.00") + "=1+2,1,abc,,,,,,,\n").encode()
    job_id, context = ingest(client, a, changed)
    assert context.result == {"rows_read": 3, "rows_loaded": 1, "duplicates": 0, "conflicts": 1, "rejected": 1}
    rows = errors_csv(client, a, job_id)
    assert [(row["line"], row["kind"]) for row in rows] == [("3", "conflict"), ("4", "rejected")]
    assert rows[1]["raw"].startswith("'=1+2")


def test_on_sqlite_the_same_local_file_ingested_again_is_recognised_and_not_read(sqlite_app, monkeypatch):
    from app.settings import get_settings

    client = sqlite_app.test_client()
    recognised_again(get_settings(), client, sign_up(client, "acme"), "acme", monkeypatch)


def test_on_sqlite_a_retried_job_loads_each_row_once(sqlite_app, monkeypatch):
    from app.ingest import loader
    from app.settings import Settings, get_settings, use_settings

    use_settings(Settings.load(**{**get_settings().model_dump(), "ingest_batch_rows": 100}))
    client = sqlite_app.test_client()
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, uploaded(client, a, upi_file(250)))
    real_merge, calls = loader._merge, []

    def crash_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(loader, "_merge", crash_on_the_second_batch)
    assert "disk full" in str(run_job(job_id, attempt=1).failure)
    assert count("acme") == 100
    assert run_job(job_id, attempt=2).result["rows_loaded"] == 250
    assert count("acme") == 250
