"""Each tenant's webhook: its URL, its signing secret, and where it may point.

A webhook must not be a way into the platform's own network (SSRF): every
address its host resolves to is checked, when the URL is set and again at each
connection, and private, loopback, link-local (169.254.169.254, the cloud
metadata service), multicast, reserved and unspecified addresses are refused
unless an operator allowed that host or network for the tenant. The secret is
shown once, when it is made; afterwards only its last four characters.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.campaigns.models import WebhookSettings
from app.errors import Invalid
from app.tenancy.scoping import session_tenant, system_session
from app.tenancy.service import get_tenant

__all__ = [
    "DestinationRefused",
    "WebhookView",
    "check_url",
    "check_allowed_hosts",
    "permitted_addresses",
    "get_webhook",
    "set_webhook_url",
    "rotate_secret",
    "allowed_hosts",
    "set_allowed_hosts",
    "secret_hint",
]

logger = logging.getLogger(__name__)

_HOST_NAME = re.compile(r"^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$")
#: Entries an operator may allow per tenant.
MAX_ALLOWED_HOSTS = 100


class DestinationRefused(Invalid):
    """The webhook's host is (or resolves to) an address the tenant may not reach."""

    slug = "webhook-destination-refused"


@dataclass(frozen=True)
class WebhookView:
    """A tenant's webhook as the API shows it: never the whole secret, but once."""

    url: str | None
    secret_hint: str | None
    allowed_hosts: list[str]
    secret: str | None = None


def secret_hint(secret: str | None) -> str | None:
    """The last four characters of a secret, for telling secrets apart."""
    return None if not secret else "…" + secret[-4:]


def _bad_url(detail: str) -> Invalid:
    return Invalid(detail, slug="invalid-webhook-url", errors=[{"field": "url", "message": detail}])


def check_url(url: str) -> tuple[str, int]:
    """A webhook URL's host and port, if it is an ``http(s)`` URL without credentials.

    Raises:
      Invalid: another scheme, no host, credentials in the URL, a bad port (``invalid-webhook-url``).
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise _bad_url(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise _bad_url("the webhook URL must start with http:// or https://")
    if not parts.hostname:
        raise _bad_url("the webhook URL has no host")
    if parts.username or parts.password:
        raise _bad_url("the webhook URL must not hold credentials")
    return parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def _refused(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
            or address.is_reserved or address.is_unspecified or not address.is_global)


def _allowed(host: str, address, allowed: list[str]) -> bool:
    for entry in allowed:
        if "/" in entry or _is_address(entry):
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        elif host.rstrip(".") == entry.rstrip("."):
            return True
    return False


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def permitted_addresses(host: str, port: int, allowed: list[str]) -> list[str]:
    """The addresses ``host`` resolves to, each one checked; connect only to these.

    Raises:
      DestinationRefused: the host does not resolve, or one of its addresses is private,
        loopback, link-local or otherwise not public and neither the host nor that address is
        in ``allowed``.
    """
    host = host.lower().strip("[]")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"the webhook host {host!r} cannot be resolved ({exc})") from None
    addresses = []
    for *_, sockaddr in infos:
        text = sockaddr[0].split("%", 1)[0]
        address = ipaddress.ip_address(text)
        if _refused(address) and not _allowed(host, address, allowed):
            raise DestinationRefused(
                f"the webhook host {host!r} resolves to {address}, which is not a public address; "
                "an operator must allow it for your tenant"
            )
        if text not in addresses:
            addresses.append(text)
    return addresses


def check_allowed_hosts(entries: list[str]) -> list[str]:
    """An operator's allow-list, normalised: host names, addresses, or networks in CIDR form.

    Raises:
      Invalid: an entry that is none of those (``invalid-allowed-host``).
    """
    if len(entries) > MAX_ALLOWED_HOSTS:
        raise Invalid(f"at most {MAX_ALLOWED_HOSTS} allowed hosts", slug="invalid-allowed-host")
    normalised: list[str] = []
    for entry in entries:
        text = (entry or "").strip().lower()
        try:
            value = str(ipaddress.ip_network(text, strict=False)) if "/" in text else str(ipaddress.ip_address(text))
        except ValueError:
            if not _HOST_NAME.match(text):
                raise Invalid(f"{entry!r} is not a host name, an address or a network (CIDR)",
                              slug="invalid-allowed-host",
                              errors=[{"field": "allowed_hosts", "message": f"bad entry {entry!r}"}]) from None
            value = text.rstrip(".")
        if value not in normalised:
            normalised.append(value)
    return normalised


def _row(session: Session) -> WebhookSettings | None:
    return session.scalar(sa.select(WebhookSettings))


def get_webhook(session: Session) -> WebhookView:
    """The session tenant's webhook (``url`` is ``None`` until one is set)."""
    row = _row(session)
    if row is None:
        return WebhookView(url=None, secret_hint=None, allowed_hosts=[])
    return WebhookView(url=row.url, secret_hint=secret_hint(row.secret), allowed_hosts=list(row.allowed_hosts or []))


def set_webhook_url(session: Session, url: str) -> WebhookView:
    """Set the session tenant's webhook URL; a tenant with no secret yet gets one, shown this once.

    Raises:
      Invalid: a bad URL; DestinationRefused: its host is not public and not allowed.
    """
    tenant_id = session_tenant(session)
    row = _row(session) or WebhookSettings(tenant_id=tenant_id, allowed_hosts=[])
    host, port = check_url(url)
    permitted_addresses(host, port, list(row.allowed_hosts or []))
    row.url = url.strip()
    new_secret = None
    if not row.secret:
        row.secret = new_secret = secrets.token_urlsafe(32)
    session.add(row)
    session.flush()
    logger.info("webhook URL set", extra={"tenant_id": tenant_id})
    return WebhookView(url=row.url, secret_hint=secret_hint(row.secret), allowed_hosts=list(row.allowed_hosts),
                       secret=new_secret)


def rotate_secret(session: Session) -> WebhookView:
    """A new signing secret for the session tenant's webhook, shown this once.

    Raises:
      Invalid: no webhook URL is set yet (``webhook-not-configured``).
    """
    row = _row(session)
    if row is None or not row.url:
        raise Invalid("set a webhook URL first (PUT /settings/webhook)", slug="webhook-not-configured")
    row.secret = secrets.token_urlsafe(32)
    session.flush()
    logger.info("webhook secret rotated", extra={"tenant_id": row.tenant_id})
    return WebhookView(url=row.url, secret_hint=secret_hint(row.secret), allowed_hosts=list(row.allowed_hosts),
                       secret=row.secret)


def allowed_hosts(tenant_id: str) -> list[str]:
    """The hosts an operator allowed the tenant's webhook to reach. Raises: NotFound (no such tenant)."""
    get_tenant(tenant_id)
    with system_session() as session:
        row = session.get(WebhookSettings, tenant_id)
        return list(row.allowed_hosts or []) if row else []


def set_allowed_hosts(tenant_id: str, entries: list[str]) -> list[str]:
    """Replace the hosts the tenant's webhook may reach although they are not public (operators).

    Raises:
      NotFound: no such tenant; Invalid: a bad entry.
    """
    get_tenant(tenant_id)
    hosts = check_allowed_hosts(entries)
    with system_session() as session:
        row = session.get(WebhookSettings, tenant_id) or WebhookSettings(tenant_id=tenant_id)
        row.allowed_hosts = hosts
        session.add(row)
    logger.info("webhook allow-list of %s set to %s", tenant_id, hosts, extra={"tenant_id": tenant_id})
    return hosts
