"""Serving the metrics: ``/metrics`` on the API, and one endpoint per ``dramatiq app.tasks`` command.

Workers follow the conventions of Dramatiq's own Prometheus middleware
(``dramatiq.middleware.prometheus``): each worker process keeps its metrics in
files of a shared folder (prometheus_client's multiprocess mode, switched on
at process boot), one extra process forked by the ``dramatiq`` command serves
them all on one port (9191 unless ``FAIRQ_METRICS_PORT`` says otherwise), and
a worker process that stops is marked dead so its live gauges go. ``fairq up``
runs everything in one process: its metrics stay in memory and ``/metrics`` on
the API's port is its one endpoint.
"""
from __future__ import annotations

import logging
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dramatiq import Middleware

from app.metrics.instruments import enable_multiprocess, instruments, multiprocess_dir
from app.settings import get_settings

__all__ = ["WorkerMetrics", "serve_in_process", "serve_worker_metrics", "render", "CONTENT_TYPE"]

logger = logging.getLogger(__name__)

#: The Prometheus text format's media type (prometheus_client's ``CONTENT_TYPE_LATEST``).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_in_process = False


def serve_in_process() -> None:
    """This process serves its own metrics (``fairq up``): no files, no extra server."""
    global _in_process
    _in_process = True


def _multiprocess() -> bool:
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def render(*, database: bool) -> bytes:
    """This process's metrics (or its whole folder's, in multiprocess mode) in the text format.

    Parameters:
      database: add the gauges read from the database (jobs waiting, in flight, dead; quotas).
    """
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    if _multiprocess():
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # the folder this process was given
        output = generate_latest(registry)
    else:
        output = generate_latest(instruments().registry)
    if database:
        from app.metrics.collector import DatabaseCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(DatabaseCollector())
        output += generate_latest(registry)
    return output


class WorkerMetrics(Middleware):
    """Metrics of ``dramatiq app.tasks`` worker processes (see the module docstring)."""

    @property
    def forks(self):
        """The exposition server, forked once per ``dramatiq`` command (none if the port is 0)."""
        return [serve_worker_metrics] if get_settings().metrics_port and not _in_process else []

    def after_process_boot(self, broker) -> None:
        """Called in each worker process once the broker is imported: metrics go to the shared folder."""
        if not _in_process and get_settings().metrics_port:
            enable_multiprocess(multiprocess_dir())
        instruments()

    def after_worker_shutdown(self, broker, worker) -> None:
        """Called when the worker stopped: its live gauges leave the folder."""
        if not _in_process and _multiprocess():
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), str(multiprocess_dir()))


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        body = render(database=False)
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:  # noqa: A002
        logger.debug(format, *args)


def serve_worker_metrics() -> int:
    """The forked exposition server of a ``dramatiq`` command: the folder's metrics on
    ``FAIRQ_METRICS_HOST:FAIRQ_METRICS_PORT`` until the command stops."""
    from app.logs import adopt_cli_logging

    settings = get_settings()
    adopt_cli_logging(settings.log_level)
    directory = multiprocess_dir()
    enable_multiprocess(directory)
    try:
        server = ThreadingHTTPServer((settings.metrics_host, settings.metrics_port), _Handler)
    except OSError as exc:  # the workers keep working; only their metrics go unserved
        logger.error("cannot serve worker metrics on %s:%d: %s (set FAIRQ_METRICS_PORT)",
                     settings.metrics_host, settings.metrics_port, exc.strerror or exc)
        return 1
    logger.info("worker metrics on http://%s:%d/metrics (from %s)", settings.metrics_host,
                settings.metrics_port, directory)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
