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


def test_spread_binds_each_worker_process_and_all_its_threads_to_a_cpu_of_its_own(real_settings, monkeypatch):
    import os
    import re
    from pathlib import Path

    from app.scheduling.affinity import cpu_for

    allowed = os.sched_getaffinity(0)
    monkeypatch.setenv("FAIRQ_WORKER_CPU_AFFINITY", "spread")
    process = start("dramatiq", "app.tasks", "--processes", "2", "--threads", "2")
    try:
        output = wait_for_output(process, "is ready for action")
        while len(re.findall(r"worker process \d \(pid \d+\) bound", output)) < 2:
            output += wait_for_output(process, "bound to CPU")
        bound = {int(index): (int(pid), int(cpu)) for index, pid, cpu
                 in re.findall(r"worker process (\d) \(pid (\d+)\) bound to CPU (\d+)", output)}
        assert {index: cpu for index, (_, cpu) in bound.items()} == {0: cpu_for(0, allowed), 1: cpu_for(1, allowed)}
        for pid, cpu in bound.values():
            threads = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            assert len(threads) > 2  # its consumer and worker threads, started after the binding
            assert all(os.sched_getaffinity(t) == {cpu} for t in threads)
        # the command itself and its forks (the dispatcher companion, metrics) stay free
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        others = [int(c) for c in children if int(c) not in {pid for pid, _ in bound.values()}]
        assert all(os.sched_getaffinity(pid) == allowed for pid in [process.pid, *others])
    finally:
        output = stop(process)
    assert process.returncode == 0, output


def test_worker_processes_are_left_to_the_kernel_by_default(real_settings):
    process = start("dramatiq", "app.tasks", "--processes", "1", "--threads", "2")
    try:
        output = wait_for_output(process, "is ready for action")
    finally:
        output += stop(process)
    assert "bound to CPU" not in output


def test_the_cpu_of_each_worker_process_wraps_around_the_cpus_it_may_use():
    from app.scheduling.affinity import cpu_for, worker_index

    assert [cpu_for(i, {4, 1}) for i in range(5)] == [1, 4, 1, 4, 1]
    assert worker_index() is None  # not a process Dramatiq started as a worker: never bound
