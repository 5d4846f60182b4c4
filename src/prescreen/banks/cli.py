"""`prescreen bank ...`: create banks, fill them from files or lists, export them."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from prescreen.banks import service
from prescreen.banks.models import BankKind
from prescreen.core.cli_context import CLI_ACTOR, database, emit, err_console, fail, settings
from prescreen.core.config import Settings
from prescreen.core.errors import PrescreenError
from prescreen.core.memory import collector_paused
from prescreen.matching.service import refresh_snapshot
from prescreen.screening.service import Hashed, hash_bytes, hash_text, hash_url
from prescreen.signals.base import ContentKind
from prescreen.signals.logo import logo_value

app = typer.Typer(help="Create banks, add content to them, import and export them.")


@app.command("create")
def create(
    name: str,
    label: Annotated[list[str], typer.Option("--label", "-l", help="Label (repeatable)")] = [],  # noqa: B006
    kind: Annotated[BankKind, typer.Option(help="What a match does")] = BankKind.block,
    threshold: Annotated[int, typer.Option(help="PDQ match threshold (bits)")] = 31,
    description: Annotated[str, typer.Option()] = "",
    logo_threshold: Annotated[
        float | None,
        typer.Option(help="Make a logo bank: files added are logos, found at this confidence"),
    ] = None,
) -> None:
    """Create a bank."""
    try:
        with database().session() as session:
            bank = service.create_bank(
                session,
                name,
                labels=label,
                kind=kind.value,
                pdq_threshold=threshold,
                description=description,
                logo_threshold=logo_threshold,
            )
            emit(service.bank_to_dict(bank, 0))
    except PrescreenError as exc:
        fail(exc)


@app.command("list")
def list_banks(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List banks with their entry counts."""
    with database().session() as session:
        rows = service.list_banks(session)
        if as_json:
            for bank, count in rows:
                emit(service.bank_to_dict(bank, count))
            return
        table = Table("name", "kind", "labels", "pdq threshold", "entries", "enabled")
        for bank, count in rows:
            table.add_row(
                bank.name, bank.kind, ",".join(bank.labels), str(bank.pdq_threshold),
                str(count), "yes" if bank.enabled else "no",
            )  # fmt: skip
        err_console.print(table)


@app.command("add")
def add(
    name: str,
    files: Annotated[list[Path], typer.Argument(help="Images or text files to add")] = [],  # noqa: B006
    text: Annotated[list[str], typer.Option("--text", help="A text to add (repeatable)")] = [],  # noqa: B006
    url: Annotated[list[str], typer.Option("--url", help="A URL to add (repeatable)")] = [],  # noqa: B006
    signal: Annotated[
        list[str], typer.Option("--signal", help="A raw signal TYPE:VALUE, e.g. pdq:<64 hex>")
    ] = [],  # noqa: B006
    label: Annotated[list[str], typer.Option("--label", "-l")] = [],  # noqa: B006
    note: Annotated[str, typer.Option()] = "",
) -> None:
    """Add content to a bank: files, texts, URLs or raw signals. Prints each new entry."""
    if not (files or text or url or signal):
        fail("give files, --text, --url or --signal to add", code=2)
    cfg, failures, new = settings(), 0, []
    try:
        with database().session() as session:
            logo_bank = service.get_bank(session, name).logo_threshold is not None
    except PrescreenError as exc:
        fail(exc)
    hash_file = _logo_of if logo_bank else _bank_hashes
    items = [(str(p), lambda p=p: hash_file(p, cfg)) for p in files]
    items += [(t[:40], lambda t=t: hash_text(t, cfg)) for t in text]
    items += [(u, lambda u=u: hash_url(u, cfg)) for u in url]
    for source, compute in items:
        try:
            hashed = compute()
            new.append(
                service.NewEntry.validated(
                    hashed.signals, labels=label, note=note, content_type=hashed.kind.value
                )
            )
        except (PrescreenError, OSError) as exc:
            failures += 1
            err_console.print(f"[red]skipped {source}:[/] {getattr(exc, 'message', exc)}")
    for raw in signal:
        signal_type, _, value = raw.partition(":")
        try:
            new.append(service.NewEntry.validated({signal_type: value}, labels=label, note=note))
        except PrescreenError as exc:
            failures += 1
            err_console.print(f"[red]skipped {raw}:[/] {exc.message}")
    try:
        with database().session() as session:
            bank = service.get_bank(session, name)
            for entry in service.add_entries(session, bank, new, added_by=CLI_ACTOR):
                emit(service.entry_to_dict(entry, bank.name))
    except PrescreenError as exc:
        fail(exc)
    if failures:
        raise typer.Exit(1)


