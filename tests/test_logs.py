"""JSON logs: one line per job state change with its ids, and no secret in any line."""
import io
import json
import logging

import pytest

from app.logs import MASK, configure_logging, redact
from tests.helpers import bearer, login, sign_up, wait_for
from tests.test_scheduling_e2e import enqueue, states


@pytest.fixture
def log_lines():
    """Everything the process logs (DEBUG and up) from now on; returns a reader of the JSON lines."""
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)

    def read(raw: bool = False):
        text = stream.getvalue()
        return text if raw else [json.loads(line) for line in text.splitlines()]

    yield read
    configure_logging("INFO")


def test_passwords_tokens_and_secrets_never_reach_a_log_line(client, real_settings, log_lines):
    password = "Tr0ub4dor-and-3-horses"
    admin = sign_up(client, "acme", "admin@acme.example", password)
    assert client.post("/login", json={"tenant_id": "acme", "email": "admin@acme.example",
                                       "password": password + "-wrong"}).status_code == 401
    again = login(client, "acme", "admin@acme.example", password)
    assert client.get("/me", headers=admin.headers).status_code == 200
    assert client.post("/refresh", headers=bearer(again.refresh_token)).status_code == 200
    assert client.post("/logout", headers=admin.headers).status_code == 204
    assert client.get("/me", headers=admin.headers).status_code == 401  # a revoked token, logged as refused
    assert client.post("/jobs", json={"kind": "noop", "payload": {"password": password}},
                       headers=again.headers).status_code == 202
    # careless lines: a token in a message, a URL with its password, a secret in an exception
    careless = logging.getLogger("app.careless")
    careless.info("calling the API with Authorization: Bearer %s", again.access_token)
    careless.warning("retrying %s", "postgresql://fairq:hunter2-db-pass@db.internal/fairq")
    jwt_secret = real_settings.jwt_secret.get_secret_value()
    try:
        raise RuntimeError(f"could not sign with {jwt_secret}")
    except RuntimeError:
        careless.exception("signing failed", extra={"token": again.refresh_token})

    text = log_lines(raw=True)
    assert "POST /login 401" in text and "signing failed" in text  # the flows were logged
    for secret in (password, admin.access_token, again.access_token, again.refresh_token, jwt_secret,
                   real_settings.s3_secret_access_key.get_secret_value(), "hunter2-db-pass"):
        assert secret not in text
    assert text.count(MASK) >= 4
    assert all(isinstance(line, dict) for line in log_lines())


def test_redact_masks_jwts_bearer_tokens_url_passwords_and_known_secrets():
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhY21lIn0.c2lnbmF0dXJl"
    line = f'{{"message": "token {jwt} for amqp://user:p4ss@mq/%2F, Bearer abc.def; key s3-key-123456"}}'
    cleaned = redact(line, ("s3-key-123456",))
    assert "p4ss" not in cleaned and jwt not in cleaned and "abc.def" not in cleaned and "s3-key" not in cleaned
    assert "amqp://user:" in cleaned and "@mq" in cleaned  # what is not secret stays readable
    assert redact("nothing to hide here") == "nothing to hide here"


def test_each_job_state_change_is_one_line_with_the_job_and_tenant(client, worker, log_lines):
    a = sign_up(client, "acme")
    job_id = enqueue(client, a, {"fail_attempts": 1})
    wait_for(lambda: states([job_id])[job_id] == "succeeded")
    wait_for(lambda: any(line.get("state") == "succeeded" and line.get("job_id") == job_id for line in log_lines()))
    lines = [line for line in log_lines() if line.get("job_id") == job_id]
    changes = [line["state"] for line in lines if "state" in line]
    # the dispatcher logs "dispatched" after the publish's confirm (in its own process, under
    # dramatiq app.tasks): a quick worker's "running", even its outcome, may come first
    assert sorted(changes) == sorted(["queued", "dispatched", "running", "failed", "dispatched", "running",
                                      "succeeded"])
    worker_side = [change for change in changes if change != "dispatched"]
    assert worker_side == ["queued", "running", "failed", "running", "succeeded"]
    assert all(line["tenant_id"] == "acme" for line in lines)
    # the job's own lines (here: the attempt that failed) carry its ids too
    own = [line for line in lines if "will retry" in line["message"]]
    assert own and own[0]["logger"] == "app.scheduling.kinds"
    queued = next(line for line in lines if line.get("state") == "queued")
    assert queued["request_id"] and queued["user_id"]  # enqueued by a request of a user


def test_gunicorns_own_lines_go_through_the_json_handler():
    server = logging.getLogger("gunicorn.error")
    gunicorns = io.StringIO()
    server.addHandler(logging.StreamHandler(gunicorns))  # what gunicorn sets up in each worker
    server.propagate = False
    ours = io.StringIO()
    try:
        configure_logging("INFO", stream=ours)  # what create_app does then
        server.info("Worker exiting (pid: %s)", 42)
    finally:
        server.handlers.clear()
        server.propagate = True
        configure_logging("INFO")
    assert gunicorns.getvalue() == ""
    line = json.loads(ours.getvalue().splitlines()[-1])
    assert (line["logger"], line["message"]) == ("gunicorn.error", "Worker exiting (pid: 42)")
