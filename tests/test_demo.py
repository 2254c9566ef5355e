"""`fairq up --demo` on the embedded default: what a new user sees first, checked through the API."""
import json
import re
import signal
import subprocess
import threading
import time

from tests.conftest import clean_env, free_port, run_fairq
from tests.test_embedded import get

#: A credentials line the demo prints.
ACCOUNT = re.compile(r"tenant_id=(\S+)\s+email=(\S+)\s+password=(\S+)")


class Demo:
    """`fairq up --demo` in a subprocess; its output is read as it comes (the JSON logs are many)."""

    def __init__(self, cwd) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            ["fairq", "up", "--demo", "--port", str(self.port)], cwd=cwd, env=clean_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    def said(self) -> list[str]:
        """The demo's own lines (not the JSON log lines)."""
        return [line.rstrip() for line in list(self.lines) if not line.startswith("{")]

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.said():
                found = re.search(pattern, line)
                if found:
                    return found
            assert self.process.poll() is None, "\n".join(self.said())
            time.sleep(0.05)
        raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.said()))

    def accounts(self) -> dict[str, tuple[str, str]]:
        """tenant id -> (email, password), as printed."""
        return {m[1]: (m[2], m[3]) for m in (ACCOUNT.search(line) for line in self.said()) if m}

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=10)
            self.process.stdout.close()
        assert self.process.returncode == 0, "\n".join(self.said())
        assert "fairq stopped." in self.said()


def log_in(base: str, tenant_id: str, email: str, password: str) -> tuple[int, str | None]:
    status, _, body = get(base + "/login", data={"tenant_id": tenant_id, "email": email, "password": password})
    return status, json.loads(body).get("access_token") if status == 200 else None


def poll(read, until, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if until(value):
            return value
        assert time.monotonic() < deadline, value
        time.sleep(0.05)


def jobs(base: str, token: str, query: str) -> list[dict]:
    status, _, body = get(f"{base}/jobs?{query}", token=token)
    assert status == 200, body
    return json.loads(body)["items"]


def check_one_run(demo: Demo) -> tuple[str, dict[str, tuple[str, str]], dict[str, str]]:
    """Everything the demo promises, for one run; returns its base URL, the printed accounts
    (tenant id -> (email, password)) and an access token for each tenant id."""
    base = demo.wait_for(r"demo: dashboard (http://\S+)/ui/admin/fair-share")[1]
    accounts = demo.accounts()
    assert set(accounts) == {"demo-busy", "demo-small", "_platform"}
    tokens = {}
    for tenant_id, (email, password) in accounts.items():
        status, tokens[tenant_id] = log_in(base, tenant_id, email, password)
        assert status == 200, (tenant_id, email)
    small, busy = tokens["demo-small"], tokens["demo-busy"]

    # The small tenant's ten jobs all succeed while the flood still has jobs waiting: they never
    # waited behind it (first-in-first-out would have run all of the flood first).
    noop = poll(lambda: jobs(base, small, "kind=noop&limit=10"),
                lambda items: len(items) == 10 and all(j["state"] == "succeeded" for j in items))
    assert jobs(base, busy, "state=queued&limit=1"), "the flood had finished before the small tenant's jobs"
    done, total = demo.wait_for(r"demo-small's 10 jobs are done .* has ([\d,]+) of ([\d,]+) done").groups()
    assert int(done.replace(",", "")) < int(total.replace(",", "")) == 3000
    assert max(j["finished_at"] for j in noop) <= poll(
        lambda: jobs(base, busy, "limit=1")[0], lambda j: j["state"] == "succeeded", timeout=90)["finished_at"]

    demo.wait_for(r"demo-small's work is done", timeout=90)
    ingests = jobs(base, small, "kind=ingest&limit=4")
    assert [j["state"] for j in ingests] == ["succeeded"] * 4
    assert all(j["result"]["rows_read"] > 0 and j["result"]["rejected"] == 0 for j in ingests), ingests
    runs = jobs(base, small, "kind=reconcile&limit=2")
    assert len(runs) == 2
    for job in runs:
        status, _, body = get(f"{base}/reconciliation-runs/{job['result']['run_id']}", token=small)
        run = json.loads(body)
        assert status == 200 and run["state"] == "succeeded", run
        assert run["summary"]["total_breaks"] > 0 and run["summary"]["matched"]["count"] > 0, run
    status, _, body = get(f"{base}/campaigns?limit=1", token=small)
    campaign = json.loads(body)["items"][0]
    status, _, body = get(f"{base}/campaigns/{campaign['id']}", token=small)
    shown = json.loads(body)
    assert shown["status"] == "completed"
    assert shown["counts"] == {"recipients": 3, "delivered": 3, "failed": 0, "retrying": 0}

    # The operator sees both tenants; the dashboard URL asks who is there.
    status, _, body = get(base + "/admin/tenants", token=tokens["_platform"])
    assert status == 200 and {"demo-busy", "demo-small"} <= {t["id"] for t in json.loads(body)["items"]}
    status, _, _ = get(base + "/ui/admin/fair-share")
    assert status == 200  # the login page (urllib follows the redirect)
    return base, accounts, tokens


def test_fairq_up_demo_seeds_and_runs_again_on_the_same_folder(tmp_path):
    first = Demo(tmp_path)
    try:
        base, before, tokens = check_one_run(first)
        ingested = jobs(base, tokens["demo-small"], "kind=ingest&limit=4")
        assert sum(j["result"]["rows_loaded"] for j in ingested) > 0
    finally:
        first.stop()

    # Given the same folder, when the demo runs again: the tenants are reused, the passwords reset.
    second = Demo(tmp_path)
    try:
        base, after, _ = check_one_run(second)
        assert sum("exists from an earlier run: its password is reset" in line for line in second.said()) == 3
        email, old = before["demo-busy"]
        assert after["demo-busy"][1] != old
        assert log_in(base, "demo-busy", email, old)[0] == 401
    finally:
        second.stop()


def test_fairq_up_demo_refuses_real_servers_with_exit_code_2(tmp_path):
    # The test process's environment points at the real servers.
    result = run_fairq("up", "--demo", "--port", str(free_port()), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--demo runs on the embedded default only" in result.stderr
    assert "database" in result.stderr
