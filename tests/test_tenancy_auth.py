"""Register, log in, tokens and roles on the real servers (PostgreSQL, Redis)."""
import io
import json
import time
from datetime import timedelta

import jwt as pyjwt
import pytest
import redis
from flask_jwt_extended import create_access_token

from app.logs import configure_logging
from app.tenancy.tokens import REDIS_LOADED, REDIS_PREFIX
from tests.helpers import PASSWORD, assert_cross_tenant_404, assert_operator_only, bearer, invite, login, sign_up


def problem(response, status, slug_suffix):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["type"].endswith(slug_suffix), body
    return body


# -- the seed's contract --------------------------------------------------------------------


def test_the_seed_register_and_login_lines(client):
    registered = client.post(
        "/register", json={"tenant_id": "tenant-123", "email": "user@example.com", "password": "secret123"}
    )
    assert registered.status_code == 201
    user = registered.get_json()
    assert user["tenant_id"] == "tenant-123" and user["email"] == "user@example.com"
    assert user["role"] == "admin"
    assert "password" not in json.dumps(user) and "hash" not in json.dumps(user)

    logged_in = client.post(
        "/login", json={"tenant_id": "tenant-123", "email": "user@example.com", "password": "secret123"}
    )
    assert logged_in.status_code == 200
    tokens = logged_in.get_json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 15 * 60

    me = client.get("/me", headers=bearer(tokens["access_token"])).get_json()
    assert me["email"] == "user@example.com" and me["tenant_id"] == "tenant-123"


def test_tokens_carry_user_tenant_and_role_with_a_pinned_algorithm(client, app):
    a = sign_up(client, "acme")
    header = pyjwt.get_unverified_header(a.access_token)
    claims = pyjwt.decode(a.access_token, app.config["JWT_SECRET_KEY"], algorithms=["HS256"])
    assert header["alg"] == "HS256"
    assert claims["tenant"] == "acme" and claims["role"] == "admin" and claims["sub"] == "1"
    assert claims["type"] == "access"


def test_emails_are_normalised(client):
    client.post("/register", json={"tenant_id": "acme", "email": "  Ann@Example.COM ", "password": PASSWORD})
    assert login(client, "acme", "ann@example.com").email == "ann@example.com"
    assert login(client, "acme", "ANN@example.com ").tenant_id == "acme"


# -- joining a tenant ------------------------------------------------------------------------


def test_knowing_a_tenant_id_is_not_enough_to_join_it(client):
    sign_up(client, "acme")
    response = client.post("/register", json={"tenant_id": "acme", "email": "eve@evil.example", "password": PASSWORD})
    problem(response, 403, "invite-required")


def test_an_admin_invites_into_their_tenant(client):
    admin = sign_up(client, "acme")
    member = invite(client, admin, "bob@acme.example")
    assert client.get("/me", headers=member.headers).get_json()["role"] == "member"


def test_a_member_cannot_invite(client):
    admin = sign_up(client, "acme")
    member = invite(client, admin, "bob@acme.example")
    response = client.post(
        "/register", json={"tenant_id": "acme", "email": "c@acme.example", "password": PASSWORD}, headers=member.headers
    )
    problem(response, 403, "invite-required")


def test_a_tenant_id_in_the_body_must_be_the_tokens(client):
    sign_up(client, "acme")
    other = sign_up(client, "globex")
    response = client.post(
        "/register", json={"tenant_id": "acme", "email": "x@globex.example", "password": PASSWORD}, headers=other.headers
    )
    problem(response, 403, "tenant-mismatch")


def test_duplicate_email_is_409(client):
    admin = sign_up(client, "acme")
    invite(client, admin, "bob@acme.example")
    response = client.post(
        "/register", json={"tenant_id": "acme", "email": "BOB@acme.example", "password": PASSWORD}, headers=admin.headers
    )
    problem(response, 409, "email-taken")


def test_the_same_email_may_exist_in_two_tenants(client):
    sign_up(client, "acme", "same@example.com")
    sign_up(client, "globex", "same@example.com")


