"""`prescreen legal`: read requests and holds, run the retention sweep and the clocks, report
time to removal, verify a production. Approvals and productions happen only through the API,
where each actor is a distinct key with the legal role (the command line has no such identity)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Legal requests: list, holds, retention sweep, removal report, checks.")


@app.command("list")
def list_command(
    status: Annotated[
        str | None, typer.Option(help="invalid|pending|approved|rejected|closed")
    ] = None,
) -> None:
    """Legal requests, newest first (one JSON object per line)."""
    from prescreen.core.cli_context import database, emit
    from prescreen.legal import service

    with database().session() as session:
        for request in service.list_requests(session, status, limit=1000):
            emit(service.request_to_dict(request))


@app.command("holds")
def holds() -> None:
    """Active preservation holds."""
    from prescreen.core.cli_context import database, emit
    from prescreen.legal import service

    with database().session() as session:
        for hold in service.active_holds(session):
            emit(service.hold_to_dict(hold))


@app.command("sweep")
def sweep() -> None:
    """Run the retention sweep now (PRESCREEN_RETENTION_DAYS; held records are kept)."""
    from prescreen.core.cli_context import database, emit, settings
    from prescreen.legal import service

    with database().session() as session:
        emit(service.retention_sweep(session, settings()))


@app.command("tick")
def tick() -> None:
    """Flag overdue emergency reviews and removal orders, send due user notices."""
    from prescreen.core.cli_context import database, emit
    from prescreen.legal import service

    with database().session() as session:
        emit(service.tick(session))


@app.command("removal-report")
def removal_report(
    year: Annotated[int | None, typer.Option(help="Calendar year (default: this year)")] = None,
) -> None:
    """Time to removal for the removal orders received in a year (TCO Art. 7 figures)."""
    from prescreen.core.cli_context import database, emit
    from prescreen.legal import service

    year = year or datetime.now(UTC).year
    with database().session() as session:
        emit(
            service.removal_report(
                session, datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
            )
        )


@app.command("verify-production")
def verify_production(
    bundle: Annotated[Path, typer.Argument(help="A production zip")],
    public_key: Annotated[
        str | None, typer.Option(help="The operator's public key, base64 (pin it)")
    ] = None,
) -> None:
    """Check a production offline: manifest signature and every file's SHA-256."""
    from prescreen.core.cli_context import emit, err_console
    from prescreen.legal.production import verify_bundle

    key = base64.b64decode(public_key) if public_key else None
    manifest, problems = verify_bundle(bundle.read_bytes(), key)
    emit({"ok": not problems, "problems": problems, "manifest": manifest})
    if problems:
        err_console.print(f"[bold red]FAILED[/] {problems[0]}", highlight=False)
        raise typer.Exit(1)
