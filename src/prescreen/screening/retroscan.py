"""Retro-scans: content allowed yesterday is found again when a bank gains entries today.

The stored signals of screened contents are matched against the *new* bank signals only (a
small index built for the run), so a scan costs one pass over stored contents whatever the
size of the banks. A content whose latest decision is `allow` and that now matches is decided
again by the full policy (an allow-list still wins): it is held for review or, when its bank
blocks, taken down, and the platform that submitted it is notified through its webhook.

Retro-scans follow the bank change feed: the periodic job `retroscan_feed` scans the entries
added since the last run, whichever process added them (API, CLI, imports, exchange pulls).
A run's effects commit with the job, so each new entry is scanned once across all processes.
"""

from __future__ import annotations

import logging
import uuid
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prescreen.audit.periodic import insert_ignoring_conflict, job_settings, periodic, rearm
from prescreen.audit.service import record as audit_record
from prescreen.banks.models import Bank, BankEntry, BankKind, EntrySignal, SignalChange
from prescreen.banks.service import get_bank
from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.jobs.models import Job
from prescreen.jobs.service import JobContext, enqueue, job_handler
from prescreen.matching.feed import FeedCursor
from prescreen.matching.index import IndexRows, SignalIndex, gather_by_type
from prescreen.matching.service import Matcher
from prescreen.screening.hooks import Screened, announce
from prescreen.screening.models import Content, Decision
from prescreen.screening.policy import POLICY_VERSION, Outcome, decide
from prescreen.screening.retroscan_models import RetroscanCursor, RetroscanHit, RetroscanRun
from prescreen.screening.service import Hashed, decision_to_dict
from prescreen.signals.base import ContentKind
from prescreen.signals.registry import all_types
from prescreen.webhooks.service import notify

log = logging.getLogger(__name__)
FEED_JOB = "retroscan_feed"
BANK_JOB = "retroscan_bank"
FEED = "feed"
CHANGES_PER_RUN = 100_000
_CHUNK = 1_000
T = TypeVar("T")


class ProbeIndex:
    """The run's new bank signals, indexed by type, to test stored contents against; and the
    entries they belong to."""

    def __init__(self, rows: dict[str, IndexRows], entries: np.ndarray) -> None:
        self.signals = len(entries)  # one entry id per new signal, of any type
        self.entries = np.unique(entries)
        self.indexes: dict[str, SignalIndex] = {t: column.build() for t, column in rows.items()}

    def hits(self, signals: dict[str, Any], radius: int) -> bool:
        """Whether any of a content's stored signals (or variants) is near a new signal."""
        for signal_type, index in self.indexes.items():
            values = [signals.get(signal_type)]
            variants = signals.get(f"{signal_type}_variants")
            if isinstance(variants, dict):
                values += [pair[0] for pair in variants.values() if isinstance(pair, list | tuple)]
            for value in values:
                if value is not None and _search(index, value, radius):
                    return True
        return False


def _search(index: SignalIndex, value: Any, radius: int) -> bool:
    try:
        return bool(index.search(value, radius))
    except (ValueError, TypeError):  # a stored value this index cannot read: no match
        return False


# --- runs -----------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a run will act on, worked out in a read-only transaction (the slow part: on SQLite
    a write transaction would block every other writer meanwhile)."""

    signals: int
    entries: np.ndarray  # sorted: the entries of the new signals
    candidates: list[str]
    scanned: int
    started_at: datetime

    def fresh(self, entries: set[int]) -> list[int]:
        """Those of these entries that the run's new signals belong to, sorted."""
        return [e for e in sorted(entries) if _holds(self.entries, e)]


def _holds(sorted_ids: np.ndarray, value: int) -> bool:
    at = int(np.searchsorted(sorted_ids, value))
    return at < len(sorted_ids) and int(sorted_ids[at]) == value


