"""Admin CLI for jobs: ``fairq dlq list|show|replay|purge``."""
from __future__ import annotations

import json

import click

from app.errors import ServiceError
from app.scheduling import dlq

__all__ = ["dlq_group", "COMMANDS"]


def _selection(tenant: str | None, kind: str | None, job_ids: tuple[int, ...]) -> dlq.DeadFilter:
    return dlq.DeadFilter(tenant_id=tenant, kind=kind, job_ids=tuple(job_ids))


def _filters(command):
    command = click.option("--tenant", help="Only this tenant's dead jobs.")(command)
    command = click.option("--kind", help="Only dead jobs of this kind.")(command)
    return click.option("--job", "job_ids", type=int, multiple=True, help="This dead job (repeatable).")(command)


@click.group("dlq")
def dlq_group() -> None:
    """Dead-letter queue: jobs with no retry left."""


@dlq_group.command("list")
@_filters
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def dlq_list(tenant, kind, job_ids, limit) -> None:
    """List dead jobs, newest first."""
    for job in dlq.list_dead(_selection(tenant, kind, job_ids), limit=limit):
        click.echo(f"{job['id']:<10} {job['tenant_id']:<20} {job['kind']:<16} attempts={job['attempts']:<3} "
                   f"{(job['last_error'] or '')[:80]}")


@dlq_group.command("show")
@click.argument("job_id", type=int)
def dlq_show(job_id: int) -> None:
    """Show one dead job in full (JSON)."""
    found = dlq.list_dead(dlq.DeadFilter(job_ids=(job_id,)), limit=1)
    if not found:
        raise click.UsageError(f"job {job_id} is not in the dead-letter queue")
    click.echo(json.dumps(found[0], default=str, indent=2))


@dlq_group.command("replay")
@_filters
@click.option("--all", "everything", is_flag=True, help="Every dead job (no filter).")
def dlq_replay(tenant, kind, job_ids, everything) -> None:
    """Put dead jobs back through the fair scheduler, with fresh attempts."""
    from app.tasks import broker

    try:
        ids = dlq.replay(_selection(tenant, kind, job_ids), broker=broker, allow_all=everything)
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"replayed {len(ids)} jobs" + (f": {', '.join(map(str, ids[:50]))}" if ids else ""))


@dlq_group.command("purge")
@_filters
@click.option("--all", "everything", is_flag=True, help="Every dead job (no filter).")
@click.confirmation_option(prompt="Forget these dead jobs for good?")
def dlq_purge(tenant, kind, job_ids, everything) -> None:
    """Forget dead jobs for good (their rows and dead-letter messages)."""
    from app.tasks import broker

    try:
        ids = dlq.purge(_selection(tenant, kind, job_ids), broker=broker, allow_all=everything)
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"purged {len(ids)} jobs")


#: The command groups this module adds to ``fairq``.
COMMANDS = (dlq_group,)
