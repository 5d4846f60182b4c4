"""`prescreen franking ...`: list, rotate and retire the platform's franking keys."""

from __future__ import annotations

from typing import Annotated

import typer

from prescreen.core.cli_context import database, emit, fail, settings
from prescreen.core.errors import PrescreenError
from prescreen.franking import service

app = typer.Typer(help="Platform keys for message franking (end-to-end-safe reports).")


@app.command("keys")
def keys() -> None:
    """List the keys: id, public key, when each stopped stamping and retires (no secrets)."""
    with database().session() as session:
        for row in service.list_keys(session):
            emit(service.key_to_dict(row))


@app.command("rotate-key")
def rotate_key(
    retire_after_days: Annotated[
        float | None,
        typer.Option(help="How long the old key keeps verifying reports (default: configured)"),
    ] = None,
) -> None:
    """Start stamping with a new key; older keys keep verifying until they retire."""
    try:
        with database().session() as session:
            emit(service.key_to_dict(service.rotate_key(session, settings(), retire_after_days)))
    except PrescreenError as exc:
        fail(exc)


@app.command("retire-key")
def retire_key(key_id: int) -> None:
    """Retire a key now: it stops stamping and reports under it no longer verify."""
    try:
        with database().session() as session:
            emit(service.key_to_dict(service.retire_key(session, key_id)))
    except PrescreenError as exc:
        fail(exc)
