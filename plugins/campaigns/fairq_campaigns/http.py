"""Signed webhook posts that cannot be pointed at the platform's own network.

requests (urllib3 underneath) with one change: a connection resolves the host itself,
checks every address with ``campaigns.permitted_addresses`` (private, loopback and
link-local addresses refused unless an operator allowed them) and connects only to an
address it checked, so a DNS answer that changes between the check and the connection
(rebinding) gains nothing. TLS still verifies the certificate against the host name.
No redirects are followed, no proxy from the environment is used.
"""
from __future__ import annotations

import hashlib
import hmac
import time

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from app.hooks import DeliveryError, campaigns

__all__ = ["sign", "post_signed", "SIGNATURE_HEADER", "guarded_session"]

#: The header that carries ``sha256=<hex HMAC-SHA256 of the body>``.
SIGNATURE_HEADER = "X-Fairq-Signature"


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Guarded:
    """Mixed into urllib3's connections: connect only to checked addresses."""

    allowed_hosts: list[str] = []

    def _new_conn(self):
        addresses = campaigns.permitted_addresses(self._dns_host, self.port, self.allowed_hosts)
        host, error = self._dns_host, None
        for address in addresses:
            self._dns_host = address
            try:
                return super()._new_conn()
            except Exception as exc:  # the next address, as urllib3 itself would
                error = exc
            finally:
                self._dns_host = host
        raise error


def guarded_session(allowed_hosts: list[str]) -> requests.Session:
    """A requests session whose connections check their destination (see the module docstring)."""
    allowed = list(allowed_hosts)
    http_conn = type("GuardedHTTPConnection", (_Guarded, HTTPConnection), {"allowed_hosts": allowed})
    https_conn = type("GuardedHTTPSConnection", (_Guarded, HTTPSConnection), {"allowed_hosts": allowed})
    pools = {
        "http": type("GuardedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }

    class GuardedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = pools

    session = requests.Session()
    session.trust_env = False  # no proxy from the environment: it would connect for us, unchecked
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session


def post_signed(target, body: bytes, *, delivery_id: str) -> int:
    """POST ``body`` to ``target.url``, signed with ``target.secret``. Returns the 2xx status.

    Raises:
      DeliveryError: retryable on a timeout or a 5xx answer; not on anything else.
    """
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "fairq-webhook/1",
        SIGNATURE_HEADER: sign(target.secret, body),
        "X-Fairq-Delivery": delivery_id,
        "X-Fairq-Timestamp": str(int(time.time())),
    }
    with guarded_session(target.allowed_hosts) as session:
        try:
            response = session.post(target.url, data=body, headers=headers, allow_redirects=False,
                                     timeout=(target.timeout, target.timeout))
        except campaigns.DestinationRefused as exc:
            raise DeliveryError(exc.detail, retryable=False) from None
        except requests.Timeout as exc:
            raise DeliveryError(f"timed out: {type(exc).__name__}", retryable=True) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"could not reach the webhook: {type(exc).__name__}", retryable=False) from None
    if 200 <= response.status_code < 300:
        return response.status_code
    retryable = response.status_code >= 500
    raise DeliveryError(f"the webhook answered {response.status_code}", retryable=retryable)
