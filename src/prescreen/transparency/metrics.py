"""The numbers behind the dashboard and the transparency report: decisions by outcome, label and
source over time, the share automated, review against its SLA, appeals and reversals, and the
time from receipt to removal of each removal order."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.legal.models import RemovalOrder
from prescreen.review.models import Appeal, ReviewCase
from prescreen.review.service import PRIORITY_NAMES
from prescreen.screening.models import Decision
from prescreen.transparency.statements import RESTRICTIVE, decision_labels

OUTCOMES = ("allow", "hold", "block")
SOURCES = ("automatic", "review", "removal_order")  # appeals only ever lift restrictions
TOP_LABELS = 6


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, cut into day, week or month buckets depending on its length."""

    start: datetime
    end: datetime

    @property
    def bucket(self) -> str:
        days = (self.end - self.start).days
        return "day" if days <= 62 else "week" if days <= 366 else "month"

    def key(self, moment: datetime) -> date:
        day = moment.astimezone(UTC).date()
        if self.bucket == "week":
            return day - timedelta(days=day.weekday())
        if self.bucket == "month":
            return day.replace(day=1)
        return day

    def keys(self) -> list[date]:
        found, day = [], self.start.astimezone(UTC).date()
        last = (self.end - timedelta(microseconds=1)).astimezone(UTC).date()
        while day <= last:
            key = self.key(datetime(day.year, day.month, day.day, tzinfo=UTC))
            if not found or found[-1] != key:
                found.append(key)
            day += timedelta(days=1)
        return found


def source_of(decision: Decision) -> str:
    if decision.automated:
        return "automatic"
    kinds = {r.get("kind") for r in decision.reasons or []}
    if "removal_order" in kinds:
        return "removal_order"
    return "appeal" if "appeal" in kinds else "review"


def _first_label(decision: Decision) -> str:
    labels = decision_labels(decision)
    if labels:
        return labels[0]
    return "terrorism" if source_of(decision) == "removal_order" else "unlabelled"


def _series(keys: list[date], rows: list[tuple[date, str]], names: list[str]) -> dict:
    counts: dict[str, Counter] = defaultdict(Counter)
    for key, name in rows:
        counts[name][key] += 1
    return {name: [counts[name].get(k, 0) for k in keys] for name in names}


def decisions(session: Session, period: Period) -> dict[str, Any]:
    """Every decision counts by outcome (two columns read); only restrictive ones, a small
    share, are read whole for their labels and source."""
    within = (Decision.created_at >= period.start, Decision.created_at < period.end)
    rows = session.execute(select(Decision.created_at, Decision.outcome).where(*within)).all()
    restrictive = list(
        session.scalars(select(Decision).where(*within, Decision.outcome.in_(RESTRICTIVE)))
    )
    keys = period.keys()
    labelled = [(period.key(d.created_at), _first_label(d)) for d in restrictive]
    ranked = [name for name, _ in Counter(name for _, name in labelled).most_common()]
    top = ranked[:TOP_LABELS]
    labelled = [(k, name if name in top else "other") for k, name in labelled]
    if len(ranked) > TOP_LABELS:
        top.append("other")
    automatic = sum(1 for d in restrictive if d.automated)
    return {
        "buckets": [k.isoformat() for k in keys],
        "total": len(rows),
        "by_outcome": _series(
            keys, [(period.key(at), outcome) for at, outcome in rows], list(OUTCOMES)
        ),
        "restrictive_by_label": _series(keys, labelled, top),
        "restrictive_by_source": _series(
            keys, [(period.key(d.created_at), source_of(d)) for d in restrictive], list(SOURCES)
        ),
        "totals": {
            "by_outcome": dict(Counter(outcome for _, outcome in rows)),
            "restrictive": len(restrictive),
            "restrictive_automated": automatic,
            "restrictive_human": len(restrictive) - automatic,
            "automated_share": round(automatic / len(restrictive), 4) if restrictive else None,
        },
    }


def review_sla(session: Session, period: Period) -> dict[str, Any]:
    cases = list(
        session.scalars(
            select(ReviewCase).where(
                ReviewCase.decided_at >= period.start, ReviewCase.decided_at < period.end
            )
        )
    )
    by_priority = {}
    for index, name in enumerate(PRIORITY_NAMES):
        mine = [c for c in cases if c.priority == index]
        hours = [(c.decided_at - c.created_at).total_seconds() / 3600 for c in mine]
        by_priority[name] = {
            "decided": len(mine),
            "within_sla": sum(1 for c in mine if not c.sla_breached),
            "breached": sum(1 for c in mine if c.sla_breached),
            "median_hours": round(median(hours), 3) if hours else None,
        }
    within = sum(1 for c in cases if not c.sla_breached)
    return {
        "decided": len(cases),
        "within_sla": within,
        "within_sla_share": round(within / len(cases), 4) if cases else None,
        "by_priority": by_priority,
    }


def appeals(session: Session, period: Period) -> dict[str, Any]:
    rows = list(
        session.scalars(
            select(Appeal).where(Appeal.created_at >= period.start, Appeal.created_at < period.end)
        )
    )
    keys = period.keys()
    decided = [a for a in rows if a.outcome]
    reversed_ = sum(1 for a in decided if a.outcome == "reversed")
    series = _series(keys, [(period.key(a.created_at), a.outcome or "pending") for a in rows],
                     ["upheld", "reversed", "pending"])  # fmt: skip
    return {
        "buckets": [k.isoformat() for k in keys],
        "filed": len(rows),
        "decided": len(decided),
        "reversed": reversed_,
        "reversal_rate": round(reversed_ / len(decided), 4) if decided else None,
        "by_outcome": series,
    }


def removal_orders(session: Session, period: Period) -> dict[str, Any]:
    orders = list(
        session.scalars(
            select(RemovalOrder)
            .where(RemovalOrder.received_at >= period.start, RemovalOrder.received_at < period.end)
            .order_by(RemovalOrder.received_at)
        )
    )
    rows = [
        {
            "order": o.id,
            "received_at": o.received_at.isoformat(),
            "status": o.status,
            "minutes_to_removal": (
                round((o.executed_at - o.received_at).total_seconds() / 60, 2)
                if o.executed_at
                else None
            ),
            "deadline_minutes": round((o.deadline_at - o.received_at).total_seconds() / 60, 2),
        }
        for o in orders
    ]
    times = [r["minutes_to_removal"] for r in rows if r["minutes_to_removal"] is not None]
    return {
        "received": len(rows),
        "executed": len(times),
        "within_deadline": sum(
            1
            for r in rows
            if r["minutes_to_removal"] is not None
            and r["minutes_to_removal"] <= r["deadline_minutes"]
        ),
        "median_minutes": round(median(times), 2) if times else None,
        "orders": rows,
    }


def transparency_metrics(session: Session, start: datetime, end: datetime) -> dict[str, Any]:
    period = Period(start, end)
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "bucket": period.bucket},
        "decisions": decisions(session, period),
        "review_sla": review_sla(session, period),
        "appeals": appeals(session, period),
        "removal_orders": removal_orders(session, period),
    }
