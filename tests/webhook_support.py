"""For webhook tests: a receiver on loopback that verifies signatures and fails on demand,
and names that resolve where a test says."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def fake_dns(monkeypatch, names: dict[str, str]) -> None:
    """Make ``names`` resolve to the given addresses (every other name resolves as usual)."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class Receiver:
    """A webhook receiver on 127.0.0.1: answers ``fail_status`` to the first ``fail_first`` calls,
    then 200; checks every call's HMAC-SHA256 signature with ``secret`` as a receiver would."""

    def __init__(self, *, fail_first: int = 0, fail_status: int = 503, delay: float = 0.0) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.delay = delay
        self.secret: str | None = None
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                expected = "sha256=" + hmac.new((receiver.secret or "").encode(), body, hashlib.sha256).hexdigest()
                valid = hmac.compare_digest(expected, self.headers.get("X-Fairq-Signature", ""))
                with receiver.lock:
                    receiver.calls.append({"body": json.loads(body), "valid": valid,
                                           "delivery": self.headers.get("X-Fairq-Delivery")})
                    failing = len(receiver.calls) <= receiver.fail_first
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                self.send_response(401 if not valid else receiver.fail_status if failing else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def successes(self) -> list[dict]:
        with self.lock:
            return [c for i, c in enumerate(self.calls) if i >= self.fail_first and c["valid"]]
