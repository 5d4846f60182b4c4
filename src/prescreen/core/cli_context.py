"""What every CLI command shares: settings, a migrated database, and a matcher on demand."""

from __future__ import annotations

import json
import sys
from functools import cache
from typing import Any

import typer
from rich.console import Console

from prescreen.core.config import Settings, get_settings, reset_settings
from prescreen.core.db import Database
from prescreen.core.errors import PrescreenError
from prescreen.core.schema import upgrade
from prescreen.matching.service import Matcher

# Soft wrap: an error line stays one line in logs and pipes, whatever the terminal width.
err_console = Console(stderr=True, soft_wrap=True)
CLI_ACTOR = "cli"


@cache
def settings() -> Settings:
    return get_settings()


@cache
def database() -> Database:
    db = Database(settings().database_url)
    upgrade(db)
    return db


@cache
def matcher() -> Matcher:
    m = Matcher(snapshot_dir=settings().data_dir / "index")
    with database().session() as session:
        m.rebuild(session)
    return m


def reset() -> None:
    """Forget settings, database and matcher (for embedding the CLI, e.g. in tests)."""
    reset_settings()
    for cached in (settings, database, matcher):
        cached.cache_clear()


def emit(obj: Any) -> None:
    """One JSON object per line on stdout, for pipes and scripts."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fail(exc: PrescreenError | str, code: int = 1) -> None:
    message = exc.message if isinstance(exc, PrescreenError) else exc
    err_console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)