def test_closed_signup_refuses_new_tenants(real_settings):
    from app import create_app
    from app.settings import Settings

    closed = create_app(Settings.load(**{**real_settings.model_dump(), "open_signup": False})).test_client()
    response = closed.post("/register", json={"tenant_id": "newco", "email": "a@newco.example", "password": PASSWORD})
    problem(response, 403, "signup-closed")


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "a@b.example", "password": PASSWORD}, "tenant_id"),
        ({"tenant_id": "acme", "password": PASSWORD}, "email"),
        ({"tenant_id": "acme", "email": "a@b.example"}, "password"),
        ({"tenant_id": "acme", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"tenant_id": "acme", "email": "a@b.example", "password": 12345678}, "password"),
        ({"tenant_id": ["acme"], "email": "a@b.example", "password": PASSWORD}, "tenant_id"),
        ({"tenant_id": "acme", "email": "a@b.example", "password": PASSWORD, "admin": True}, "admin"),
        ({"tenant_id": "Acme_Corp", "email": "a@b.example", "password": PASSWORD}, "tenant_id"),
        ({"tenant_id": "acme", "email": "a@b.example", "password": "short"}, "password"),
    ],
)
def test_bad_registrations_are_400_naming_the_field(client, body, field):
    body = problem(client.post("/register", json=body), 400, "validation-error")
    assert field in {error["field"] for error in body["errors"]}, body


def test_a_megabyte_body_is_413(client):
    huge = json.dumps({"tenant_id": "acme", "email": "a@b.example", "password": "x" * (1024 * 1024)})
    problem(client.post("/register", data=huge, content_type="application/json"), 413, "payload-too-large")


def test_a_password_longer_than_bcrypt_reads_is_refused(client):
    body = {"tenant_id": "acme", "email": "a@b.example", "password": "é" * 40}
    problem(client.post("/register", json=body), 400, "validation-error")


def test_wrong_credentials_are_one_401(client):
    sign_up(client, "acme", "ann@acme.example")
    for body in (
        {"tenant_id": "acme", "email": "ann@acme.example", "password": "wrong-password"},
        {"tenant_id": "acme", "email": "nobody@acme.example", "password": PASSWORD},
        {"tenant_id": "nope", "email": "ann@acme.example", "password": PASSWORD},
    ):
        body = problem(client.post("/login", json=body), 401, "invalid-credentials")
        assert body["detail"] == "tenant, email or password is wrong"


# -- tokens that must not work --------------------------------------------------------------


def test_expired_token_is_401(client, app):
    a = sign_up(client, "acme")
    with app.app_context():
        expired = create_access_token("1", additional_claims={"tenant": "acme", "role": "admin"},
                                      expires_delta=timedelta(seconds=-10))
    problem(client.get("/me", headers=bearer(expired)), 401, "token-expired")
    assert a  # the real token still works
    assert client.get("/me", headers=a.headers).status_code == 200


def test_token_signed_with_another_key_is_401(client, app):
    sign_up(client, "acme")
    forged = pyjwt.encode({"sub": "1", "tenant": "acme", "role": "admin", "type": "access", "jti": "x",
                           "exp": int(time.time()) + 600}, "another-key-" * 4, algorithm="HS256")
    problem(client.get("/me", headers=bearer(forged)), 401, "invalid-token")


def test_alg_none_is_401(client):
    a = sign_up(client, "acme")
    claims = pyjwt.decode(a.access_token, options={"verify_signature": False})
    unsigned = pyjwt.encode(claims, None, algorithm="none")
    problem(client.get("/me", headers=bearer(unsigned)), 401, "invalid-token")


def test_tampered_claims_are_401(client):
    import base64

    sign_up(client, "victim")
    a = sign_up(client, "acme")
    header, payload, signature = a.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tenant"] = "victim"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    problem(client.get("/me", headers=bearer(f"{header}.{forged_payload}.{signature}")), 401, "invalid-token")


def test_missing_token_is_401(client):
    problem(client.get("/me"), 401, "unauthorized")


def test_refresh_token_is_not_an_access_token(client):
    a = sign_up(client, "acme")
    problem(client.get("/me", headers=bearer(a.refresh_token)), 401, "wrong-token-type")
    problem(client.post("/refresh", headers=a.headers), 401, "wrong-token-type")


def test_refresh_gives_a_working_access_token(client):
    a = sign_up(client, "acme")
    fresh = client.post("/refresh", headers=bearer(a.refresh_token)).get_json()
    assert fresh["token_type"] == "Bearer"
    assert client.get("/me", headers=bearer(fresh["access_token"])).status_code == 200


