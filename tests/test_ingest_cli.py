"""fairq ingest FILE --tenant T --source S: upload, enqueue, follow the job."""
import os
import subprocess

from app.tenancy import service
from tests.conftest import ROOT


def fairq(real_settings, *args):
    env = {**os.environ,
           "FAIRQ_S3_ENDPOINT_URL": real_settings.s3_endpoint_url, "FAIRQ_S3_BUCKET": real_settings.s3_bucket,
           "FAIRQ_S3_ACCESS_KEY_ID": "testing", "FAIRQ_S3_SECRET_ACCESS_KEY": "testing"}
    return subprocess.run(["fairq", *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_ingest_a_file_and_follow_it(real_settings, worker):
    service.create_tenant("acme")
    result = fairq(real_settings, "ingest", "examples/upi_sample.csv", "--tenant", "acme", "--source", "upi")
    assert result.returncode == 0, result.stderr
    assert "job 1 queued" in result.stdout
    assert "rows_loaded" in result.stdout and "rejected 0" in result.stdout


def test_bad_input_exits_2(real_settings, db):
    service.create_tenant("acme")
    unknown = fairq(real_settings, "ingest", "examples/upi_sample.csv", "--tenant", "acme", "--source", "SWIFT",
                    "--no-wait")
    assert unknown.returncode == 2 and "UPI" in unknown.stderr  # lists the installed sources
    nobody = fairq(real_settings, "ingest", "examples/upi_sample.csv", "--tenant", "nope", "--source", "UPI")
    assert nobody.returncode == 2 and "no tenant nope" in nobody.stderr
