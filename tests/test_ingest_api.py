"""The ingest API: uploads and their limits, enqueue checks, paths, tenants, idempotency keys."""
import pytest

from tests.helpers import assert_cross_tenant_404, sign_up
from tests.test_ingest_support import (
    enqueue,
    enqueued,
    get_errors,
    run_job,
    upi_file,
    upload,
    uploaded,
)


def test_an_upload_is_stored_under_the_tenants_folder(client, real_settings):
    from app.storage import make_store

    a = sign_up(client, "acme")
    response = upload(client, a, b"x,y\n1,2\n", name="../../Aug report (final).csv")
    assert response.status_code == 201
    path = response.get_json()["s3_path"]
    assert path.startswith("uploads/") and path.endswith("-Aug_report_final.csv") and ".." not in path
    assert response.get_json()["size"] == 8
    with make_store(real_settings).open(f"tenants/acme/{path}") as stream:
        assert stream.read() == b"x,y\n1,2\n"


def test_an_empty_upload_is_400_and_stores_nothing(client, real_settings):
    from app.storage import make_store

    a = sign_up(client, "acme")
    response = upload(client, a, b"")
    assert response.status_code == 400
    assert response.get_json()["type"] == "/problems/empty-file"
    s3 = make_store(real_settings).client
    assert s3.list_objects_v2(Bucket=real_settings.s3_bucket).get("KeyCount", 0) == 0