def test_logout_revokes_the_token_across_a_restart_and_a_redis_flush(client, real_settings):
    from app import create_app

    a = sign_up(client, "acme")
    assert client.post("/logout", headers=a.headers).status_code == 204
    problem(client.get("/me", headers=a.headers), 401, "token-revoked")
    # a new process (a new app) still refuses it
    restarted = create_app(real_settings).test_client()
    problem(restarted.get("/me", headers=a.headers), 401, "token-revoked")
    # Redis loses everything it knew: the database still remembers
    r = redis.Redis.from_url(real_settings.redis_url)
    r.delete(REDIS_LOADED, *r.keys(REDIS_PREFIX + "*"))
    problem(restarted.get("/me", headers=a.headers), 401, "token-revoked")
    assert r.exists(REDIS_LOADED)  # and the cache was rebuilt from the database
    # the other tokens of the user still work
    assert client.post("/refresh", headers=bearer(a.refresh_token)).status_code == 200


def test_logout_with_the_refresh_token_revokes_it(client):
    a = sign_up(client, "acme")
    assert client.post("/logout", headers=bearer(a.refresh_token)).status_code == 204
    problem(client.post("/refresh", headers=bearer(a.refresh_token)), 401, "token-revoked")


def test_a_disabled_users_tokens_stop_working(client):
    admin = sign_up(client, "acme")
    bob = invite(client, admin, "bob@acme.example")
    bob_id = client.get("/me", headers=bob.headers).get_json()["id"]
    assert client.post(f"/users/{bob_id}/disable", headers=admin.headers).status_code == 200
    problem(client.get("/me", headers=bob.headers), 401, "invalid-token")
    problem(client.post("/login", json={"tenant_id": "acme", "email": "bob@acme.example", "password": PASSWORD}),
            401, "invalid-credentials")


# -- brute force -----------------------------------------------------------------------------


def test_failed_logins_are_limited_per_account_with_retry_after(client):
    sign_up(client, "acme", "ann@acme.example")
    wrong = {"tenant_id": "acme", "email": "ann@acme.example", "password": "wrong-password"}
    for _ in range(5):
        problem(client.post("/login", json=wrong), 401, "invalid-credentials")
    limited = problem(client.post("/login", json=wrong), 429, "too-many-login-failures")
    assert 0 < int(client.post("/login", json=wrong).headers["Retry-After"]) <= 900
    assert "account" in limited["detail"]
    # even the right password waits now
    right = {**wrong, "password": PASSWORD}
    problem(client.post("/login", json=right), 429, "too-many-login-failures")
    # another account from elsewhere is not affected
    sign_up(client, "globex", "gus@globex.example")


def test_failed_logins_are_limited_per_client_address(client):
    sign_up(client, "acme", "ann@acme.example")
    for i in range(20):
        body = {"tenant_id": "acme", "email": f"guess{i}@acme.example", "password": "wrong-password"}
        problem(client.post("/login", json=body), 401, "invalid-credentials")
    body = problem(client.post("/login", json={"tenant_id": "acme", "email": "x@acme.example", "password": "p"}),
                   429, "too-many-login-failures")
    assert "address" in body["detail"]


# -- roles -----------------------------------------------------------------------------------


def test_admin_endpoints_are_for_operators_only(client):
    from app.tenancy import service

    admin = sign_up(client, "acme")
    problem(client.get("/admin/tenants"), 401, "unauthorized")
    problem(client.get("/admin/tenants", headers=admin.headers), 403, "role-required")
    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    ops = login(client, "_platform", "ops@fairq.example")
    listed = client.get("/admin/tenants", headers=ops.headers).get_json()["items"]
    assert [t["id"] for t in listed] == ["acme"]
    changed = client.patch("/admin/tenants/acme", json={"weight": 4, "paused": True}, headers=ops.headers)
    assert changed.status_code == 200 and changed.get_json()["weight"] == 4 and changed.get_json()["paused"]
    problem(client.patch("/admin/tenants/acme", json={"weight": 0}, headers=ops.headers), 400, "validation-error")
    problem(client.get("/admin/tenants/nope", headers=ops.headers), 404, "not-found")
    problem(client.get("/admin/tenants/_platform", headers=ops.headers), 404, "not-found")


def test_a_tenants_plan_weight_and_pause_are_for_operators_only_not_even_its_own_admin(client):
    """``GET`` / ``PATCH /admin/tenants/{id}``: no tenant's token reaches them, the owning tenant's
    admin's included (a tenant raising its own weight or lifting its own pause would defeat the
    scheduler), and a refused change changes nothing."""
    from app.tenancy import service

    admin = sign_up(client, "acme")
    member = invite(client, admin, "bob@acme.example")
    other = sign_up(client, "globex")
    for method, json_body in (("GET", None), ("PATCH", {"weight": 1000, "plan": "pro"}),
                              ("PATCH", {"paused": False})):
        assert_operator_only(client, method, "/admin/tenants/acme", tenants=(admin, member, other), json=json_body)
    tenant = service.get_tenant("acme")
    assert (tenant.weight, tenant.plan, tenant.paused) == (1, "default", False)


