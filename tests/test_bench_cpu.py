"""bench/cpu.py: the machine's CPU by part, as the fairness benchmark reads it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from bench.cpu import PARTS, Meter, format_row

#: A stand-in for a ``dramatiq`` command: a leader that forks a many-threaded "worker" and a
#: single-threaded "companion", each burning its CPU seconds once told to (a byte on stdin), then
#: saying so and waiting.
COMMAND = textwrap.dedent("""
    import os, sys, threading, time

    def burn(name, seconds):
        os.read(0, 1)
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass
        print(name, flush=True)
        time.sleep(60)

    def worker():
        for _ in range(6):
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        burn("worker", float(sys.argv[1]))

    for role in (worker, lambda: burn("companion", float(sys.argv[2]))):
        if os.fork() == 0:
            role()
            os._exit(0)
    print("started", flush=True)
    time.sleep(60)
""")


def test_the_cpu_of_a_command_is_split_between_its_worker_and_its_companion():
    with subprocess.Popen([sys.executable, "-c", COMMAND, "0.6", "0.3"], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, start_new_session=True, text=True) as command:
        try:
            assert command.stdout.readline().strip() == "started"
            meter = Meter(command.pid).start()
            command.stdin.write("go")  # a byte each
            command.stdin.flush()
            assert {command.stdout.readline().strip() for _ in range(2)} == {"worker", "companion"}
            seconds = meter.stop()
        finally:
            os.killpg(command.pid, signal.SIGKILL)
    # /proc counts in ticks of 10 ms
    assert 0.58 <= seconds["worker"] <= 0.65
    assert 0.28 <= seconds["companion"] <= 0.35
    assert seconds["bench"] >= 0
    assert set(seconds) == set(PARTS)


def test_a_row_gives_each_part_per_job_in_microseconds_and_their_total():
    row = format_row({"worker": 0.5, "postgres": 0.25, "bench": 0.05}, jobs=1000)
    assert row == "500 / 0 / 250 / 0 / 0 / 50 / 0 = 800"
