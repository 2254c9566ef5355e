"""The admin CLI: ``fairq``, a click group on Flask's CLI.

Bad input is a clear message on stderr and exit code 2 (click's usage-error
code); a backend that is down is exit code 1. On the embedded default, the
subsystems' commands (``fairq tenants``, ``fairq jobs``, ...) first bring the
SQLite database up to date, as ``fairq up`` does, so they work in a fresh folder.
"""
from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from app.settings import SettingsError, get_settings

__all__ = ["main", "cli", "init_app"]


#: Commands that run servers and log as servers do; every other command logs warnings only.
_SERVING = {"up", "run"}


def _quiet() -> bool:
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_root().invoked_subcommand not in _SERVING


def _create_app():
    from app import create_app

    return create_app(log_level="WARNING" if _quiet() else None)


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
@click.version_option(package_name="fairq")
def cli() -> None:
    """fairq: a multi-tenant task queue with fair share, priorities and per-tenant limits."""
    from app.logs import configure_logging

    if _quiet():
        configure_logging("WARNING")
    if click.get_current_context().invoked_subcommand in _DATABASE_COMMANDS:
        _upgrade_embedded_database()


def _upgrade_embedded_database() -> None:
    """On the embedded default, upgrade the SQLite database if it is behind (a fresh folder has no
    tables yet), as ``fairq up`` does, saying so on stderr. A real database is left to
    ``fairq db upgrade``."""
    from app import migrate
    from app.db import get_db

    settings = get_settings()
    if not settings.embedded["database"]:
        return
    head = migrate.head()
    if migrate.current(get_db(settings)) == head:
        return
    _run_migration(lambda: migrate.prepare(settings))
    click.echo(f"fairq: upgraded the embedded database {settings.data_dir / 'fairq.db'} to {head}", err=True)


@cli.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve the API on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@click.option("--no-migrate", is_flag=True, help="Do not upgrade the database before starting.")
@click.option("--demo", is_flag=True,
              help="Seed two demo tenants and an operator (passwords printed), a flood of jobs, ingests, "
                   "a reconciliation and a campaign, and print the dashboard URL. Embedded default only.")
def up(host: str, port: int, no_migrate: bool, demo: bool) -> None:
    """Run the API, the workers and the periodic scheduler in one process."""
    from app.runner import serve
    from app.scheduling.acks import AckDeadlineError

    settings = get_settings()
    announce = lambda line: click.echo(line, err=True)  # noqa: E731
    on_ready = None
    if demo:
        from app import demo as demo_seed

        refused = demo_seed.refusal(settings)
        if refused:
            raise click.UsageError(refused)
        on_ready = lambda url, stopping: demo_seed.start(settings, url, stopping, announce)  # noqa: E731
    try:
        serve(settings, host=host, port=port, migrate_db=not no_migrate, announce=announce, on_ready=on_ready)
    except OSError as exc:
        raise click.UsageError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    except AckDeadlineError as exc:  # RabbitMQ: time limits and prefetch that outlast its ack timeout
        raise click.UsageError(str(exc)) from None


@cli.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the database to REVISION (default: head)."""
    from app import migrate
    from app.db import get_db

    _run_migration(lambda: migrate.prepare(get_settings(), revision))
    click.echo(f"database at {migrate.current(get_db()) or 'base'}")


@db_group.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Downgrade the database to REVISION (``base`` removes every table)."""
    from app import migrate
    from app.db import get_db, get_owner_db

    _run_migration(lambda: migrate.downgrade(get_owner_db(), revision))
    click.echo(f"database at {migrate.current(get_db()) or 'base'}")


@db_group.command("current")
def db_current() -> None:
    """Print the database's revision and the newest one available."""
    from app import migrate
    from app.db import get_db

    current = migrate.current(get_db())
    head = migrate.head()
    state = "up to date" if current == head else "needs `fairq db upgrade`"
    click.echo(f"current: {current or 'base'}  head: {head}  ({state})")


def _run_migration(action) -> None:
    from alembic.util.exc import CommandError

    try:
        action()
    except CommandError as exc:
        raise click.UsageError(str(exc)) from None


@cli.command("check")
@with_appcontext
def check() -> None:
    """Check that every configured backend answers (what /readyz does)."""
    from app.health import check_backends

    checks = check_backends(current_app.config["FAIRQ_SETTINGS"])
    for c in checks:
        status = "ok" if c.ok else f"DOWN  {c.error}"
        click.echo(f"{c.backend:<9} {c.component:<18} {status}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@cli.command("plugins")
def plugins() -> None:
    """List the installed plugins and what each one provides."""
    from app import hooks

    manager = hooks.get_plugin_manager()
    for name, plugin in sorted(manager.list_name_plugin()):
        click.echo(f"{name}  ({getattr(plugin, '__name__', plugin)})")
    for source in sorted(set(hooks.sources(manager).values()), key=lambda s: s.name):
        aliases = f" (aliases: {', '.join(source.aliases)})" if source.aliases else ""
        click.echo(f"  source  {source.name}{aliases}  [{source.plugin}] {source.description}")
    for channel in sorted(hooks.channels(manager).values(), key=lambda c: c.name):
        click.echo(f"  channel {channel.name}  [{channel.plugin}] {channel.description}")


def _subsystem_commands() -> list[click.Command]:
    from app.campaigns.cli import COMMANDS as campaigns
    from app.ingest.cli import COMMANDS as ingest
    from app.quota.cli import COMMANDS as quota
    from app.reconcile.cli import COMMANDS as reconcile
    from app.scheduling.cli import COMMANDS as scheduling
    from app.tenancy.cli import COMMANDS as tenancy

    return [*tenancy, *scheduling, *ingest, *reconcile, *quota, *campaigns]


for _command in _subsystem_commands():
    cli.add_command(_command)

#: The subsystems' commands: each reads or writes the database.
_DATABASE_COMMANDS = {command.name for command in _subsystem_commands()}


def init_app(app) -> None:
    """Register the CLI commands of the subsystems on ``app`` (``flask --app wsgi ...`` sees them too)."""
    for command in (db_group, check, plugins, *_subsystem_commands()):
        app.cli.add_command(command)


def main() -> None:
    """The ``fairq`` console script."""
    try:
        get_settings()
    except SettingsError as exc:
        click.echo(f"fairq: {exc}", err=True)
        sys.exit(2)
    cli.main(prog_name="fairq")