def scan_feed(
    db: Database,
    matcher: Matcher,
    settings: Settings,
    actor: str = "system",
    session: Session | None = None,
) -> RetroscanRun | None:
    """Scan the entries added since the last feed scan; None when there were none. The results
    commit with the feed position (in `session`, e.g. a job's, or a transaction of its own);
    a scan that finds the position moved by a concurrent one fails with a conflict."""
    with db.session(readonly=True) as reader:
        row = reader.get(RetroscanCursor, FEED)
        start = FeedCursor.from_dict({"position": row.position, "gaps": row.gaps} if row else None)
        change_ids, added = _pending_changes(reader, start)
        plan = _plan(reader, settings, _probe_index(reader, added))
    feed = FeedCursor.from_dict(start.to_dict())
    feed.advance(change_ids)

    def act(writer: Session) -> RetroscanRun | None:
        cursor_row = _lock_feed_cursor(writer)
        if FeedCursor.from_dict(_cursor_dict(cursor_row)).to_dict() != start.to_dict():
            raise Conflict("another retro-scan moved the feed meanwhile; run this one again")
        cursor_row.position, cursor_row.gaps = feed.position, feed.gaps
        if not plan.signals:
            return None
        first, last = change_ids[0], change_ids[-1]
        return _act(writer, matcher, settings, plan, FEED, actor, None, first, last)

    return _in_transaction(db, session, act)


def scan_bank(
    db: Database,
    matcher: Matcher,
    settings: Settings,
    bank_name: str,
    after_entry: int = 0,
    actor: str = "system",
    session: Session | None = None,
) -> RetroscanRun:
    """Scan a bank's entries (those after `after_entry`, or all) on demand, e.g. after
    importing a list or widening a bank's threshold."""
    with db.session(readonly=True) as reader:
        bank = get_bank(reader, bank_name)
        if bank.kind == BankKind.allow.value:
            raise InvalidInput(f"bank {bank_name!r} is an allow-list; it cannot hold or block")
        entries = select(EntrySignal.id).join(BankEntry, EntrySignal.entry_id == BankEntry.id)
        query = entries.where(BankEntry.bank_id == bank.id, BankEntry.id > after_entry)
        ids = array("q", reader.scalars(query.execution_options(yield_per=_CHUNK)))
        plan = _plan(reader, settings, _probe_index(reader, ids))

    def act(writer: Session) -> RetroscanRun:
        return _act(writer, matcher, settings, plan, "bank", actor, bank.name, None, None)

    return _in_transaction(db, session, act)


def _in_transaction(db: Database, session: Session | None, work: Callable[[Session], T]) -> T:
    if session is not None:
        return work(session)
    with db.session() as writer:
        return work(writer)


def _cursor_dict(row: RetroscanCursor) -> dict[str, Any]:
    return {"position": row.position, "gaps": row.gaps}


def _pending_changes(session: Session, start: FeedCursor) -> tuple[array[int], array[int]]:
    """The ids of the next changes in the feed (at most CHANGES_PER_RUN) and of the signals
    they add, as compact arrays: a run after a bulk import reads 100,000 of them, and what a
    worker allocates at its peak stays in its heap."""
    query = (
        select(SignalChange.id, SignalChange.op, SignalChange.signal_id)
        .where(start.pending(SignalChange.id))
        .order_by(SignalChange.id)
        .limit(CHANGES_PER_RUN)
        .execution_options(yield_per=_CHUNK)
    )
    change_ids, added = array("q"), array("q")
    for change_id, op, signal_id in session.execute(query):
        change_ids.append(change_id)
        if op == "add":
            added.append(signal_id)
    return change_ids, added


def _plan(reader: Session, settings: Settings, probe: ProbeIndex) -> Plan:
    started = utcnow()
    candidates, scanned = _candidates(reader, probe, settings) if probe.signals else ([], 0)
    return Plan(probe.signals, probe.entries, candidates, scanned, started)


def _lock_feed_cursor(session: Session) -> RetroscanCursor:
    insert_ignoring_conflict(
        session, RetroscanCursor, {"name": FEED, "position": 0, "gaps": [], "note": "",
                                   "updated_at": utcnow()}, "name",
    )  # fmt: skip
    return session.scalars(
        select(RetroscanCursor).where(RetroscanCursor.name == FEED).with_for_update()
    ).one()


