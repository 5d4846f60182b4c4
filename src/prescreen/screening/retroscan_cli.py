"""`prescreen retroscan ...`: find previously allowed content that new bank entries match."""

from __future__ import annotations

from typing import Annotated

import typer

from prescreen.core.cli_context import CLI_ACTOR, database, emit, fail, matcher, settings
from prescreen.core.errors import PrescreenError
from prescreen.screening import retroscan

app = typer.Typer(help="Retro-scans: stored signals of allowed content against new bank entries.")


@app.command("feed")
def feed() -> None:
    """Scan the entries banks gained since the last scan now (the server does this every
    PRESCREEN_RETROSCAN_INTERVAL_SECONDS)."""
    try:
        run = retroscan.scan_feed(database(), matcher(), settings(), actor=CLI_ACTOR)
    except PrescreenError as exc:
        fail(exc)
    emit(retroscan.run_to_dict(run) if run else {"run": None, "reason": "no new entries"})


@app.command("bank")
def bank(
    name: str,
    after_entry: Annotated[int, typer.Option(help="Only entries with a larger id")] = 0,
) -> None:
    """Scan a bank's entries (all, or those after --after-entry) against stored content."""
    try:
        run = retroscan.scan_bank(
            database(), matcher(), settings(), name, after_entry=after_entry, actor=CLI_ACTOR
        )
    except PrescreenError as exc:
        fail(exc)
    emit(retroscan.run_to_dict(run))


@app.command("runs")
def runs(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The latest retro-scans, newest first (one JSON object per line)."""
    with database().session(readonly=True) as session:
        for run in retroscan.list_runs(session, limit):
            emit(retroscan.run_to_dict(run))


@app.command("hits")
def hits(run_id: int) -> None:
    """The contents a retro-scan held or took down."""
    try:
        with database().session(readonly=True) as session:
            for hit in retroscan.list_hits(session, run_id):
                emit(retroscan.hit_to_dict(hit))
    except PrescreenError as exc:
        fail(exc)
