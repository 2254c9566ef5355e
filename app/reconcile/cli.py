"""Admin CLI for reconciliation: ``fairq reconcile --tenant T --source UPI --from D --to D``."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

import click

from app.errors import ServiceError
from app.scheduling.follow import follow_job
from app.settings import get_settings

__all__ = ["reconcile_command", "COMMANDS"]


def _amount(_context, _param, value: str) -> Decimal:
    try:
        return Decimal(value)
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount such as 0.50") from None


@click.command("reconcile")
@click.option("--tenant", "tenant_id", required=True, help="The tenant whose books are reconciled.")
@click.option("--source", required=True, help="An installed source with matching rules: UPI, NEFT, ...")
@click.option("--from", "period_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (YYYY-MM-DD).")
@click.option("--to", "period_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day, included.")
@click.option("--amount-tolerance", default="0.00", show_default=True, callback=_amount,
              help="Largest absolute amount difference that still matches.")
@click.option("--date-tolerance-hours", type=click.IntRange(0, 24 * 60), default=48, show_default=True)
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), default="normal", show_default=True)
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the job with a progress bar until it ends (workers must be running).")
def reconcile_command(tenant_id: str, source: str, period_from: datetime, period_to: datetime,
                      amount_tolerance: Decimal, date_tolerance_hours: int, priority: str, wait: bool) -> None:
    """Reconcile a tenant's ledger against its bank / switch files through the fair scheduler."""
    from app import tasks  # noqa: F401  (the job kinds)
    from app.reconcile import service
    from app.tenancy.scoping import tenant_session
    from app.tenancy.service import get_tenant

    settings = get_settings()
    try:
        get_tenant(tenant_id)
        with tenant_session(tenant_id) as session:
            job, run, _ = service.enqueue_reconcile(
                session, settings, source=source, period_from=period_from.date(), period_to=period_to.date(),
                amount_tolerance=amount_tolerance, date_tolerance_hours=date_tolerance_hours, priority=priority)
            job_id, run_id = job.id, run.id
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"run {run_id}: job {job_id} queued")
    if not wait:
        return
    result = follow_job(tenant_id, job_id, label=lambda state, done, total: f"{state}: phase {done} of {total or '?'}")
    found = ", ".join(f"{name} {count:,}" for name, count in result["breaks"].items() if count) or "none"
    click.echo(f"matched {result['matched']['count']:,} ({result['matched']['amount']}); breaks: {found}; "
               f"unmatched: ledger {result['unmatched_amount']['internal']}, "
               f"bank {result['unmatched_amount']['external']}")
    click.echo(f"details: GET /reconciliations?run_id={run_id}")


#: The commands this module adds to ``fairq``.
COMMANDS = (reconcile_command,)