def _probe_index(session: Session, signal_ids: Sequence[int]) -> ProbeIndex:
    """The probe index of those of these signals that belong to live entries in banks that
    hold or block (allow-lists never act), read a chunk at a time into compact columns
    (`IndexRows`)."""
    query = (
        select(EntrySignal.id, EntrySignal.entry_id, EntrySignal.signal_type, EntrySignal.value)
        .join(BankEntry, EntrySignal.entry_id == BankEntry.id)
        .join(Bank, BankEntry.bank_id == Bank.id)
        .where(Bank.kind != BankKind.allow.value)
    )
    rows: dict[str, IndexRows] = {}
    entries = array("q")
    for start in range(0, len(signal_ids), _CHUNK):
        chunk = list(signal_ids[start : start + _CHUNK])
        found = session.execute(query.where(EntrySignal.id.in_(chunk))).all()
        entries.extend(row.entry_id for row in found)
        gather_by_type(rows, ((r.id, r.signal_type, r.value) for r in found), _kind_if_registered)
    return ProbeIndex(rows, np.frombuffer(entries, dtype=np.int64))


def _kind_if_registered(signal_type: str) -> str | None:
    """A type no longer registered is counted, not probed."""
    found = all_types().get(signal_type)
    return found.index_kind if found is not None else None


def _act(
    session: Session,
    matcher: Matcher,
    settings: Settings,
    plan: Plan,
    trigger: str,
    actor: str,
    bank: str | None,
    first_change: int | None,
    last_change: int | None,
) -> RetroscanRun:
    """Record the run and decide again on each candidate, in the writing transaction."""
    run = RetroscanRun(
        trigger=trigger, bank=bank, first_change=first_change, last_change=last_change,
        entries=len(plan.entries), signals=plan.signals, actor=actor,
        started_at=plan.started_at, contents_scanned=plan.scanned,
    )  # fmt: skip
    session.add(run)
    session.flush()
    hits = sum(_recheck(session, matcher, settings, run, pk, plan) for pk in plan.candidates)
    run.hits, run.finished_at = hits, utcnow()
    audit_record(session, actor, "retroscan.run", f"retroscan:{run.id}", run_to_dict(run))
    log.info("retro-scan finished", extra=run_to_dict(run))
    return run


def _candidates(session: Session, probe: ProbeIndex, settings: Settings) -> tuple[list[str], int]:
    """Stored contents with a signal near a new one (any decision; rechecked one by one)."""
    if not probe.indexes:
        return [], 0
    radius = session.scalar(select(func.max(Bank.pdq_threshold))) or 0
    query = select(Content.id, Content.signals)
    if settings.retroscan_lookback_days:
        since = utcnow() - timedelta(days=settings.retroscan_lookback_days)
        query = query.where(Content.created_at >= since)
    found, scanned = [], 0
    for content_pk, signals in session.execute(query).yield_per(_CHUNK):
        scanned += 1
        if isinstance(signals, dict) and probe.hits(signals, radius):
            found.append(content_pk)
    return found, scanned


def _recheck(
    session: Session,
    matcher: Matcher,
    settings: Settings,
    run: RetroscanRun,
    content_pk: str,
    plan: Plan,
) -> bool:
    """Decide again on a previously allowed content that matches a new entry; True if it is
    now held or taken down."""
    # The row lock makes concurrent scans (the feed's and a bank's) act on a content in turn:
    # the second one then sees the first one's decision and leaves the content alone.
    content = session.get(Content, content_pk, with_for_update=True)
    previous = _latest_decision(session, content_pk)
    if content is None or previous is None or previous.outcome != Outcome.allow.value:
        return False
    hashed = Hashed(ContentKind(content.kind), content.signals)
    matches = matcher.lookup(session, hashed.matchable, variants=hashed.variants)
    fresh = plan.fresh({m.entry for m in matches})
    verdict = decide(matches, content.signals.get("pdq_quality"), settings.min_pdq_quality)
    if not fresh or verdict.outcome is Outcome.allow:
        return False
    outcome = verdict.outcome if settings.retroscan_action == "policy" else Outcome.hold
    origin = {"run": run.id, "previous_decision": previous.id, "entries": fresh}
    decision = Decision(
        id=str(uuid.uuid4()),
        content_pk=content.id,
        outcome=outcome.value,
        reasons=[{"kind": "retroscan", "action": outcome.value, **origin}, *verdict.reasons],
        matches=[m.to_dict() for m in matches],
        policy_version=POLICY_VERSION,
        statement_of_reasons_id=str(uuid.uuid4()),
        created_at=max(utcnow(), previous.created_at + timedelta(microseconds=1)),
    )
    session.add(decision)
    session.add(
        RetroscanHit(
            run_id=run.id, content_pk=content.id, content_id=content.content_id,
            previous_decision_id=previous.id, decision_id=decision.id, outcome=outcome.value,
            entries=fresh,
        )
    )  # fmt: skip
    session.flush()
    announce(session, Screened(content, decision))
    action = "take_down" if outcome is Outcome.block else "hold"
    body = {**decision_to_dict(decision, content), "retroscan": {**origin, "action": action}}
    notify(session, content.owner_key_id, "decision", body)
    return True


