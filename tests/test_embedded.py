"""`fairq up` with no server and no FAIRQ_ variable: how a new user meets fairq."""
import json
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import closing

import pytest

from tests.conftest import clean_env, run_fairq


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


def test_admin_commands_on_a_fresh_embedded_folder_migrate_it_first(tmp_path):
    """Given a folder where fairq never ran (no database yet), when an admin command runs there
    first, it brings the embedded database up to date as `fairq up` does, then does its work."""
    from app import migrate

    env = clean_env()
    created = run_fairq("tenants", "create", "acme", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    assert "Traceback" not in created.stderr and "created acme" in created.stdout
    assert "upgraded the embedded database" in created.stderr
    listed = run_fairq("tenants", "list", env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "acme" in listed.stdout and listed.stderr == ""  # once only
    current = run_fairq("db", "current", env=env, cwd=tmp_path)
    assert f"current: {migrate.head()}" in current.stdout and "up to date" in current.stdout


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


def start_fairq_up(cwd, log, env):
    """`fairq up` on a free port in ``cwd``, its output appended to ``log`` (a pipe nobody reads
    would fill and stop it); returns (base URL, process) once it answers."""
    from tests.conftest import free_port

    port = free_port()
    with open(log, "a") as out:
        process = subprocess.Popen(["fairq", "up", "--port", str(port)], cwd=cwd, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, f"fairq up exited early:\n{log.read_text()}"
        try:
            if get(base + "/healthz")[0] == 200:
                return base, process
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail("fairq up did not answer within 60 s")


def job_states(base, token):
    status, _, body = get(base + "/jobs?limit=200", token=token)
    assert status == 200, body
    return {job["id"]: job for job in json.loads(body)["items"]}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_jobs_a_stopped_fairq_up_left_in_flight_run_promptly_after_a_restart_and_once(tmp_path, sig):
    """The in-process broker's messages go with its process; their jobs' rows stay ``dispatched``
    (and, after a SIGKILL, ``running``). The next `fairq up` on the same folder dispatches them
    again at once — they no longer fill its window until their lease runs out (5 minutes) — and
    no job runs to completion twice."""
    from tests.helpers import wait_for

    env, log = clean_env(FAIRQ_WORKER_THREADS="4"), tmp_path / "fairq.log"
    processes = []
    try:
        # Given a fairq up busy with 40 jobs of 0.3 s
        base, first = start_fairq_up(tmp_path, log, env)
        processes.append(first)
        user = {"tenant_id": "tenant-r", "email": "user@example.com", "password": "secret123"}
        assert get(base + "/register", data=user)[0] == 201
        token = json.loads(get(base + "/login", data=user)[2])["access_token"]
        for _ in range(40):
            assert get(base + "/jobs", data={"kind": "noop", "payload": {"sleep_ms": 300}}, token=token)[0] == 202
        wait_for(lambda: {"running", "dispatched"} <= {j["state"] for j in job_states(base, token).values()},
                 timeout=30, interval=0.02)

        # When it stops (or is killed) with jobs in flight, and starts again
        first.send_signal(sig)
        first.wait(60)
        # read from the database before the restart: the next fairq up may run the few left over
        # before its API first answers
        with closing(sqlite3.connect(tmp_path / ".fairq" / "fairq.db")) as database:
            left = {row[0] for row in database.execute(
                "SELECT id FROM jobs WHERE state IN ('dispatched', 'running')")}
        assert left, "the first fairq up left nothing in flight: the test proves nothing"
        base, second = start_fairq_up(tmp_path, log, env)
        processes.append(second)
        # (its signing key is kept in the folder: the token still holds)

        # Then every job runs, promptly, and none to completion twice
        wait_for(lambda: {j["state"] for j in job_states(base, token).values()} == {"succeeded"},
                 timeout=30, interval=0.2)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        successes = [line["job_id"] for line in lines
                     if line.get("state") == "succeeded" and line.get("message", "").startswith("job ")]
        assert sorted(successes) == sorted(job_states(base, token)), "a job ran to completion twice, or unlogged"
        second.send_signal(signal.SIGTERM)
        assert second.wait(60) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
