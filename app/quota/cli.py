"""Admin CLI for usage: ``fairq usage export --month YYYY-MM`` for the billing team."""
from __future__ import annotations

from datetime import date, datetime, timedelta

import click

from app.errors import ServiceError

__all__ = ["usage_group", "COMMANDS"]


def _month(_ctx, _param, value: str) -> date:
    try:
        return datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a month like 2026-11") from None


@click.group("usage")
def usage_group() -> None:
    """What tenants used: jobs, worker seconds, rows, messages (the billing record)."""


@usage_group.command("export")
@click.option("--month", required=True, callback=_month, help="The month, e.g. 2026-11.")
@click.option("--tenant", help="Only this tenant (default: every tenant).")
@click.option("--output", "-o", type=click.File("w"), default="-", show_default=True,
              help="Write the CSV here (- for standard output).")
def usage_export(month: date, tenant: str | None, output) -> None:
    """Every tenant's usage of one month per job kind, as CSV."""
    from app.quota import usage
    from app.quota.rollups import next_month
    from app.tenancy.scoping import system_session, tenant_session

    last = next_month(month) - timedelta(days=1)
    try:
        with tenant_session(tenant) if tenant else system_session() as session:
            items = usage.report(session, start=month, end=last, granularity="month")
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    output.write(usage.to_csv(items))


COMMANDS = (usage_group,)