def test_an_upload_without_a_file_is_400(client):
    a = sign_up(client, "acme")
    response = client.post("/files", data={"other": "x"}, headers=a.headers, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"


def test_uploads_have_their_own_limit_above_the_json_one(real_settings):
    from app import create_app
    from app.settings import Settings

    settings = Settings.load(**{**real_settings.model_dump(), "max_upload_bytes": 64 * 1024})
    client = create_app(settings).test_client()
    a = sign_up(client, "acme")
    # Given a JSON limit of 1 MiB and an upload limit of 64 KiB
    assert upload(client, a, b"a" * 60_000).status_code == 201
    too_big = upload(client, a, b"a" * 70_000)
    assert too_big.status_code == 413
    assert too_big.mimetype == "application/problem+json"
    assert too_big.get_json()["type"] == "/problems/payload-too-large"
    # the JSON limit still holds for other requests
    big_json = client.post("/enqueue/ingest", json={"s3_path": "x" * 2_000_000, "source": "UPI"},
                           headers=a.headers)
    assert big_json.status_code == 413


def test_an_upload_above_the_json_limit_is_accepted(client):
    a = sign_up(client, "acme")
    assert upload(client, a, upi_file(5000)).status_code == 201  # about 1.4 MB


def test_enqueue_answers_202_with_location_and_a_queued_ingest_job(client):
    a = sign_up(client, "acme")
    path = uploaded(client, a, upi_file(3))
    response = enqueue(client, a, path, "upi", tenant_id="acme", priority="high", ledger="internal")
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    assert response.headers["Location"].endswith(f"/jobs/{job_id}")
    job = client.get(f"/jobs/{job_id}", headers=a.headers).get_json()
    assert (job["kind"], job["state"], job["priority"]) == ("ingest", "queued", "high")


def test_another_tenant_id_in_the_body_is_403_tenant_mismatch(client):
    a = sign_up(client, "acme")
    sign_up(client, "globex")
    response = enqueue(client, a, "upi.csv", tenant_id="globex")
    assert response.status_code == 403
    assert response.get_json()["type"].endswith("tenant-mismatch")


def test_an_unknown_source_is_400_listing_the_installed_ones(client):
    a = sign_up(client, "acme")
    response = enqueue(client, a, "upi.csv", "SWIFT")
    assert response.status_code == 400
    body = response.get_json()
    assert body["type"] == "/problems/unknown-source"
    assert {"UPI", "NEFT", "IMPS", "RTGS"} <= set(body["sources"])
    assert "UPI" in body["detail"] and "NEFT" in body["detail"]


@pytest.mark.parametrize("source", ["neft", "Imps", "RTGS", " upi "])
def test_sources_are_case_insensitive_and_aliases_work(client, source):
    a = sign_up(client, "acme")
    assert enqueue(client, a, "statement.csv", source).status_code == 202


@pytest.mark.parametrize(
    ("s3_path", "status"),
    [
        ("../globex/uploads/x.csv", 400),
        ("uploads/../../globex/x.csv", 400),
        ("uploads/%2e%2e/%2E%2E/globex/x.csv", 400),
        ("/tenants/globex/x.csv", 400),
        ("/etc/passwd", 400),
        ("s3://other-bucket/tenants/acme/x.csv", 400),
        ("https://example.com/x.csv", 400),
        ("file:///etc/passwd", 400),
        ("C:\\data\\x.csv", 400),
        ("uploads\\..\\x.csv", 400),
        ("uploads//x.csv", 400),
        ("./x.csv", 400),
        ("x.csv\x00.txt", 400),
        ("~/x.csv", 400),
        ("", 400),
        ("tenants/globex/uploads/x.csv", 403),
    ],
)
def test_paths_outside_the_tenants_folder_are_refused_before_anything_is_read(client, monkeypatch, s3_path, status):
    from app import storage

    def no_reading(*_args, **_kwargs):
        raise AssertionError("the store was touched")

    for store in (storage.S3Store, storage.LocalStore):
        for method in ("open", "exists", "put"):
            monkeypatch.setattr(store, method, no_reading)
    a = sign_up(client, "acme")
    response = enqueue(client, a, s3_path)
    assert response.status_code == status, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert client.get("/jobs", headers=a.headers).get_json()["items"] == []


def test_the_tenants_own_full_prefix_is_taken_as_relative(client):
    a = sign_up(client, "acme")
    job_id = enqueued(client, a, "tenants/acme/uploads/x.csv")
    assert client.get(f"/jobs/{job_id}", headers=a.headers).get_json()["kind"] == "ingest"


def test_a_tampered_payload_is_checked_again_in_the_job(client):
    from app.scheduling.models import Job
    from app.tenancy.scoping import system_session

    a = sign_up(client, "acme")
    job_id = enqueued(client, a, "upi.csv")
    with system_session() as session:  # as if the payload were changed after the enqueue
        session.get(Job, job_id).payload = {"s3_path": "../globex/upi.csv", "source": "UPI"}
    context = run_job(job_id)
    assert context.result is None and "'..'" in str(context.failure)


def test_the_same_idempotency_key_gives_the_same_job(client):
    a = sign_up(client, "acme")
    first = enqueue(client, a, "upi.csv", headers={"Idempotency-Key": "k-1"})
    again = enqueue(client, a, "upi.csv", headers={"Idempotency-Key": "k-1"})
    other = enqueue(client, a, "upi.csv", headers={"Idempotency-Key": "k-2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert first.get_json()["job_id"] == again.get_json()["job_id"] != other.get_json()["job_id"]


def test_over_the_rows_quota_the_enqueue_is_429(real_settings, db):
    from app import create_app
    from app.db import utcnow
    from app.scheduling.store import add_usage
    from app.settings import Settings
    from app.tenancy import service
    from app.tenancy.scoping import tenant_session

    settings = Settings.load(**{**real_settings.model_dump(), "plans": {"tiny": {"rows_per_day": 100}}})
    client = create_app(settings).test_client()
    a = sign_up(client, "acme")
    service.update_tenant("acme", service.TenantChanges(plan="tiny"))
    assert enqueue(client, a, "upi.csv").status_code == 202
    with tenant_session("acme") as session:  # 100 rows loaded today already
        add_usage(session.connection(), tenant_id="acme", kind="ingest", day=utcnow().date(), rows=100)
    refused = enqueue(client, a, "upi.csv")
    assert refused.status_code == 429
    assert refused.get_json()["quota"] == "rows_per_day"


def test_operators_and_anonymous_callers_do_not_ingest(client):
    from app.tenancy import service
    from tests.helpers import PASSWORD, login

    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="o@f.example", password=PASSWORD)
    ops = login(client, "_platform", "o@f.example")
    assert enqueue(client, ops, "upi.csv").status_code == 403
    assert upload(client, ops, b"x").status_code == 403
    assert client.post("/enqueue/ingest", json={"s3_path": "x.csv", "source": "UPI"}).status_code == 401
    assert client.post("/files").status_code == 401
    assert client.get("/jobs/1/errors").status_code == 401


def test_another_tenant_never_reaches_an_ingest_job_or_its_errors(client):
    a, b = sign_up(client, "acme"), sign_up(client, "globex")
    path = uploaded(client, a, upi_file(2) + b"bad,row\n")
    job_id = enqueued(client, a, path)
    run_job(job_id)
    assert get_errors(client, a, job_id).status_code == 200
    assert_cross_tenant_404(client, "GET", f"/jobs/{job_id}/errors", other=b)
    assert_cross_tenant_404(client, "GET", f"/jobs/{job_id}", other=b)
    # nor its file: the same relative path from another tenant reads that tenant's folder
    other_job = enqueued(client, b, path)
    context = run_job(other_job)
    assert "not found" in str(context.failure)


def test_errors_of_a_job_that_is_not_an_ingest_is_404(client):
    a = sign_up(client, "acme")
    job_id = client.post("/jobs", json={"kind": "noop"}, headers=a.headers).get_json()["job_id"]
    response = get_errors(client, a, job_id)
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    assert get_errors(client, a, 999999).status_code == 404


def test_the_ingest_endpoints_are_in_the_openapi_description(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert {"/files", "/enqueue/ingest", "/jobs/{job_id}/errors"} <= set(paths)
