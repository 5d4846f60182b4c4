"""A synthetic 13-week history of a mid-sized platform, for the charts in the README and
docs/transparency.md: `python tests/transparency/demo_history.py docs/charts`.

It writes the records prescreen keeps (contents, decisions, review cases and decisions,
appeals, removal orders) straight into a fresh SQLite database with past timestamps, then runs
`prescreen transparency report` on it as a user would. The numbers are made up.
"""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prescreen.core.db import Database
from prescreen.core.schema import import_all_models, upgrade
from prescreen.legal.models import LegalRequest, RemovalOrder
from prescreen.review.models import Appeal, ReviewCase, ReviewDecision
from prescreen.screening.models import Content, Decision

END = datetime(2026, 11, 23, tzinfo=UTC)
DAYS = 91
LABELS = [("terrorism", 0.5), ("hate", 0.25), ("violent_extremism", 0.12), ("csam", 0.08),
          ("ncii", 0.05)]  # fmt: skip
SLA_HOURS = {"csam": 1, "terrorism": 4, "violent_extremism": 4, "ncii": 4, "hate": 24}
PRIORITY = {"csam": 0, "terrorism": 1, "violent_extremism": 1, "ncii": 1, "hate": 2}


def _label(rng: random.Random) -> str:
    return rng.choices([name for name, _ in LABELS], [w for _, w in LABELS])[0]


def _content(at: datetime, n: int) -> Content:
    return Content(id=str(uuid.uuid4()), content_id=f"post-{n}", user_id=f"u{n % 997}",
                   kind="photo", fingerprint=uuid.uuid4().hex, signals={}, meta={},
                   created_at=at)  # fmt: skip


def _decision(content: Content, outcome: str, at: datetime, reasons: list, automated=True):
    return Decision(id=str(uuid.uuid4()), content_pk=content.id, outcome=outcome,
                    reasons=reasons, matches=[], automated=automated,
                    statement_of_reasons_id=None if outcome == "allow" else str(uuid.uuid4()),
                    created_at=at)  # fmt: skip


def _match(label: str, action: str) -> list[dict]:
    return [{"kind": "bank_match", "action": action, "bank": f"{label}-list", "entry": 1,
             "label": label, "labels": [label], "signal_type": "pdq", "distance": 12,
             "threshold": 31}]  # fmt: skip


def _review(session, rng, content, held, label, n) -> None:
    waited = timedelta(hours=rng.expovariate(1 / (SLA_HOURS[label] * 0.45)))
    decided = held.created_at + waited
    if decided > END:
        return
    verdict = "violating" if rng.random() < 0.72 else "not_violating"
    case = ReviewCase(id=str(uuid.uuid4()), kind="held", status="decided",
                      priority=PRIORITY[label], labels=[label], csam=label == "csam",
                      created_at=held.created_at,
                      due_at=held.created_at + timedelta(hours=SLA_HOURS[label]),
                      outcome=verdict, decided_at=decided,
                      sla_breached=waited > timedelta(hours=SLA_HOURS[label]))  # fmt: skip
    review = ReviewDecision(id=str(uuid.uuid4()), case_id=case.id, verdict=verdict,
                            label=label if verdict == "violating" else None,
                            reviewer=f"user:mod{n % 7}", reviewer_role="moderator",
                            created_at=decided)  # fmt: skip
    outcome = "block" if verdict == "violating" else "allow"
    reason = [{"kind": "review", "verdict": verdict, "label": review.label, "case": case.id,
               "review_decision": review.id}]  # fmt: skip
    human = _decision(content, outcome, decided, reason, automated=False)
    session.add_all([case, review, human])
    if verdict == "violating" and rng.random() < 0.08:
        _appeal(session, rng, content, human, review, decided)


def _appeal(session, rng, content, decision, review, at) -> None:
    filed = at + timedelta(hours=rng.uniform(2, 72))
    if filed + timedelta(hours=24) > END:
        return
    outcome = "reversed" if rng.random() < 0.3 else "upheld"
    decided = filed + timedelta(hours=rng.uniform(1, 20))
    case = ReviewCase(id=str(uuid.uuid4()), kind="appeal", status="decided", priority=2,
                      labels=[], created_at=filed, due_at=filed + timedelta(hours=24),
                      outcome=outcome, decided_at=decided)  # fmt: skip
    session.add(case)
    session.flush()
    session.add(Appeal(id=str(uuid.uuid4()), content_pk=content.id,
                       screening_decision_id=decision.id,
                       review_decision_id=review.id if review else None, case_id=case.id,
                       user_id=content.user_id, status="decided", outcome=outcome,
                       decided_at=case.decided_at, created_at=filed))  # fmt: skip


def _order(session, rng, at: datetime, n: int) -> None:
    request = LegalRequest(id=str(uuid.uuid4()), type="removal_order", status="approved",
                           authority="Bundeskriminalamt", jurisdiction="DE",
                           legal_basis="Regulation (EU) 2021/784, Article 3",
                           reference=f"TCO-2026-{n}", received_at=at, digest="0" * 64,
                           created_by="legal")  # fmt: skip
    minutes = rng.choice([rng.uniform(6, 40)] * 5 + [rng.uniform(55, 80)])
    executed = at + timedelta(minutes=minutes)
    content = _content(at - timedelta(days=2), 900000 + n)
    removal = _decision(content, "block", executed, [{"kind": "removal_order",
                        "authority": "Bundeskriminalamt", "jurisdiction": "DE",
                        "reference": request.reference,
                        "legal_basis": request.legal_basis}], automated=False)  # fmt: skip
    removal.policy_version = "removal-order"
    order = RemovalOrder(id=str(uuid.uuid4()), request_id=request.id, status="executed",
                         received_at=at, deadline_at=at + timedelta(hours=1),
                         items=[{"content_id": content.content_id, "status": "removed"}],
                         executed_at=executed, executed_by="legal")  # fmt: skip
    session.add_all([request, content, removal, order])


def populate(db: Database, seed: int = 7) -> None:
    rng = random.Random(seed)
    n = 0
    with db.session() as session:
        for day in range(DAYS):
            start = END - timedelta(days=DAYS - day)
            for _ in range(int(rng.gauss(160, 25))):
                n += 1
                at = start + timedelta(seconds=rng.uniform(0, 86400))
                content = _content(at, n)
                session.add(content)
                roll = rng.random()
                if roll > 0.07:
                    session.add(_decision(content, "allow", at, [{"kind": "no_match"}]))
                    continue
                label = _label(rng)
                outcome = "block" if roll < 0.025 and label != "hate" else "hold"
                decision = _decision(content, outcome, at, _match(label, outcome))
                session.add(decision)
                if outcome == "hold":
                    _review(session, rng, content, decision, label, n)
                elif rng.random() < 0.04:
                    _appeal(session, rng, content, decision, None, at)
            if day % 9 == 4:
                _order(session, rng, start + timedelta(hours=rng.uniform(8, 18)), day)


def main(out: Path) -> None:
    import_all_models()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/demo.db"
        db = Database(url)
        upgrade(db)
        populate(db)
        db.dispose()
        first = (END - timedelta(days=DAYS)).date().isoformat()
        last = (END - timedelta(days=1)).date().isoformat()
        env = {"PRESCREEN_DATABASE_URL": url, "PRESCREEN_DATA_DIR": tmp, "PATH": ""}
        subprocess.run([sys.executable, "-m", "prescreen.cli", "transparency", "report",
                        "--from", first, "--to", last, "--format", "json",
                        "--out", str(out / "report.json"), "--charts", str(out)],
                       env=env, check=True)  # fmt: skip


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/charts"))
