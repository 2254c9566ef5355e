"""Ingest end to end on the real servers: S3 upload, RabbitMQ worker, PostgreSQL, usage metering."""

import sqlalchemy as sa

from tests.helpers import job_row, sign_up, wait_for
from tests.test_ingest_support import count, enqueued, get_errors, upi_file, uploaded


def rows_metered(tenant_id: str) -> int:
    from app.quota.models import UsageDaily
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        return session.scalar(sa.select(sa.func.coalesce(sa.func.sum(UsageDaily.rows), 0)))



def test_an_uploaded_file_is_ingested_by_a_worker_and_metered(client, worker):
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, uploaded(client, a, upi_file(450) + b"bad,row,here\n"))
    wait_for(lambda: job_row(job_id).state == "succeeded")
    job = client.get(f"/jobs/{job_id}", headers=a.headers).get_json()
    assert job["result"] == {"rows_read": 451, "rows_loaded": 450, "duplicates": 0, "conflicts": 0,
                             "rejected": 1}
    assert job["progress"]["done"] == 451 and job["attempts"] == 1
    assert count("acme") == 450 and rows_metered("acme") == 450
    text = get_errors(client, a, job_id).get_data(as_text=True)
    assert text.splitlines()[1].startswith("452,rejected,")


def test_a_missing_file_fails_with_not_found_without_a_traceback(client, worker):
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, "uploads/never-uploaded.csv")
    wait_for(lambda: job_row(job_id).state == "dead")
    job = job_row(job_id)
    assert "not found" in job.last_error and "Traceback" not in job.last_error
    assert job.attempts == 1  # no retry can make the file appear: it is dead at once
    assert count("acme") == 0


def test_a_job_killed_after_a_batch_is_retried_and_loads_each_row_once(client, worker, monkeypatch):
    from app.ingest import loader

    real_merge, calls = loader._merge, []

    def crash_once_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("connection to the database lost")
        return real_merge(*args, **kwargs)

    monkeypatch.setattr(loader, "_merge", crash_once_on_the_third_batch)
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, uploaded(client, a, upi_file(450)))
    wait_for(lambda: job_row(job_id).state == "succeeded")
    job = job_row(job_id)
    assert job.attempts == 2
    assert job.result == {"rows_read": 450, "rows_loaded": 450, "duplicates": 0, "conflicts": 0, "rejected": 0}
    assert count("acme") == 450 and rows_metered("acme") == 450
