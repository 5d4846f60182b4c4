"""The `prescreen` command: every domain's commands under one roof."""

from __future__ import annotations

import signal
from datetime import timedelta
from typing import Annotated

import typer

from prescreen.audit.cli import app as audit_app
from prescreen.banks.cli import app as bank_app
from prescreen.classify.cli import app as classify_app
from prescreen.core.auth import Role, create_api_key, revoke_api_key
from prescreen.core.cli_context import database, emit, err_console, fail, matcher, settings
from prescreen.core.errors import PrescreenError
from prescreen.exchange.cli import app as exchange_app
from prescreen.franking.cli import app as franking_app
from prescreen.legal.cli import app as legal_app
from prescreen.matching.backfill_cli import backfill_command
from prescreen.review.cli import app as user_app
from prescreen.screening.cli import hash_command, scan_command, screen_command
from prescreen.screening.retroscan_cli import app as retroscan_app
from prescreen.transparency.cli import app as transparency_app

app = typer.Typer(
    help="prescreen: screen uploads against hash banks before they go live.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
apikey_app = typer.Typer(help="Create and revoke API keys.")
db_app = typer.Typer(help="Database schema.")
app.add_typer(bank_app, name="bank")
app.add_typer(classify_app, name="classify")
app.add_typer(apikey_app, name="apikey")
app.add_typer(db_app, name="db")
app.add_typer(franking_app, name="franking")
app.add_typer(user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(legal_app, name="legal")
app.add_typer(exchange_app, name="exchange")
app.add_typer(transparency_app, name="transparency")
app.add_typer(retroscan_app, name="retroscan")
app.command("hash")(hash_command)
app.command("screen")(screen_command)
app.command("scan")(scan_command)
app.command("backfill")(backfill_command)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: PRESCREEN_HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="Default: PRESCREEN_PORT or 8000")] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="HTTP worker processes. Default: PRESCREEN_WEB_WORKERS, or one per core"),
    ] = None,
) -> None:
    """Serve the API on http://HOST:PORT (migrating the database first)."""
    from prescreen.core import server
    from prescreen.core.logging import configure_logging

    cfg = settings()
    configure_logging(cfg.log_level, cfg.log_json)
    count = server.worker_count(cfg, workers)
    server.prepare_environment(cfg, count)
    database().dispose()  # migrated; workers open their own connections
    server.serve(cfg, host or cfg.host, port or cfg.port, count)


@app.command()
def worker(
    kinds: Annotated[
        list[str], typer.Option("--kind", help="Only these job kinds (repeatable)")
    ] = [],  # noqa: B006
) -> None:
    """Run a job worker (video screening, webhooks, ...) until interrupted. Run one per core."""
    from prescreen.banks import jobs as _bank_jobs  # noqa: F401  (registers handlers)
    from prescreen.core.logging import configure_logging
    from prescreen.jobs.service import Worker
    from prescreen.screening import service as _screening  # noqa: F401  (registers handlers)

    cfg = settings()
    configure_logging(cfg.log_level, cfg.log_json)
    runner = Worker(
        database(),
        kinds=kinds or None,
        lease=timedelta(seconds=cfg.job_lease_seconds),
        context={"settings": cfg, "matcher": matcher()},
    )
    asked = 0

    def stop(_signum: int, _frame: object) -> None:
        """SIGTERM (systemd, Kubernetes, `kill`) or SIGINT: finish and store the job in hand,
        then exit. Asked again: exit now; that job is redone once its lease expires."""
        nonlocal asked
        asked += 1
        if asked > 1:
            raise SystemExit(130)
        runner.stop()

    for stopping in (signal.SIGTERM, signal.SIGINT):  # whatever the starting shell ignored
        signal.signal(stopping, stop)
    runner.run_forever()


@apikey_app.command("create")
def apikey_create(
    role: Annotated[Role, typer.Option(help="What the key may do")],
    name: Annotated[str, typer.Option(help="Who or what uses it")] = "",
) -> None:
    """Create an API key. The key is printed once; only its hash is stored."""
    try:
        with database().session() as session:
            row, key = create_api_key(session, role, name)
            emit({"key": key, "key_id": row.key_id, "role": row.role, "name": row.name})
        err_console.print("Store this key now: it cannot be shown again.")
    except PrescreenError as exc:
        fail(exc)


@apikey_app.command("revoke")
def apikey_revoke(key_id: str) -> None:
    """Revoke a key by its id (the part after `psk_`)."""
    with database().session() as session:
        if not revoke_api_key(session, key_id):
            fail(f"no key with id {key_id!r}")
    emit({"revoked": key_id})


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply database migrations (also done automatically by every command)."""
    database()
    emit({"database": settings().database_url.split("@")[-1], "schema": "current"})


if __name__ == "__main__":
    app()