def test_an_unknown_plan_is_refused_and_nothing_changes(client):
    from app.tenancy import service

    sign_up(client, "acme")
    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    ops = login(client, "_platform", "ops@fairq.example")
    body = problem(client.patch("/admin/tenants/acme", json={"plan": "gold", "weight": 3}, headers=ops.headers),
                   400, "/problems/validation-error")
    assert "unknown plan 'gold'" in body["detail"] and body["errors"] == [{"field": "plan", "message": "unknown plan"}]
    tenant = client.get("/admin/tenants/acme", headers=ops.headers).get_json()
    assert (tenant["plan"], tenant["weight"]) == ("default", 1)  # nothing half-applied
    changed = client.patch("/admin/tenants/acme", json={"plan": "pro"}, headers=ops.headers)
    assert changed.status_code == 200 and changed.get_json()["plan"] == "pro"


def test_operators_have_no_tenant_data(client):
    from app.tenancy import service

    service.create_operator(client.application.config["FAIRQ_SETTINGS"], email="ops@fairq.example", password=PASSWORD)
    ops = login(client, "_platform", "ops@fairq.example")
    problem(client.get("/users", headers=ops.headers), 403, "role-required")


def test_operators_cannot_be_registered_through_the_api(client):
    response = client.post("/register", json={"tenant_id": "_platform", "email": "x@y.example", "password": PASSWORD})
    problem(response, 400, "validation-error")
    admin = sign_up(client, "acme")
    response = client.post("/register", headers=admin.headers,
                           json={"tenant_id": "acme", "email": "o@acme.example", "password": PASSWORD, "role": "operator"})
    problem(response, 400, "validation-error")


# -- the users endpoints, and another tenant's token ----------------------------------------


def test_users_are_listed_with_keyset_pagination(client):
    admin = sign_up(client, "acme")
    for i in range(3):
        invite(client, admin, f"u{i}@acme.example")
    first = client.get("/users?limit=2", headers=admin.headers).get_json()
    assert len(first["items"]) == 2 and first["next"] is not None
    rest = client.get(f"/users?limit=2&after={first['next']}", headers=admin.headers).get_json()
    assert len(rest["items"]) == 2 and rest["next"] is not None
    assert client.get(f"/users?limit=2&after={rest['next']}", headers=admin.headers).get_json() == {"items": [], "next": None}


def test_members_cannot_list_users(client):
    admin = sign_up(client, "acme")
    member = invite(client, admin, "bob@acme.example")
    problem(client.get("/users", headers=member.headers), 403, "role-required")


def test_another_tenants_token_never_reaches_a_user(client):
    a = sign_up(client, "acme")
    bob = invite(client, a, "bob@acme.example")
    bob_id = client.get("/me", headers=bob.headers).get_json()["id"]
    b = sign_up(client, "globex")
    for method, url in [("GET", f"/users/{bob_id}"), ("POST", f"/users/{bob_id}/disable"),
                        ("POST", f"/users/{bob_id}/enable")]:
        assert_cross_tenant_404(client, method, url, other=b)
    listed = client.get("/users", headers=b.headers).get_json()["items"]
    assert [u["email"] for u in listed] == ["admin@globex.example"]
    # and bob is untouched
    assert client.get("/me", headers=bob.headers).status_code == 200


# -- secrets ---------------------------------------------------------------------------------


def test_passwords_never_reach_logs_or_responses(client):
    stream = io.StringIO()
    configure_logging("DEBUG", stream=stream)
    secret = "Sup3r-Secret-Passw0rd"
    responses = [
        client.post("/register", json={"tenant_id": "acme", "email": "ann@acme.example", "password": secret}),
        client.post("/login", json={"tenant_id": "acme", "email": "ann@acme.example", "password": secret}),
        client.post("/login", json={"tenant_id": "acme", "email": "ann@acme.example", "password": secret + "x"}),
        client.post("/register", json={"tenant_id": "acme", "email": "bad", "password": secret}),
        client.post("/register", json={"tenant_id": "acme", "email": "b@acme.example", "password": secret, "x": 1}),
    ]
    configure_logging("INFO")
    assert stream.getvalue()  # something was logged
    assert secret not in stream.getvalue()
    for response in responses:
        assert secret not in response.get_data(as_text=True)