def _latest_decision(session: Session, content_pk: str) -> Decision | None:
    return session.scalars(
        select(Decision)
        .where(Decision.content_pk == content_pk)
        .order_by(Decision.created_at.desc())
        .limit(1)
    ).first()


# --- views ----------------------------------------------------------------------------------


def run_to_dict(run: RetroscanRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "trigger": run.trigger,
        "bank": run.bank,
        "first_change": run.first_change,
        "last_change": run.last_change,
        "entries": run.entries,
        "signals": run.signals,
        "contents_scanned": run.contents_scanned,
        "hits": run.hits,
        "actor": run.actor,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def hit_to_dict(hit: RetroscanHit) -> dict[str, Any]:
    return {
        "run": hit.run_id,
        "content_id": hit.content_id,
        "previous_decision": hit.previous_decision_id,
        "decision": hit.decision_id,
        "outcome": hit.outcome,
        "entries": hit.entries,
        "created_at": hit.created_at.isoformat(),
    }


def list_runs(session: Session, limit: int = 50) -> list[RetroscanRun]:
    return list(session.scalars(select(RetroscanRun).order_by(RetroscanRun.id.desc()).limit(limit)))


def list_hits(session: Session, run_id: int) -> list[RetroscanHit]:
    if session.get(RetroscanRun, run_id) is None:
        raise NotFound(f"no retro-scan {run_id}")
    return list(
        session.scalars(
            select(RetroscanHit).where(RetroscanHit.run_id == run_id).order_by(RetroscanHit.id)
        )
    )


# --- jobs -----------------------------------------------------------------------------------

periodic(FEED_JOB, lambda settings: settings.retroscan_interval_seconds)


def _job_matcher(ctx: JobContext) -> Matcher:
    """The process's matcher (kept current by the feed), or one built for this run."""
    matcher = ctx.worker.context.get("matcher")
    if matcher is None:
        matcher = Matcher()
        matcher.rebuild(ctx.session)
        ctx.worker.context["matcher"] = matcher
    return matcher


@job_handler(FEED_JOB)
def retroscan_feed_job(ctx: JobContext) -> dict[str, Any]:
    run = scan_feed(ctx.worker.db, _job_matcher(ctx), job_settings(ctx), session=ctx.session)
    rearm(ctx)
    return {"run": run.id if run else None, "hits": run.hits if run else 0}


def request_bank_scan(session: Session, bank_name: str, after_entry: int, actor: str) -> Job:
    """Queue an on-demand scan of a bank (the API's way: a large scan outlives a request)."""
    bank = get_bank(session, bank_name)
    if bank.kind == BankKind.allow.value:
        raise InvalidInput(f"bank {bank_name!r} is an allow-list; it cannot hold or block")
    payload = {"bank": bank.name, "after_entry": after_entry, "actor": actor}
    job = enqueue(session, BANK_JOB, payload, submitted_by=actor[:64], max_attempts=3)
    audit_record(session, actor, "retroscan.request", f"bank:{bank.name}", payload)
    return job


@job_handler(BANK_JOB)
def retroscan_bank_job(ctx: JobContext) -> dict[str, Any]:
    payload = ctx.job.payload
    run = scan_bank(
        ctx.worker.db, _job_matcher(ctx), job_settings(ctx), payload["bank"],
        after_entry=payload.get("after_entry", 0), actor=payload.get("actor", "system"),
        session=ctx.session,
    )  # fmt: skip
    return {"run": run.id, "hits": run.hits, "contents_scanned": run.contents_scanned}
