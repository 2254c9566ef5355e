"""`fairq up` with no server and no FAIRQ_ variable: how a new user meets fairq."""
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import clean_env


def get(url, *, data=None, token=None):
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_fairq_up_serves_the_api_on_the_embedded_default(fairq_up):
    base, process, cwd = fairq_up
    status, _, body = get(base + "/readyz")
    assert status == 200, body
    components = {check["component"] for check in json.loads(body)["checks"]}
    assert components == {"SQLite", "in-process broker", "in-memory limits", "local folder"}
    # the database was created and migrated under ./.fairq
    assert (cwd / ".fairq" / "fairq.db").is_file()

    status, headers, body = get(base + "/no-such-page")
    assert status == 404
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(body)["type"] == "/problems/not-found"

    status, _, body = get(base + "/openapi.json")
    assert status == 200 and "/readyz" in json.loads(body)["paths"]


def test_the_seed_register_and_login_lines_on_the_embedded_default(fairq_up):
    base, _, cwd = fairq_up
    user = {"tenant_id": "tenant-123", "email": "user@example.com", "password": "secret123"}
    status, _, body = get(base + "/register", data=user)
    assert status == 201, body
    assert json.loads(body)["role"] == "admin"
    status, _, body = get(base + "/login", data=user)
    assert status == 200, body
    tokens = json.loads(body)
    assert tokens["token_type"] == "Bearer"
    status, _, body = get(base + "/me", token=tokens["access_token"])
    assert status == 200 and json.loads(body)["tenant_id"] == "tenant-123"
    # the embedded default made its own signing key, readable by its owner only
    assert (cwd / ".fairq" / "jwt-secret").stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_fairq_up_stops_cleanly_on_a_signal(fairq_up, sig):
    _, process, _ = fairq_up
    process.send_signal(sig)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "fairq stopped." in output
    assert "Traceback" not in output


def test_fairq_up_refuses_a_taken_port_with_exit_code_2(fairq_up, tmp_path):
    base, _, _ = fairq_up
    port = base.rsplit(":", 1)[1]
    result = subprocess.run(
        ["fairq", "up", "--port", port], cwd=tmp_path, env=clean_env(),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr


def test_fairq_up_has_one_metrics_endpoint_on_the_embedded_default(fairq_up):
    base, _, _ = fairq_up
    user = {"tenant_id": "tenant-9", "email": "user@example.com", "password": "secret123"}
    assert get(base + "/register", data=user)[0] == 201
    token = json.loads(get(base + "/login", data=user)[2])["access_token"]
    status, _, body = get(base + "/jobs", data={"kind": "noop"}, token=token)
    assert status == 202, body
    job_id = json.loads(body)["job_id"]
    deadline = time.monotonic() + 30
    while json.loads(get(f"{base}/jobs/{job_id}", token=token)[2])["state"] != "succeeded":
        assert time.monotonic() < deadline, "the job never ran"
        time.sleep(0.1)
    status, headers, body = get(base + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    text = body.decode()
    # the API's, the workers' and the database's metrics, all on the API's port
    assert 'fairq_jobs_enqueued_total{kind="noop",tenant="tenant-9"} 1.0' in text
    assert 'fairq_job_outcomes_total{kind="noop",outcome="succeeded",tenant="tenant-9"} 1.0' in text
    assert "# TYPE fairq_jobs_queued gauge" in text
