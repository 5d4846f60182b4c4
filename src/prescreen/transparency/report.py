"""The transparency report for a period as JSON, CSV or a self-contained HTML page, and the
TCO report as JSON or HTML; chart files next to them."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.orm import Session

from prescreen.core.config import Settings
from prescreen.transparency import charts
from prescreen.transparency.metrics import transparency_metrics
from prescreen.transparency.statements import statements_between
from prescreen.transparency.tco import tco_report

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS = ("html", "json", "csv")
_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))


def build(session: Session, settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """Metrics, statement counts and the TCO items for [start, end)."""
    report = transparency_metrics(session, start, end)
    statements = statements_between(session, start, end)
    report["statements_of_reasons"] = {
        "total": len(statements),
        "automated_decision": sum(
            1 for s in statements if s.automated_decision == "AUTOMATED_DECISION_FULLY"
        ),
        "by_category": _count(s.category for s in statements),
        "by_ground": _count(s.decision_ground for s in statements),
        "reversed": sum(1 for s in statements if s.reversed_at is not None),
    }
    report["tco"] = tco_report(session, settings, start, end)
    return report


def _count(values) -> dict[str, int]:
    found: dict[str, int] = {}
    for value in values:
        found[value] = found.get(value, 0) + 1
    return dict(sorted(found.items()))


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


def _flatten(prefix: str, value: Any, rows: list[list[str]], buckets: list[str] | None) -> None:
    if isinstance(value, dict):
        inner = value.get("buckets", buckets)
        for key, item in value.items():
            if key != "buckets":
                _flatten(f"{prefix}.{key}" if prefix else key, item, rows, inner)
    elif (
        isinstance(value, list)
        and buckets
        and len(value) == len(buckets)
        and all(isinstance(v, int | float) for v in value)
    ):
        rows.extend([prefix, b, str(v)] for b, v in zip(buckets, value, strict=True))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, rows, None)
    else:
        rows.append([prefix, "", "" if value is None else str(value)])


def to_csv(report: dict[str, Any]) -> str:
    """One row per figure: `metric, bucket, value` (bucket empty for period totals)."""
    rows: list[list[str]] = []
    _flatten("", report, rows, None)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["metric", "bucket", "value"])
    writer.writerows(rows)
    return buffer.getvalue()


def to_html(report: dict[str, Any]) -> str:
    """A page with every chart embedded, readable offline."""
    images = {
        name: base64.b64encode(charts.render(name, report, "png")).decode("ascii")
        for name in charts.CHARTS
    }
    return _env.get_template("report.html").render(report=report, images=images)


def tco_to_html(tco: dict[str, Any]) -> str:
    return _env.get_template("tco.html").render(tco=tco)


def write_charts(report: dict[str, Any], folder: Path) -> list[Path]:
    """Every chart as PNG and SVG in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in charts.CHARTS:
        for fmt in charts.FORMATS:
            path = folder / f"{name}.{fmt}"
            path.write_bytes(charts.render(name, report, fmt))
            written.append(path)
    return written
