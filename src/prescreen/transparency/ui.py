"""The transparency page of the web UI (`/ui/transparency`): the period's figures and charts, and
the report to download, for leads, legal officers and auditors (admins pass)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape

from prescreen.core.auth import Role
from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.deps import get_db, get_settings
from prescreen.core.errors import NotFound
from prescreen.review.ui import HERE as REVIEW_HERE
from prescreen.review.ui import Login, UiRoute, require_ui
from prescreen.transparency import charts, report
from prescreen.transparency.api import period
from prescreen.transparency.metrics import transparency_metrics

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(
    env=Environment(
        loader=ChoiceLoader(
            [FileSystemLoader(HERE / "templates"), FileSystemLoader(REVIEW_HERE / "templates")]
        ),
        autoescape=select_autoescape(["html"]),
    )
)
router = APIRouter(prefix="/ui/transparency", route_class=UiRoute, include_in_schema=False)
Reader = Annotated[Login, Depends(require_ui(Role.lead, Role.legal, Role.auditor))]
From = Annotated[date | None, Query(alias="from")]
To = Annotated[date | None, Query(alias="to")]


@router.get("", response_class=HTMLResponse)
def dashboard(
    request: Request,
    login: Reader,
    start: From = None,
    end: To = None,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    first, last = period(start, end)
    with db.session() as session:
        body = report.build(session, settings, first, last)
    last_day = date.fromordinal(last.date().toordinal() - 1).isoformat()
    query = f"from={first.date().isoformat()}&to={last_day}"
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "login": login,
            "now": utcnow(),
            "active": "transparency",
            "report": body,
            "charts": list(charts.CHARTS),
            "query": query,
            "first": first.date().isoformat(),
            "last": last_day,
        },
    )


@router.get("/charts/{name}.png")
def chart(
    name: str,
    _login: Reader,
    start: From = None,
    end: To = None,
    db: Database = Depends(get_db),
) -> Response:
    if name not in charts.CHARTS:
        raise NotFound("no such chart")
    with db.session() as session:
        figures = transparency_metrics(session, *period(start, end))
    return Response(charts.render(name, figures, "png"), media_type="image/png")


@router.get("/report.{fmt}")
def download(
    fmt: Literal["html", "json", "csv"],
    _login: Reader,
    start: From = None,
    end: To = None,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    with db.session() as session:
        body = report.build(session, settings, *period(start, end))
    content, media = {
        "html": (report.to_html, "text/html; charset=utf-8"),
        "json": (report.to_json, "application/json"),
        "csv": (report.to_csv, "text/csv; charset=utf-8"),
    }[fmt]
    return Response(
        content(body),
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="transparency-report.{fmt}"'},
    )
