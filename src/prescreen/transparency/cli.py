"""`prescreen transparency`: the transparency report with its charts, the TCO report, the DSA
Transparency Database export, CSAM report bundles, and statements for older decisions."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Transparency: reports, charts, DSA export, TCO report, CSAM bundles.")
DAY = ["%Y-%m-%d"]
FromOption = Annotated[
    datetime | None,
    typer.Option("--from", formats=DAY, help="First day, UTC (default: 30 days ago)"),
]
ToOption = Annotated[
    datetime | None, typer.Option("--to", formats=DAY, help="Last day included (default: today)")
]
OutOption = Annotated[Path | None, typer.Option("--out", help="Write here instead of stdout")]


def _day(value: datetime | None) -> date | None:
    return value.date() if value is not None else None


def _write(text: str, out: Path | None) -> None:
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")


@app.command("report")
def report_command(
    start: FromOption = None,
    end: ToOption = None,
    format: Annotated[str, typer.Option("--format", help="html|json|csv")] = "html",
    out: OutOption = None,
    charts: Annotated[
        Path | None,
        typer.Option(help="Folder for the charts as PNG and SVG (default: next to --out)"),
    ] = None,
) -> None:
    """Decisions, statements, review SLA, appeals, removal orders and the TCO items for a period,
    with every chart as PNG and SVG."""
    from prescreen.core.cli_context import database, fail, settings
    from prescreen.transparency import report
    from prescreen.transparency.api import period

    if format not in report.FORMATS:
        fail(f"--format must be one of {', '.join(report.FORMATS)}")
    try:
        bounds = period(_day(start), _day(end))
    except Exception as exc:  # InvalidInput: a readable message, not a traceback
        fail(str(getattr(exc, "message", exc)))
    with database().session() as session:
        body = report.build(session, settings(), *bounds)
    render = {"html": report.to_html, "json": report.to_json, "csv": report.to_csv}[format]
    _write(render(body), out)
    folder = charts or (out.parent / "charts" if out is not None else None)
    if folder is not None:
        for path in report.write_charts(body, folder):
            typer.echo(str(path), err=True)


@app.command("tco")
def tco_command(
    year: Annotated[int, typer.Option(min=2022, max=2100, help="Calendar year reported")],
    format: Annotated[str, typer.Option("--format", help="json|html")] = "json",
    out: OutOption = None,
) -> None:
    """The TCO transparency report (Regulation (EU) 2021/784, Art. 7(3)) for a calendar year."""
    from prescreen.core.cli_context import database, fail, settings
    from prescreen.transparency import report, tco

    if format not in ("json", "html"):
        fail("--format must be json or html")
    with database().session() as session:
        body = tco.tco_report(session, settings(), *tco.year_bounds(year))
    _write(report.tco_to_html(body) if format == "html" else report.to_json(body), out)


@app.command("dsa-export")
def dsa_export(start: FromOption = None, end: ToOption = None, out: OutOption = None) -> None:
    """Statements of reasons in the DSA Transparency Database's submission format: one batch of
    at most 100 per line, each validated against the schema."""
    from prescreen.audit.service import record
    from prescreen.core.cli_context import CLI_ACTOR, database, fail
    from prescreen.core.errors import PrescreenError
    from prescreen.transparency import statements
    from prescreen.transparency.api import period

    try:
        first, last = period(_day(start), _day(end))
        with database().session() as session:
            rows = statements.statements_between(session, first, last)
            batches = list(statements.dsa_batches(session, rows))
            details = {"from": first, "to": last, "statements": len(rows), "batches": len(batches)}
            record(session, CLI_ACTOR, "transparency.dsa.export", "statements_of_reasons", details)
    except PrescreenError as exc:
        fail(exc)
    _write("".join(json.dumps(b, ensure_ascii=False) + "\n" for b in batches), out)


@app.command("csam-bundles")
def csam_bundles(
    reporter_name: Annotated[str, typer.Option(help="The reporting platform's name")],
    reporter_email: Annotated[str, typer.Option(help="Its contact address")] = "",
) -> None:
    """Bundle every confirmed CSAM case not yet bundled, each under a one-year hold."""
    from prescreen.core.cli_context import CLI_ACTOR, database, emit, fail
    from prescreen.core.errors import PrescreenError
    from prescreen.transparency import csam

    reporter = {"name": reporter_name, **({"email": reporter_email} if reporter_email else {})}
    try:
        with database().session() as session:
            for row in csam.collect(session, CLI_ACTOR, reporter):
                emit(csam.report_to_dict(row))
    except PrescreenError as exc:
        fail(exc)


@app.command("backfill")
def backfill() -> None:
    """Write the statements of reasons still missing (e.g. decisions made before this version)."""
    from prescreen.core.cli_context import database, emit
    from prescreen.transparency import statements

    with database().session() as session:
        emit({"statements_written": statements.ensure_statements(session)})
