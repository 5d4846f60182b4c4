"""`/v1/transparency`: statements of reasons for users and platforms, the DSA Transparency
Database export and its schema, the TCO report, the transparency report and its charts, CSAM
report bundles, and review proceedings against removal orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from prescreen.audit.service import record as audit_record
from prescreen.core.auth import Actor, Role
from prescreen.core.config import Settings
from prescreen.core.deps import SESSION, get_settings, require
from prescreen.core.errors import InvalidInput
from prescreen.core.validation import CleanStr, Identifier
from prescreen.transparency import charts, csam, report, statements, tco
from prescreen.transparency.metrics import transparency_metrics

router = APIRouter(prefix="/v1/transparency", tags=["transparency"])
UUID = r"^[0-9a-f-]{36}$"
Id = Annotated[str, Path(pattern=UUID)]
STATEMENT_READERS = (Role.integrator, Role.moderator, Role.lead, Role.legal, Role.auditor)
REPORT_READERS = (Role.lead, Role.legal, Role.auditor)
LEGAL_READERS = (Role.legal, Role.auditor)
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)
From = Annotated[
    date | None, Query(alias="from", description="First day (UTC), default 30 days ago")
]
To = Annotated[date | None, Query(alias="to", description="Last day included (UTC), default today")]


def period(start: date | None, end: date | None) -> tuple[datetime, datetime]:
    """[first day 00:00, day after the last day 00:00) in UTC; 30 days up to today by default."""
    last = end or datetime.now(UTC).date()
    first = start or last - timedelta(days=29)
    if not (EARLIEST <= first <= LATEST and EARLIEST <= last <= LATEST):
        raise InvalidInput("dates must lie between 2000-01-01 and 2100-12-31")
    if first > last:
        raise InvalidInput("`from` must not be after `to`")
    return (
        datetime(first.year, first.month, first.day, tzinfo=UTC),
        datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1),
    )


def _sees_everything(actor: Actor) -> bool:
    return actor.role is not Role.integrator


# ---------------------------------------------------------------------------------------------
# Statements of reasons


@router.get("/statements/{statement_id}", summary="A statement of reasons, as the user sees it")
def read_statement(
    statement_id: Id,
    actor: Actor = Depends(require(*STATEMENT_READERS)),
    session: Session = SESSION,
) -> dict:
    sor = statements.get_statement(session, statement_id, actor.key_id, _sees_everything(actor))
    return statements.user_statement(session, sor)


@router.get("/statements", summary="Every statement of reasons about one content")
def list_statements(
    content_id: Annotated[Identifier, Query(description="The platform's content id")],
    actor: Actor = Depends(require(*STATEMENT_READERS)),
    session: Session = SESSION,
) -> dict:
    found = statements.statements_for_content(
        session, content_id, actor.key_id, _sees_everything(actor)
    )
    return {"statements": [statements.user_statement(session, s) for s in found]}


@router.get("/dsa/schema", summary="The JSON Schema of a DSA Transparency Database batch")
def dsa_schema(_actor: Actor = Depends(require(*STATEMENT_READERS))) -> dict:
    return statements.dsa_schema()


@router.get("/dsa/export", summary="Statements in the DSA database's format, in batches of 100")
def dsa_export(
    start: From = None,
    end: To = None,
    actor: Actor = Depends(require(*REPORT_READERS)),
    session: Session = SESSION,
) -> dict:
    first, last = period(start, end)
    rows = statements.statements_between(session, first, last)
    batches = list(statements.dsa_batches(session, rows))
    audit_record(
        session, actor.label, "transparency.dsa.export", "statements_of_reasons",
        {"from": first, "to": last, "statements": len(rows), "batches": len(batches)},
    )  # fmt: skip
    return {"statements": len(rows), "batches": batches}


# ---------------------------------------------------------------------------------------------
# Reports and charts


@router.get("/report", summary="Transparency figures for a period (json, csv or html)")
def read_report(
    start: From = None,
    end: To = None,
    format: Literal["json", "csv", "html"] = "json",
    _actor: Actor = Depends(require(*REPORT_READERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> Response:
    body = report.build(session, settings, *period(start, end))
    if format == "csv":
        return Response(report.to_csv(body), media_type="text/csv; charset=utf-8")
    if format == "html":
        return HTMLResponse(report.to_html(body))
    return Response(report.to_json(body), media_type="application/json")


@router.get("/charts/{name}.{fmt}", summary="One chart of the transparency figures")
def read_chart(
    name: Literal[tuple(charts.CHARTS)],  # type: ignore[valid-type]
    fmt: Literal["png", "svg"],
    start: From = None,
    end: To = None,
    _actor: Actor = Depends(require(*REPORT_READERS)),
    session: Session = SESSION,
) -> Response:
    figures = transparency_metrics(session, *period(start, end))
    media = "image/png" if fmt == "png" else "image/svg+xml"
    return Response(charts.render(name, figures, fmt), media_type=media)


@router.get("/tco", summary="The TCO transparency report (Regulation (EU) 2021/784 Art. 7(3))")
def read_tco(
    year: Annotated[int | None, Query(ge=2022, le=2100)] = None,
    start: From = None,
    end: To = None,
    format: Literal["json", "html"] = "json",
    _actor: Actor = Depends(require(*REPORT_READERS)),
    session: Session = SESSION,
    settings: Settings = Depends(get_settings),
) -> Response:
    if year is not None and (start or end):
        raise InvalidInput("give a year or a from/to period, not both")
    bounds = tco.year_bounds(year) if year is not None else period(start, end)
    body = tco.tco_report(session, settings, *bounds)
    if format == "html":
        return HTMLResponse(report.tco_to_html(body))
    return Response(report.to_json(body), media_type="application/json")


class ProceedingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_id: Annotated[str, Field(pattern=UUID)]
    kind: Literal["administrative", "judicial"]
    brought_at: datetime | None = None
    note: CleanStr = Field("", max_length=2000)


class ProceedingDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["pending", "upheld", "annulled", "withdrawn"]
    reinstated: bool = False


@router.post("/tco/proceedings", summary="Record a review brought against a removal order",
             status_code=201)  # fmt: skip
def create_proceeding(
    body: ProceedingCreate,
    actor: Actor = Depends(require(Role.legal)),
    session: Session = SESSION,
) -> dict:
    if body.brought_at is not None and body.brought_at.tzinfo is None:
        raise InvalidInput("brought_at needs a time zone, e.g. 2026-12-01T00:00:00Z")
    row = tco.record_proceeding(
        session, actor.label, body.order_id, body.kind, body.brought_at, body.note
    )
    return tco.proceeding_to_dict(row)


@router.patch("/tco/proceedings/{proceeding_id}", summary="The outcome of a review proceeding")
def decide_proceeding(
    proceeding_id: Id,
    body: ProceedingDecision,
    actor: Actor = Depends(require(Role.legal)),
    session: Session = SESSION,
) -> dict:
    row = tco.decide_proceeding(session, actor.label, proceeding_id, body.outcome, body.reinstated)
    return tco.proceeding_to_dict(row)


# ---------------------------------------------------------------------------------------------
# CSAM report bundles


class Reporter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: CleanStr = Field(..., min_length=1, max_length=256)
    email: CleanStr = Field("", max_length=256)
    phone: CleanStr = Field("", max_length=64)


class CollectRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reporter: Reporter


class Submitted(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ncmec_report_id: CleanStr = Field(..., min_length=1, max_length=64)


@router.post("/csam-reports", summary="Bundle every confirmed CSAM case not yet bundled",
             status_code=201)  # fmt: skip
def collect_csam_reports(
    body: CollectRequest,
    actor: Actor = Depends(require(Role.legal)),
    session: Session = SESSION,
) -> dict:
    reporter = {k: v for k, v in body.reporter.model_dump().items() if v}
    created = csam.collect(session, actor.label, reporter)
    return {"created": [csam.report_to_dict(r) for r in created]}


@router.get("/csam-reports", summary="CSAM report bundles")
def list_csam_reports(
    status: Literal["ready", "submitted"] | None = None,
    actor: Actor = Depends(require(*LEGAL_READERS)),
    session: Session = SESSION,
) -> dict:
    reports = csam.list_reports(session, status)
    audit_record(session, actor.label, "transparency.csam.read", "csam_reports",
                 {"reports": len(reports)})  # fmt: skip
    return {"reports": [csam.report_to_dict(r) for r in reports]}


@router.get("/csam-reports/{report_id}", summary="One CSAM report bundle")
def read_csam_report(
    report_id: Id,
    actor: Actor = Depends(require(*LEGAL_READERS)),
    session: Session = SESSION,
) -> dict:
    report_ = csam.get_report(session, report_id)
    audit_record(session, actor.label, "transparency.csam.read", f"csam_report:{report_.id}")
    return csam.report_to_dict(report_)


@router.post("/csam-reports/{report_id}/submitted", summary="NCMEC accepted the report")
def csam_report_submitted(
    report_id: Id,
    body: Submitted,
    actor: Actor = Depends(require(Role.legal)),
    session: Session = SESSION,
) -> dict:
    report_ = csam.mark_submitted(session, actor.label, report_id, body.ncmec_report_id)
    return csam.report_to_dict(report_)
