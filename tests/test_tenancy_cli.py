"""The tenancy CLI: fairq tenants | users | operators; bad input exits with 2."""
import pytest

from tests.conftest import run_fairq
from tests.helpers import PASSWORD


def fairq(*args, stdin=None, env=None):
    import subprocess

    return subprocess.run(["fairq", *args], input=stdin, capture_output=True, text=True, timeout=60, env=env)


@pytest.fixture(autouse=True)
def _db(db):
    return db


def test_tenants_create_list_show_update():
    created = fairq("tenants", "create", "acme", "--weight", "4", "--plan", "pro", "--name", "Acme Corp")
    assert created.returncode == 0, created.stderr
    listed = fairq("tenants", "list").stdout
    assert "acme" in listed and "weight=4" in listed and "plan=pro" in listed and "_platform" not in listed
    assert "paused" in fairq("tenants", "update", "acme", "--paused").stdout
    shown = fairq("tenants", "show", "acme").stdout
    assert "Acme Corp" in shown and "True" in shown
    assert "active" in fairq("tenants", "update", "acme", "--active", "--weight", "2").stdout
    assert "weight=2" in fairq("tenants", "list").stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (("tenants", "create", "Bad_Id"), "tenant_id must be"),
        (("tenants", "create", "acme", "--weight", "0"), "weight"),
        (("tenants", "show", "nope"), "no tenant nope"),
        (("tenants", "update", "nope", "--weight", "3"), "no tenant nope"),
        (("tenants", "update", "acme"), "nothing to change"),
        (("tenants", "update", "acme", "--plan", "gold"), "unknown plan 'gold'"),
        (("tenants", "create", "globex", "--plan", "gold"), "unknown plan 'gold'"),
        (("users", "list", "--tenant", "nope"), "no tenant nope"),
        (("users", "disable", "--tenant", "acme", "ghost@acme.example"), "no user"),
    ],
)
def test_bad_input_exits_2_with_a_reason(args, message):
    assert fairq("tenants", "create", "acme").returncode == 0
    result = fairq(*args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_plan_must_exist_built_in_or_in_fairq_plans():
    import os

    fairq("tenants", "create", "acme")
    refused = fairq("tenants", "update", "acme", "--plan", "gold", "--weight", "3")
    assert refused.returncode == 2 and "the plans are dedicated, default, free, pro" in refused.stderr
    assert "weight=1 " in fairq("tenants", "list").stdout  # nothing half-applied
    gold = {**os.environ, "FAIRQ_PLANS": '{"gold": {"rate": 5}}'}
    accepted = fairq("tenants", "update", "acme", "--plan", "gold", env=gold)
    assert accepted.returncode == 0 and "plan=gold" in accepted.stdout, accepted.stderr


def test_a_duplicate_tenant_exits_2():
    fairq("tenants", "create", "acme")
    result = fairq("tenants", "create", "acme")
    assert result.returncode == 2 and "already exists" in result.stderr


def test_users_create_list_disable(client):
    fairq("tenants", "create", "acme")
    created = fairq("users", "create", "--tenant", "acme", "--email", "Ann@Acme.example", "--role", "admin",
                    "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    assert PASSWORD not in created.stdout + created.stderr
    assert client.post("/login", json={"tenant_id": "acme", "email": "ann@acme.example", "password": PASSWORD}).status_code == 200
    assert "ann@acme.example" in fairq("users", "list", "--tenant", "acme").stdout
    assert fairq("users", "disable", "--tenant", "acme", "ann@acme.example").returncode == 0
    assert "disabled" in fairq("users", "list", "--tenant", "acme").stdout
    assert client.post("/login", json={"tenant_id": "acme", "email": "ann@acme.example", "password": PASSWORD}).status_code == 401
    assert fairq("users", "disable", "--tenant", "acme", "ann@acme.example", "--enable").returncode == 0


def test_a_short_password_exits_2():
    fairq("tenants", "create", "acme")
    result = fairq("users", "create", "--tenant", "acme", "--email", "a@acme.example", "--password-stdin", stdin="short\n")
    assert result.returncode == 2 and "at least 8" in result.stderr


def test_operators_are_created_only_through_the_cli(client):
    result = fairq("operators", "create", "--email", "ops@fairq.example", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.returncode == 0, result.stderr
    login = client.post("/login", json={"tenant_id": "_platform", "email": "ops@fairq.example", "password": PASSWORD})
    assert login.status_code == 200
    token = login.get_json()["access_token"]
    assert client.get("/admin/tenants", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_help_lists_the_tenancy_commands():
    out = run_fairq("--help").stdout
    assert "tenants" in out and "users" in out and "operators" in out