def _bank_hashes(path: Path, cfg: Settings) -> Hashed:
    return hash_bytes(path.read_bytes(), cfg, path.name, for_bank=True)


def _logo_of(path: Path, cfg: Settings) -> Hashed:
    """A logo bank's entry: the reference logo's features."""
    return Hashed(ContentKind.photo, {"logo": logo_value(path.read_bytes(), cfg.max_image_pixels)})


@app.command("import")
def import_file(
    name: str,
    file: Annotated[Path, typer.Argument(help="File to import, or - for standard input")],
    fmt: Annotated[str, typer.Option("--format", help="ndjson or hma-csv")] = "ndjson",
    skip_invalid: Annotated[
        bool, typer.Option(help="Skip bad lines instead of refusing all")
    ] = False,
) -> None:
    """Import entries. By default one invalid line rejects the whole file, naming each bad line."""
    if fmt not in service.PARSERS:
        fail(f"unknown format {fmt!r}; use one of {', '.join(service.PARSERS)}", code=2)
    try:
        lines = (sys.stdin.read() if str(file) == "-" else file.read_text("utf-8")).splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {exc}")
    source = f"import:{Path(str(file)).name}"
    try:
        with Progress(console=err_console, transient=True) as progress, collector_paused():
            task = progress.add_task("validating", total=len(lines))
            valid, report = service.validate_lines(
                lines, service.PARSERS[fmt], source, skip_invalid,
                progress=lambda done: progress.update(task, completed=done),
            )  # fmt: skip
            del lines
            progress.update(task, description=f"writing {len(valid):,} entries", total=None)
            with database().session() as session:
                bank = service.get_bank(session, name)
                service.write_import(session, bank, valid, report, CLI_ACTOR, source)
            del valid
            progress.update(task, description="indexing")
            refresh_snapshot(database(), settings().data_dir / "index")
    except PrescreenError as exc:
        for error in exc.detail.get("errors", [])[:20]:
            err_console.print(f"  line {error['line']}: {error['message']}", highlight=False)
        fail(exc)
    emit(report.to_dict())


@app.command("export")
def export(
    name: str,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write here instead of stdout")
    ] = None,
) -> None:
    """Export a bank as NDJSON: a header line, then one entry per line."""
    try:
        with database().session() as session:
            bank = service.get_bank(session, name)
            stream = open(out, "w", encoding="utf-8") if out else sys.stdout  # noqa: SIM115
            try:
                for line in service.export_ndjson(session, bank):
                    stream.write(line)
            finally:
                if out:
                    stream.close()
    except PrescreenError as exc:
        fail(exc)


@app.command("update")
def update(
    name: str,
    kind: Annotated[BankKind | None, typer.Option()] = None,
    threshold: Annotated[int | None, typer.Option()] = None,
    description: Annotated[str | None, typer.Option()] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
) -> None:
    """Change a bank's settings."""
    fields = {
        "kind": kind.value if kind else None,
        "pdq_threshold": threshold,
        "description": description,
        "enabled": enabled,
    }
    try:
        with database().session() as session:
            emit(service.bank_to_dict(service.update_bank(session, name, **fields)))
    except PrescreenError as exc:
        fail(exc)


@app.command("delete")
def delete(
    name: str, yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False
) -> None:
    """Delete a bank and all its entries."""
    if not yes:
        typer.confirm(f"Delete bank {name!r} and all its entries?", abort=True)
    try:
        with database().session() as session:
            service.delete_bank(session, name)
    except PrescreenError as exc:
        fail(exc)


@app.command("disable-entry")
def disable_entry(
    name: str,
    entry_id: int,
    until: Annotated[
        datetime | None, typer.Option(help="Re-enable automatically at this UTC time")
    ] = None,
) -> None:
    """Stop an entry from matching, for good or until a time."""
    _set_entry(name, entry_id, enabled=False, disabled_until=_as_utc(until))


@app.command("enable-entry")
def enable_entry(name: str, entry_id: int) -> None:
    """Let a disabled entry match again."""
    _set_entry(name, entry_id, enabled=True)


def _as_utc(moment: datetime | None) -> datetime | None:
    from datetime import UTC

    return moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment


def _set_entry(name: str, entry_id: int, **state) -> None:
    try:
        with database().session() as session:
            bank = service.get_bank(session, name)
            entry = service.set_entry_state(
                session, service.get_entry(session, bank, entry_id), **state
            )
            emit(service.entry_to_dict(entry, bank.name))
    except PrescreenError as exc:
        fail(exc)
