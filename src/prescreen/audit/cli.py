"""`prescreen audit`: verify an export offline (no database), export, sign, prove."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from prescreen.audit.verify import ExportError, parse_heads, verify_export

app = typer.Typer(help="The tamper-evident audit log: verify, export, sign tree heads, proofs.")


def _public_key(value: str | None) -> bytes | None:
    """A base64 key, a file holding one, or a file holding /v1/audit/public-key's JSON."""
    from prescreen.audit.logformat import unb64

    if value is None:
        return None
    path = Path(value.removeprefix("@"))
    text = path.read_text() if (value.startswith("@") or path.is_file()) else value
    text = text.strip()
    if text.startswith("{"):
        text = json.loads(text)["public_key"]
    key = unb64(text)
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return key


@app.command("verify")
def verify(
    export: Annotated[
        Path, typer.Argument(help="An export (prescreen audit export), or - for stdin")
    ],
    heads: Annotated[
        list[Path],
        typer.Option("--heads", help="More signed tree heads (from witnesses, earlier exports)"),
    ] = [],  # noqa: B006
    public_key: Annotated[
        str | None,
        typer.Option(
            help="The log's public key (base64, or a file): pin it, do not trust the export"
        ),
    ] = None,
) -> None:
    """Check an export offline: numbering, every entry against its hash and signature, every
    signed tree head. Needs no database. Exit status 1 names the first bad entry."""
    from prescreen.core.cli_context import emit, err_console

    try:
        key = _public_key(public_key)
        extra = [h for path in heads for h in parse_heads(path.read_text().splitlines(True))]
        if str(export) == "-":
            report = verify_export(sys.stdin, extra, key)
        else:
            with export.open(encoding="utf-8") as handle:
                report = verify_export(handle, extra, key)
    except (OSError, ValueError, ExportError, KeyError) as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    emit(report.to_dict())
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if not report.ok:
        problem = report.first_problem
        assert problem is not None
        where = (
            f"first bad entry: {report.first_bad_entry}; "
            if report.first_bad_entry is not None
            else ""
        )
        err_console.print(f"[bold red]FAILED[/] {where}{problem.message}", highlight=False)
        raise typer.Exit(1)
    err_console.print(
        f"OK: {report.entries} entries, {report.heads} signed tree heads, "
        f"{report.covered} entries covered by a verified head",
        highlight=False,
    )


@app.command("export")
def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout")] = None,
) -> None:
    """Write every entry and signed tree head as NDJSON (signs a fresh head first)."""
    from prescreen.audit import service
    from prescreen.core.cli_context import CLI_ACTOR, database, settings

    db, cfg = database(), settings()
    with db.session() as session:
        service.record(session, CLI_ACTOR, "audit.export", "audit_log", {})
    with db.session() as session:
        service.sign_tree_head(session, cfg, force=True)
    with db.session() as session:
        lines = service.export_lines(session, cfg)
        if output is None:
            for line in lines:
                sys.stdout.write(line)
        else:
            with output.open("w", encoding="utf-8") as handle:
                handle.writelines(lines)


@app.command("sign")
def sign() -> None:
    """Sign a tree head of the log now and print it."""
    from prescreen.audit import service
    from prescreen.core.cli_context import database, emit, settings

    with database().session() as session:
        head = service.sign_tree_head(session, settings(), force=True)
        assert head is not None
        emit(service.head_to_dict(head))


@app.command("public-key")
def public_key_command() -> None:
    """Print the log's public key (to hand to auditors and witnesses)."""
    from prescreen.audit import service
    from prescreen.core.cli_context import emit, settings

    emit(service.public_key_info(settings()))


@app.command("prove")
def prove(
    index: Annotated[int | None, typer.Option(help="Inclusion proof of this entry")] = None,
    first: Annotated[int | None, typer.Option(help="Consistency proof from this size")] = None,
    tree_size: Annotated[int | None, typer.Option(help="Default: the latest signed head")] = None,
) -> None:
    """Print an inclusion proof (--index) or a consistency proof (--first)."""
    from prescreen.audit import service
    from prescreen.core.cli_context import database, emit, fail
    from prescreen.core.errors import PrescreenError

    if (index is None) == (first is None):
        fail("give exactly one of --index and --first")
    try:
        with database().session() as session:
            if index is not None:
                emit(service.inclusion(session, index, tree_size))
            else:
                assert first is not None
                emit(service.consistency(session, first, tree_size))
    except PrescreenError as exc:
        fail(exc)
