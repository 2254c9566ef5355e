"""Admin CLI for ingest: ``fairq ingest FILE --tenant T --source UPI``."""
from __future__ import annotations

from pathlib import Path

import click

from app.errors import ServiceError
from app.scheduling.follow import follow_job
from app.settings import get_settings

__all__ = ["ingest_command", "COMMANDS"]


@click.command("ingest")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tenant", "tenant_id", required=True, help="The tenant whose file it is.")
@click.option("--source", required=True, help="An installed source: UPI, NEFT, IMPS, RTGS, ...")
@click.option("--ledger", type=click.Choice(["external", "internal"]), default="external", show_default=True)
@click.option("--priority", type=click.Choice(["high", "normal", "low"]), default="normal", show_default=True)
@click.option("--force", is_flag=True,
              help="Read the file even if the tenant ingested this exact file before.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Follow the job with a progress bar until it ends (workers must be running).")
def ingest_command(file: Path, tenant_id: str, source: str, ledger: str, priority: str, force: bool,
                   wait: bool) -> None:
    """Upload FILE for a tenant and ingest it through the fair scheduler."""
    from app import tasks  # noqa: F401  (the job kinds)
    from app.ingest import service
    from app.tenancy.scoping import tenant_session
    from app.tenancy.service import get_tenant

    settings = get_settings()
    try:
        get_tenant(tenant_id)
        with file.open("rb") as stream:
            s3_path, size = service.upload(settings, tenant_id, stream, file.name)
        with tenant_session(tenant_id) as session:
            job, _ = service.enqueue_ingest(session, settings, s3_path=s3_path, source=source,
                                            ledger=ledger, priority=priority, force=force)
            job_id = job.id
    except ServiceError as exc:
        raise click.UsageError(exc.detail) from None
    click.echo(f"uploaded {size} bytes as {s3_path}; job {job_id} queued")
    if not wait:
        return
    result = follow_job(tenant_id, job_id, length=size, label=lambda state, done, _total: f"{state}: {done:,} rows read")
    click.echo(", ".join(f"{key} {value:,}" for key, value in result.items()))


#: The commands this module adds to ``fairq``.
COMMANDS = (ingest_command,)
