"""A ``dramatiq app.tasks`` command on the real servers: one metrics endpoint for its processes, JSON logs."""
import json
import os
import signal
import subprocess
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, free_port
from tests.helpers import sign_up, wait_for
from tests.test_processes import wait_for_output
from tests.test_scheduling_e2e import enqueue, states


def scrape(url: str) -> tuple[str, dict]:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            samples[key] = samples.get(key, 0) + sample.value
    return text, samples


def labels(**values) -> frozenset:
    return frozenset(values.items())


def test_one_endpoint_serves_the_metrics_of_all_worker_processes(client, tmp_path):
    port = free_port()
    env = {**os.environ, "FAIRQ_METRICS_PORT": str(port), "FAIRQ_METRICS_DIR": str(tmp_path / "metrics")}
    process = subprocess.Popen(["dramatiq", "app.tasks", "--processes", "2", "--threads", "2"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = wait_for_output(process, "worker metrics on")
        a, b = sign_up(client, "acme"), sign_up(client, "globex")
        ids = [enqueue(client, a, {"sleep_ms": 20}) for _ in range(6)] + [enqueue(client, b) for _ in range(2)]
        wait_for(lambda: set(states(ids).values()) == {"succeeded"})
        url = f"http://127.0.0.1:{port}/metrics"

        def outcomes(tenant):
            return scrape(url)[1].get(
                ("fairq_job_outcomes_total", labels(tenant=tenant, kind="noop", outcome="succeeded")), 0)

        wait_for(lambda: outcomes("acme") == 6 and outcomes("globex") == 2, timeout=10)
        text, samples = scrape(url)
        assert samples[("fairq_job_wait_seconds_count", labels(tenant="acme", kind="noop"))] == 6
        assert "fairq_jobs_queued" not in text  # database gauges are the API's, never counted twice
        # both processes wrote their counters to the shared folder
        assert len(list((tmp_path / "metrics").glob("counter_*.db"))) == 2
    finally:
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    output += rest
    assert process.returncode == 0, output
    worker_lines = [line for line in output.splitlines()
                    if line.strip() and "[dramatiq.MainProcess]" not in line and "[dramatiq.ForkProcess" not in line]
    parsed = [json.loads(line) for line in worker_lines]  # every worker process line is JSON
    assert any(line["message"] == "Worker process is ready for action." for line in parsed)
    assert any(line.get("state") == "succeeded" and line.get("tenant_id") == "acme" for line in parsed)


def test_a_taken_metrics_port_leaves_the_workers_running(db, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "FAIRQ_METRICS_PORT": str(port), "FAIRQ_METRICS_DIR": str(tmp_path / "metrics")}
        process = subprocess.Popen(["dramatiq", "app.tasks", "--processes", "1", "--threads", "1"], cwd=ROOT,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = wait_for_output(process, "cannot serve worker metrics")
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0 and "Traceback" not in output + rest, output + rest
    assert "Worker process is ready for action." in output + rest
