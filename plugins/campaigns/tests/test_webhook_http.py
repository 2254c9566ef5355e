"""Webhook posts: the signature, what is retried, and destinations refused at connection time."""
import hashlib
import hmac
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.hooks import DeliveryError, campaigns
from fairq_campaigns import http


@dataclass
class Target:
    url: str
    secret: str = "s3cret-s3cret-s3cret"
    allowed_hosts: tuple = ("127.0.0.1",)
    timeout: float = 0.5


@pytest.fixture
def server():
    """A loopback server; ``server.answer`` is (status, delay, headers) for every POST."""
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append((dict(self.headers), self.rfile.read(int(self.headers["Content-Length"]))))
            status, delay, headers = httpd.answer
            time.sleep(delay)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.answer = (200, 0, {})
    httpd.seen = seen
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_post_is_signed_over_its_body(server):
    assert http.post_signed(Target(server.url), b'{"a":1}', delivery_id="1:1:0") == 200
    headers, body = server.seen[0]
    expected = "sha256=" + hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-Fairq-Signature"] == expected and headers["X-Fairq-Delivery"] == "1:1:0"
    assert http.sign("other", body) != expected


@pytest.mark.parametrize("answer, retryable", [
    ((500, 0, {}), True), ((503, 0, {}), True), ((200, 2, {}), True),  # 5xx and timeouts: retried
    ((400, 0, {}), False), ((404, 0, {}), False), ((429, 0, {}), False),
    ((302, 0, {"Location": "http://169.254.169.254/"}), False),  # a redirect is not followed
])
def test_what_is_retried(server, answer, retryable):
    server.answer = answer
    with pytest.raises(DeliveryError) as failed:
        http.post_signed(Target(server.url), b"{}", delivery_id="1:1:0")
    assert failed.value.retryable is retryable
    assert len(server.seen) == 1


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/hook", "http://169.254.169.254/latest/meta-data/", "http://10.0.0.7/hook",
    "http://[::1]:{port}/hook", "http://rebind.example.com:{port}/hook", "http://localhost:{port}/hook",
])
def test_private_destinations_are_refused_before_connecting(server, monkeypatch, url):
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):  # a public-looking name that resolves to loopback
        if host == "rebind.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    target = Target(url.format(port=server.server_address[1]), allowed_hosts=())
    with pytest.raises(DeliveryError) as refused:
        http.post_signed(target, b"{}", delivery_id="1:1:0")
    assert refused.value.retryable is False and "not a public address" in str(refused.value)
    assert server.seen == []


def test_an_allowed_network_lets_a_name_through(server, monkeypatch):
    assert campaigns.permitted_addresses("127.0.0.1", 80, ["127.0.0.0/8"]) == ["127.0.0.1"]
    port = server.server_address[1]
    assert http.post_signed(Target(f"http://127.0.0.1:{port}/", allowed_hosts=("127.0.0.0/8",)), b"{}",
                            delivery_id="x") == 200


def test_the_environment_proxy_is_ignored(server, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://10.0.0.1:3128")
    assert http.post_signed(Target(server.url), b"{}", delivery_id="x") == 200
