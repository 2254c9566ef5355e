"""Helpers of the ingest tests (no test here): upload, enqueue, run an ingest job, read the table."""
from __future__ import annotations

import io

import sqlalchemy as sa
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"

UPI_HEADER = ("UPI Transaction ID,RRN,Transaction Amount,Payer Vpa,Payee Vpa,DR/CR,Status,"
              "Response Code,Transaction Date,Settlement Date\n")


def upi_row(n: int, *, amount: str = "100.00", status: str = "SUCCESS", rrn: str | None = None) -> str:
    """One clean UPI switch-report row; ``n`` makes its ids."""
    return (f"HDF{n:032X},{rrn or f'5{n:011d}'},{amount},payer{n}@okaxis,shop@okhdfcbank,CR,{status},00,"
            f"29-08-2025 10:{n % 60:02d}:00,30-08-2025\n")


def upi_file(count: int, *, start: int = 0) -> bytes:
    return (UPI_HEADER + "".join(upi_row(n) for n in range(start, start + count))).encode()


def upload(client, who, data: bytes, name: str = "upi.csv"):
    # Encoded here, in memory: the test client would spool a large body to a temporary file
    # that it never closes.
    boundary, body = encode_multipart(MultiDict({"file": FileStorage(io.BytesIO(data), filename=name)}))
    return client.post("/files", data=body, headers=who.headers,
                       content_type=f'multipart/form-data; boundary="{boundary}"')


def uploaded(client, who, data: bytes, name: str = "upi.csv") -> str:
    response = upload(client, who, data, name)
    assert response.status_code == 201, response.get_json()
    return response.get_json()["s3_path"]


def enqueue(client, who, s3_path: str, source: str = "UPI", headers=None, **extra):
    return client.post("/enqueue/ingest", json={"s3_path": s3_path, "source": source, **extra},
                       headers={**who.headers, **(headers or {})})


def enqueued(client, who, s3_path: str, source: str = "UPI", **extra) -> int:
    response = enqueue(client, who, s3_path, source, **extra)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def get_errors(client, who, job_id: int):
    """``GET /jobs/{id}/errors``, read and closed (a streamed response holds its request's session
    until it is closed: the test client does not close it by itself)."""
    with client.get(f"/jobs/{job_id}/errors", headers=who.headers) as response:
        response.get_data()
        return response


def run_job(job_id: int, *, attempt: int = 1):
    """Run the ``ingest`` actor for a job in this thread, as the gate would hand it over.

    Returns the job context: its ``result`` on success, ``failure`` on a failure (with retries
    left, or a ``JobFailed`` that the gate would record as dead at once).
    """
    from app.db import get_db
    from app.scheduling.kinds import JobContext, JobFailed, kinds, set_current_job
    from app.scheduling.models import Job
    from app.scheduling.store import Store
    from app.tenancy.scoping import system_session

    with system_session() as session:
        job = session.get(Job, job_id)
        context = JobContext(job_id=job.id, tenant_id=job.tenant_id, kind=job.kind, payload=job.payload,
                             attempt=attempt, max_retries=job.max_retries, reporter=Store(get_db()))
    set_current_job(context)
    try:
        kinds()["ingest"].actor.fn(job_id)
    except JobFailed as exc:
        context.failure = exc
    finally:
        set_current_job(None)
    return context


def stored(tenant_id: str, **where) -> list:
    """The tenant's transactions (``where``: column equals value), in id order."""
    from app.ingest.models import FintechTransaction
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        query = sa.select(FintechTransaction).order_by(FintechTransaction.id)
        for name, value in where.items():
            query = query.where(getattr(FintechTransaction, name) == value)
        return list(session.scalars(query))


def count(tenant_id: str) -> int:
    from app.ingest.models import FintechTransaction
    from app.tenancy.scoping import tenant_session

    with tenant_session(tenant_id) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(FintechTransaction))
