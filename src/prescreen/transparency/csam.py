"""CyberTipline report bundles for confirmed CSAM (18 U.S.C. 2258A as amended by the REPORT
Act), kept for a year under a preservation hold.

Confirmed means: blocked automatically because it matched a CSAM-labelled list of known
material, or found violating with a CSAM label by a reviewer (and not reversed on appeal). A
bundle holds the report's elements in the order of NCMEC's schema groups (incident summary, the
reported user, file details) with what prescreen holds: the uploader's identifiers, upload time
with its time zone, the hashes and how the content was detected, and whether a person viewed
it. prescreen's review UI never renders CSAM-labelled media, so it records that no one did.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.audit.logformat import canonical_json
from prescreen.audit.service import record as audit_record
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.legal.models import PreservationHold
from prescreen.review.models import ReviewDecision
from prescreen.review.service import is_csam_label
from prescreen.screening.models import Content, Decision
from prescreen.transparency.models import CsamReport

PRESERVATION_DAYS = 365  # 2258A(h)(1) as amended by the REPORT Act (was 90 days)
BUNDLE_FORMAT = "prescreen-cybertipline-bundle/1"
INCIDENT_TYPE = "Child Pornography (possession, manufacture, and distribution)"
IDENTIFIER_KEYS = (
    "email", "screen_name", "display_name", "profile_url", "ip", "ip_address", "port",
    "device_id", "phone", "country", "postal_code",
)  # fmt: skip
MATCH_KINDS = ("bank_match", "bank_match_low_quality")


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _review_of(session: Session, decision: Decision) -> ReviewDecision | None:
    review_id = next(
        (r.get("review_decision") for r in decision.reasons or [] if r.get("kind") == "review"),
        None,
    )
    return session.get(ReviewDecision, review_id) if review_id else None


def confirmation(session: Session, decision: Decision) -> dict[str, Any] | None:
    """How a block decision confirmed CSAM, or None when it did not."""
    if decision.outcome != "block":
        return None
    if decision.automated:
        matches = [
            r
            for r in decision.reasons or []
            if r.get("kind") == "bank_match"
            and r.get("action") == "block"
            and any(is_csam_label(x) for x in [r.get("label") or "", *(r.get("labels") or [])])
        ]
        if matches:
            return {"method": "hash_match", "matches": matches, "reviewer": None}
        return None
    review = _review_of(session, decision)
    if review is None or review.reversed_at is not None or not is_csam_label(review.label or ""):
        return None
    return {"method": "human_review", "matches": [], "reviewer": review}


def _reinstated(session: Session, content: Content, after: datetime) -> bool:
    later = session.scalars(
        select(Decision.outcome).where(
            Decision.content_pk == content.id, Decision.created_at > after
        )
    )
    return "allow" in set(later)


def _reported_user(content: Content) -> dict[str, Any]:
    meta = content.meta or {}
    person: dict[str, Any] = {"espIdentifier": content.user_id}
    for key in IDENTIFIER_KEYS:
        if meta.get(key) not in (None, ""):
            person[key] = meta[key]
    ip = meta.get("ip") or meta.get("ip_address")
    if ip:
        person["ipCaptureEvent"] = [
            {"ipAddress": ip, "eventName": "Upload", "dateTime": _iso(content.created_at)}
        ]
    return person


def _file_details(content: Content, decision: Decision, found: dict[str, Any]) -> dict[str, Any]:
    signals = content.signals or {}
    return {
        "fileId": content.id,
        "platformContentId": content.content_id,
        "contentKind": content.kind,
        "uploadedToEspTimestamp": _iso(content.created_at),
        "hashes": {
            k: signals[k] for k in ("md5", "sha256", "pdq", "pdq_quality", "vpdq") if k in signals
        },
        "originalFileHash": signals.get("sha256") or signals.get("md5"),
        "fileViewedByEsp": False,
        "fileViewedByEspNote": "prescreen never renders CSAM-labelled media to reviewers",
        "exifViewedByEsp": False,
        "publiclyAvailable": False,
        "bytesKept": False,
        "detection": {
            "method": found["method"],
            "decisionId": decision.id,
            "decidedAt": _iso(decision.created_at),
            "automated": bool(decision.automated),
            "matches": [
                {
                    k: m.get(k)
                    for k in ("bank", "entry", "label", "signal_type", "distance", "threshold")
                }
                for m in found["matches"]
            ],
            "reviewDecisionId": found["reviewer"].id if found["reviewer"] else None,
            "reviewLabel": found["reviewer"].label if found["reviewer"] else None,
        },
    }


def build_bundle(
    content: Content,
    decision: Decision,
    found: dict[str, Any],
    reporter: dict[str, str],
    preserve_until: datetime,
) -> dict[str, Any]:
    return {
        "format": BUNDLE_FORMAT,
        "reporter": reporter,
        "incidentSummary": {
            "incidentType": INCIDENT_TYPE,
            "incidentDateTime": _iso(content.created_at),
            "incidentTimeZone": "UTC",
            "incidentDateTimeDescription": "when the platform received the upload",
            "detectedDateTime": _iso(decision.created_at),
        },
        "personOrUserReported": _reported_user(content),
        "fileDetails": [_file_details(content, decision, found)],
        "preservation": {
            "until": _iso(preserve_until),
            "basis": "18 U.S.C. 2258A(h) as amended by the REPORT Act: one year",
        },
    }


def collect(session: Session, actor: str, reporter: dict[str, str]) -> list[CsamReport]:
    """A bundle and a one-year hold for every confirmed CSAM content that has none yet."""
    if not reporter.get("name"):
        raise InvalidInput("the reporter (the platform's name and contact) is required")
    reported = set(session.scalars(select(CsamReport.content_pk)))
    created: list[CsamReport] = []
    for decision in session.scalars(
        select(Decision).where(Decision.outcome == "block").order_by(Decision.created_at)
    ):
        if decision.content_pk in reported:
            continue
        found = confirmation(session, decision)
        content = decision.content
        if found is None or _reinstated(session, content, decision.created_at):
            continue
        created.append(_create(session, actor, content, decision, found, reporter))
        reported.add(content.id)
    return created


def _create(
    session: Session,
    actor: str,
    content: Content,
    decision: Decision,
    found: dict[str, Any],
    reporter: dict[str, str],
) -> CsamReport:
    now = utcnow()
    until = now + timedelta(days=PRESERVATION_DAYS)
    report_id = str(uuid.uuid4())
    hold = PreservationHold(
        id=str(uuid.uuid4()),
        request_id=None,
        accounts=[content.user_id] if content.user_id else [],
        content_ids=[content.content_id] if content.content_id else [],
        reason=f"CyberTipline report {report_id} (18 U.S.C. 2258A(h))",
        created_by=actor,
        created_at=now,
        expires_at=until,
        renewals=0,
    )
    session.add(hold)
    bundle = build_bundle(content, decision, found, reporter, until)
    report = CsamReport(
        id=report_id,
        content_pk=content.id,
        decision_id=decision.id,
        hold_id=hold.id,
        status="ready",
        bundle=bundle,
        bundle_sha256=hashlib.sha256(canonical_json(bundle).encode()).hexdigest(),
        created_by=actor,
        created_at=now,
        preserve_until=until,
    )
    session.add(report)
    session.flush()
    audit_record(
        session, actor, "transparency.csam.bundle", f"csam_report:{report.id}",
        {"hold": hold.id, "sha256": report.bundle_sha256, "method": found["method"]},
    )  # fmt: skip
    return report


def mark_submitted(
    session: Session, actor: str, report_id: str, ncmec_report_id: str
) -> CsamReport:
    """NCMEC accepted the report: the year of preservation runs from now."""
    report = get_report(session, report_id)
    if report.status == "submitted":
        raise Conflict("the report was already submitted", ncmec_report_id=report.ncmec_report_id)
    now = utcnow()
    until = now + timedelta(days=PRESERVATION_DAYS)
    report.status, report.submitted_at, report.submitted_by = "submitted", now, actor
    report.ncmec_report_id, report.preserve_until = ncmec_report_id, until
    hold = session.get(PreservationHold, report.hold_id)
    if hold is not None:
        hold.expires_at = max(hold.expires_at, until)
    audit_record(
        session, actor, "transparency.csam.submitted", f"csam_report:{report.id}",
        {"ncmec_report_id": ncmec_report_id, "preserve_until": until},
    )  # fmt: skip
    session.flush()
    return report


def get_report(session: Session, report_id: str) -> CsamReport:
    report = session.get(CsamReport, report_id)
    if report is None:
        raise NotFound(f"no CSAM report {report_id!r}")
    return report


def list_reports(session: Session, status: str | None = None) -> list[CsamReport]:
    query = select(CsamReport).order_by(CsamReport.created_at)
    if status:
        query = query.where(CsamReport.status == status)
    return list(session.scalars(query))


def report_to_dict(report: CsamReport) -> dict[str, Any]:
    return {
        "id": report.id,
        "status": report.status,
        "decision_id": report.decision_id,
        "hold_id": report.hold_id,
        "bundle_sha256": report.bundle_sha256,
        "created_at": report.created_at.isoformat(),
        "preserve_until": report.preserve_until.isoformat(),
        "submitted_at": report.submitted_at.isoformat() if report.submitted_at else None,
        "ncmec_report_id": report.ncmec_report_id,
        "bundle": report.bundle,
    }
