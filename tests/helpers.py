"""Helpers every API test uses: log in as a tenant, and prove another tenant cannot reach a resource."""
from __future__ import annotations

import time
from dataclasses import dataclass

PASSWORD = "correct-horse-9"


@dataclass(frozen=True)
class Login:
    """A logged-in user: their tenant, email and tokens."""

    tenant_id: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.access_token)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client, tenant_id: str, email: str, password: str = PASSWORD) -> Login:
    response = client.post("/login", json={"tenant_id": tenant_id, "email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    return Login(tenant_id, email, body["access_token"], body["refresh_token"])


def sign_up(client, tenant_id: str, email: str | None = None, password: str = PASSWORD) -> Login:
    """Register a new tenant with its first (admin) user, and log in as them."""
    email = email or f"admin@{tenant_id}.example"
    response = client.post("/register", json={"tenant_id": tenant_id, "email": email, "password": password})
    assert response.status_code == 201, response.get_json()
    return login(client, tenant_id, email, password)


def invite(client, admin: Login, email: str, *, role: str = "member", password: str = PASSWORD) -> Login:
    """An admin registers a user into their own tenant; returns that user logged in."""
    response = client.post(
        "/register",
        json={"tenant_id": admin.tenant_id, "email": email, "password": password, "role": role},
        headers=admin.headers,
    )
    assert response.status_code == 201, response.get_json()
    return login(client, admin.tenant_id, email, password)


def assert_cross_tenant_404(client, method: str, url: str, *, other: Login, json=None) -> None:
    """Tenant B's token against tenant A's resource: 404 problem, never 200, never the data.

    Call it for every endpoint that names a tenant-owned resource.
    """
    response = client.open(url, method=method, json=json, headers=other.headers)
    assert response.status_code == 404, (method, url, response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/problem+json"


def assert_operator_only(client, method: str, url: str, *, tenants: tuple[Login, ...], json=None) -> None:
    """An operator endpoint (``/admin/*``): 401 without a token, and 403 problem ``role-required``
    with a tenant's token, the owning tenant's included: never 200, never the data.

    Operator endpoints see every tenant, so a tenant's token is refused before any lookup (403,
    not the 404 of :func:`assert_cross_tenant_404`). Call it for every operator endpoint.
    """
    response = client.open(url, method=method, json=json)
    assert response.status_code == 401, (method, url, response.status_code, response.get_data(as_text=True))
    for tenant in tenants:
        response = client.open(url, method=method, json=json, headers=tenant.headers)
        assert response.status_code == 403, (method, url, tenant.tenant_id, response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
        assert response.get_json()["type"] == "/problems/role-required"


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.05):
    """Poll ``predicate`` until it returns something true; that value, or AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}")


def job_row(job_id: int):
    """A job's row, read across tenants."""
    from app.scheduling.models import Job
    from app.tenancy.scoping import system_session

    with system_session() as session:
        return session.get(Job, job_id)
