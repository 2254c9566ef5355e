"""The deployable processes start against the real servers and stop cleanly."""
import signal
import subprocess
import time
import urllib.request

import pytest

from tests.conftest import ROOT, free_port


def wait_for_output(process, needle, timeout=60):
    """Read the process's merged output until ``needle`` appears; returns what was read."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return "".join(seen)
    process.kill()
    pytest.fail(f"{needle!r} never appeared:\n{''.join(seen)}")


def start(*command):
    return subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def stop(process, sig=signal.SIGTERM, timeout=60):
    process.send_signal(sig)
    output, _ = process.communicate(timeout=timeout)
    return output


def test_dramatiq_worker_starts_and_stops_cleanly(real_settings):
    process = start("dramatiq", "app.tasks", "--processes", "1", "--threads", "2")
    wait_for_output(process, "is ready for action")
    output = stop(process)
    assert process.returncode == 0, output
    assert "Traceback" not in output


def test_periodiq_scheduler_starts_and_stops_cleanly(real_settings):
    process = start("periodiq", "-v", "app.tasks")
    output = wait_for_output(process, "purge_periodic_runs")
    output += stop(process, signal.SIGINT)
    assert "No periodic actor" not in output
    # periodiq's own way to stop: it logs "Interrupted." and exits with 1 on SIGINT
    assert "Interrupted." in output and "Traceback" not in output, output


def test_gunicorn_serves_wsgi_app(real_settings):
    port = free_port()
    process = start("gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1", "wsgi:app")
    wait_for_output(process, "Booting worker")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                assert response.status == 200
                assert response.headers["X-Request-ID"]
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    output = stop(process)
    assert process.returncode == 0, output
