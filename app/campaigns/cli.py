"""Admin CLI for campaigns: ``fairq campaigns hosts|allow-host|disallow-host``.

Bad input (an unknown tenant, a bad host) exits with code 2 and a one-line reason.
"""
from __future__ import annotations

import click

from app.campaigns import webhooks
from app.errors import ServiceError

__all__ = ["campaigns_group", "COMMANDS"]


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns: the private hosts each tenant's webhook may reach."""


def _change(tenant_id: str, change) -> None:
    try:
        hosts = webhooks.set_allowed_hosts(tenant_id, change(webhooks.allowed_hosts(tenant_id)))
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"{tenant_id}: " + (", ".join(hosts) or "no private host allowed"))


@campaigns_group.command("hosts")
@click.argument("tenant_id")
def hosts(tenant_id: str) -> None:
    """List the private hosts TENANT_ID's webhook may reach."""
    try:
        found = webhooks.allowed_hosts(tenant_id)
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"{tenant_id}: " + (", ".join(found) or "no private host allowed"))


@campaigns_group.command("allow-host")
@click.argument("tenant_id")
@click.argument("hosts", nargs=-1, required=True)
def allow_host(tenant_id: str, hosts: tuple[str, ...]) -> None:
    """Let TENANT_ID's webhook reach HOSTS (names, addresses or CIDR networks) although not public."""
    _change(tenant_id, lambda current: [*current, *hosts])


@campaigns_group.command("disallow-host")
@click.argument("tenant_id")
@click.argument("hosts", nargs=-1, required=True)
def disallow_host(tenant_id: str, hosts: tuple[str, ...]) -> None:
    """Take HOSTS off TENANT_ID's allow-list."""
    gone = {h.strip().lower() for h in hosts}
    _change(tenant_id, lambda current: [h for h in current if h not in gone])


#: The command groups this module adds to ``fairq``.
COMMANDS = (campaigns_group,)
