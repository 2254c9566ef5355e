"""Admin CLI for tenancy: ``fairq tenants``, ``fairq users``, ``fairq operators``.

Bad input exits with code 2 and a one-line reason; nothing is half-applied.
"""
from __future__ import annotations

import sys

import click

from app.errors import NotFound, ServiceError
from app.settings import get_settings
from app.tenancy import service

__all__ = ["tenants", "users", "operators", "COMMANDS"]


def _fail(exc: ServiceError) -> click.ClickException:
    return click.UsageError(exc.detail)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.UsageError("no password on standard input")
        return password
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _tenant_line(t) -> str:
    state = "paused" if t.paused else "active"
    return f"{t.id:<24} weight={t.weight:<6} plan={t.plan:<12} {state:<7} {t.name}"


@click.group("tenants")
def tenants() -> None:
    """Create, list, show and update tenants."""


@tenants.command("create")
@click.argument("tenant_id")
@click.option("--name", help="Display name (default: the id).")
@click.option("--weight", type=click.IntRange(1, 1_000_000), default=1, show_default=True,
              help="Share of the workers relative to other tenants.")
@click.option("--plan", default="default", show_default=True, help="Plan name (limits and quotas).")
def tenants_create(tenant_id: str, name: str | None, weight: int, plan: str) -> None:
    """Create the tenant TENANT_ID."""
    try:
        tenant = service.create_tenant(tenant_id, name=name, weight=weight, plan=plan)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(f"created {_tenant_line(tenant)}")


@tenants.command("list")
def tenants_list() -> None:
    """List every tenant."""
    for tenant in service.list_tenants():
        click.echo(_tenant_line(tenant))


@tenants.command("show")
@click.argument("tenant_id")
def tenants_show(tenant_id: str) -> None:
    """Show one tenant."""
    try:
        tenant = service.get_tenant(tenant_id)
    except NotFound as exc:
        raise _fail(exc) from None
    for field in ("id", "name", "weight", "plan", "paused", "created_at"):
        click.echo(f"{field:<11} {getattr(tenant, field)}")


@tenants.command("update")
@click.argument("tenant_id")
@click.option("--name")
@click.option("--weight", type=click.IntRange(1, 1_000_000))
@click.option("--plan")
@click.option("--paused/--active", "paused", default=None, help="Pause (queued jobs wait) or resume.")
def tenants_update(tenant_id: str, name: str | None, weight: int | None, plan: str | None, paused: bool | None) -> None:
    """Change a tenant's name, weight, plan, or pause it."""
    changes = service.TenantChanges(name=name, weight=weight, plan=plan, paused=paused)
    if changes == service.TenantChanges():
        raise click.UsageError("nothing to change: give --name, --weight, --plan, --paused or --active")
    try:
        tenant = service.update_tenant(tenant_id, changes)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(f"updated {_tenant_line(tenant)}")


@click.group("users")
def users() -> None:
    """Create, list and disable the users of a tenant."""


@users.command("create")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--email", required=True)
@click.option("--role", type=click.Choice(["admin", "member"]), default="member", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def users_create(tenant_id: str, email: str, role: str, password_stdin: bool) -> None:
    """Create a user in an existing tenant."""
    password = _read_password(password_stdin)
    try:
        user = service.create_user(get_settings(), tenant_id=tenant_id, email=email, password=password, role=role)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(f"created user {user.id} {user.email} ({user.role}) in {user.tenant_id}")


@users.command("list")
@click.option("--tenant", "tenant_id", required=True)
def users_list(tenant_id: str) -> None:
    """List a tenant's users."""
    try:
        service.get_tenant(tenant_id)
    except NotFound as exc:
        raise _fail(exc) from None
    after = None
    while True:
        page = service.list_users(tenant_id, after=after, limit=500)
        for user in page:
            state = "disabled" if user.disabled else "active"
            click.echo(f"{user.id:<8} {user.email:<40} {user.role:<8} {state}")
        if len(page) < 500:
            break
        after = page[-1].id


@users.command("disable")
@click.option("--tenant", "tenant_id", required=True)
@click.argument("email")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
def users_disable(tenant_id: str, email: str, enable: bool) -> None:
    """Disable a user (their tokens stop working at once), or --enable them again."""
    try:
        user = service.find_user(tenant_id, email)
        service.set_user_disabled(tenant_id, user.id, not enable)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(f"{'enabled' if enable else 'disabled'} {user.email} in {tenant_id}")


@click.group("operators")
def operators() -> None:
    """Platform operators: the only role allowed on /admin/*."""


@operators.command("create")
@click.option("--email", required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
def operators_create(email: str, password_stdin: bool) -> None:
    """Create an operator. They log in with tenant_id "_platform"."""
    password = _read_password(password_stdin)
    try:
        user = service.create_operator(get_settings(), email=email, password=password)
    except ServiceError as exc:
        raise _fail(exc) from None
    click.echo(f"created operator {user.email} (log in with tenant_id \"_platform\")")


#: The command groups this module adds to ``fairq``.
COMMANDS = (tenants, users, operators)
