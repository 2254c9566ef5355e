"""Where a benchmark's CPU goes: every process of the machine, grouped by its part, from ``/proc``.

A throughput benchmark on a 2-core machine measures a ceiling shared by every
process that takes part: the worker, the dispatcher companion, PostgreSQL,
RabbitMQ, Redis and the benchmark itself. :class:`Meter` reads each process's
CPU time (user + system, all threads; ``/proc/<pid>/stat``) at two moments and
reports the difference per job, by part, so that a ratio between two systems
comes with the reason for it.

Processes that start or end between the two readings count only for the time
seen in both (a PostgreSQL backend of a connection opened and closed between
them is missed); the benchmarks keep their connections open for a whole run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Meter", "PARTS", "format_row", "header"]

#: The parts reported, in order.
PARTS = ("worker", "companion", "postgres", "rabbitmq", "redis", "bench", "other")
_TICK = os.sysconf("SC_CLK_TCK")
#: Process names (``comm``) of each server.
_SERVERS = {"postgres": "postgres", "beam.smp": "rabbitmq", "erl_child_setup": "rabbitmq", "epmd": "rabbitmq",
            "redis-server": "redis"}


@dataclass(frozen=True)
class _Process:
    pid: int
    comm: str
    group: int
    threads: int
    seconds: float


def _processes() -> dict[int, _Process]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()  # fields[0] is the state (field 3 of proc(5))
        found[int(entry.name)] = _Process(
            pid=int(entry.name), comm=comm, group=int(fields[2]), threads=int(fields[17]),
            seconds=(int(fields[11]) + int(fields[12])) / _TICK)
    return found


class Meter:
    """CPU seconds by part between :meth:`start` and :meth:`stop`.

    Parameters:
      worker_group: the process group of the ``dramatiq`` command measured (a session of its own,
        see ``bench.support.start_worker``). In it, the process with the most threads is the
        worker process; the others but the group's leader (the ``dramatiq`` command itself,
        counted as ``other``) are its forks: fairq's dispatcher companion.
    """

    def __init__(self, worker_group: int) -> None:
        self.worker_group = worker_group
        self._before: dict[int, _Process] = {}
        self.seconds: dict[str, float] = {}

    def start(self) -> "Meter":
        self._before = _processes()
        return self

    def stop(self) -> dict[str, float]:
        after = _processes()
        in_group = [p for p in after.values() if p.group == self.worker_group and p.pid != self.worker_group]
        worker = max(in_group, key=lambda p: p.threads).pid if in_group else None
        seconds = dict.fromkeys(PARTS, 0.0)
        for pid, process in after.items():
            before = self._before.get(pid)
            if before is None or before.comm != process.comm:
                continue
            seconds[self._part(process, worker)] += process.seconds - before.seconds
        self.seconds = seconds
        return seconds

    def _part(self, process: _Process, worker: int | None) -> str:
        if process.pid == os.getpid():
            return "bench"
        if process.group == self.worker_group and process.pid != self.worker_group:
            return "worker" if process.pid == worker else "companion"
        return _SERVERS.get(process.comm, "other")


def header() -> str:
    """The column heads of :func:`format_row`."""
    return "µs of CPU per job: " + " / ".join(PARTS) + " = total"


def format_row(seconds: dict[str, float], jobs: int) -> str:
    """Each part's CPU per job in µs, and their total."""
    per_job = {part: seconds.get(part, 0.0) / max(1, jobs) * 1e6 for part in PARTS}
    return " / ".join(f"{per_job[part]:.0f}" for part in PARTS) + f" = {sum(per_job.values()):,.0f}"
