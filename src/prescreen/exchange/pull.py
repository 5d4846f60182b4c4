"""Following peers: fetch a feed page, verify all of it, then apply it and advance the cursor
in one transaction. An interrupted pull resumes at the cursor, so nothing is lost or applied
twice; a page that fails verification is recorded as a rejection and nothing of it is applied.
A periodic job pulls every peer that is due, backing off after failures."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from prometheus_client import Counter
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from prescreen.audit.periodic import job_settings, periodic, rearm
from prescreen.audit.service import record as audit_record
from prescreen.banks import service as banks
from prescreen.banks.models import Bank, BankEntry
from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.errors import InvalidInput
from prescreen.exchange.config import ExchangeSettings, exchange_settings
from prescreen.exchange.feedformat import FeedRejected, VerifiedPage, verify_page
from prescreen.exchange.models import (
    EntryProvenance,
    Opinion,
    OpinionKind,
    OpinionPolicy,
    Peer,
    PeerKey,
    PullCursor,
    Rejection,
)
from prescreen.exchange.service import backoff_delay, peer_keys, quarantine
from prescreen.jobs.service import JobContext, job_handler

log = logging.getLogger(__name__)
PULL_JOB = "exchange_pull"
PULLED = Counter("prescreen_exchange_items_total", "Feed items applied", ["peer", "op"])
REJECTED = Counter("prescreen_exchange_rejections_total", "Feed pages rejected", ["reason"])


class PullFailed(Exception):
    """The peer could not be pulled this time (unreachable, or a page was rejected)."""


class CursorMoved(Exception):
    """Another process applied this page first; this copy is dropped."""


@dataclass
class PullReport:
    applied: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    pages: int = 0

    def count(self, op: str, n: int = 1) -> None:
        self.applied[op] = self.applied.get(op, 0) + n


def _require_public(url: str, allow_private: bool) -> None:
    """No pulls from loopback or private addresses unless the operator allows them (SSRF)."""
    host = urlsplit(url).hostname or ""
    if allow_private:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise PullFailed(f"peer host {host} does not resolve") from exc
    private = sorted(a for a in addresses if not ipaddress.ip_address(a).is_global)
    if private:
        raise PullFailed(
            f"peer host {host} resolves to non-public {private[0]}; "
            "set PRESCREEN_EXCHANGE_ALLOW_PRIVATE_PEERS=true to allow it"
        )


def fetch_page(
    peer: Peer, remote_bank: str, after: int, xsettings: ExchangeSettings
) -> dict[str, Any]:
    _require_public(peer.base_url, xsettings.allow_private_peers)
    headers = {"User-Agent": "prescreen-exchange/1"}
    if peer.api_key:
        headers["Authorization"] = f"Bearer {peer.api_key}"
    url = f"{peer.base_url}/v1/exchange/feeds/{remote_bank}"
    try:
        response = httpx.get(
            url,
            params={"after": after, "limit": xsettings.page_size},
            headers=headers,
            timeout=xsettings.request_timeout_seconds,
            follow_redirects=False,
        )
    except httpx.HTTPError as exc:
        raise PullFailed(f"{remote_bank}: {type(exc).__name__}: {exc}"[:500]) from exc
    if response.status_code != 200:
        raise PullFailed(f"{remote_bank}: the peer answered {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise PullFailed(f"{remote_bank}: the peer's answer is not JSON") from exc


Fetch = Callable[[Peer, str, int, ExchangeSettings], dict[str, Any]]


def pull_peer(db: Database, settings: Settings, name: str, fetch: Fetch = fetch_page) -> PullReport:
    """Pull every bank followed from this peer, page by page, until caught up."""
    xsettings = exchange_settings()
    report = PullReport()
    with db.session(readonly=True) as session:
        peer = session.scalars(select(Peer).where(Peer.name == name)).one()
        session.expunge(peer)
    for follow in peer.follows:
        for _page in range(xsettings.pages_per_pull):
            with db.session() as session:
                cursor = _cursor(session, peer.id, follow["remote"])
                seq, last_hash = cursor.seq, cursor.last_hash
            page = fetch(peer, follow["remote"], seq, xsettings)
            try:
                with db.session() as session:
                    verified = _verify(session, peer, follow["remote"], page, seq, last_hash)
                    _apply(session, settings, peer, follow, verified, seq, report)
            except FeedRejected as exc:
                _reject(db, peer, follow["remote"], exc)
                raise PullFailed(
                    f"{follow['remote']}: rejected ({exc.reason}): {exc.message}"
                ) from exc
            except CursorMoved:
                continue
            report.pages += 1
            if not verified.items or verified.next_after is None:
                break
    return report


def _cursor(session: Session, peer_id: int, remote_bank: str) -> PullCursor:
    cursor = session.scalar(
        select(PullCursor).where(
            PullCursor.peer_id == peer_id, PullCursor.remote_bank == remote_bank
        )
    )
    if cursor is None:
        cursor = PullCursor(peer_id=peer_id, remote_bank=remote_bank, seq=0, last_hash="")
        session.add(cursor)
        session.flush()
    return cursor


def _verify(
    session: Session, peer: Peer, remote_bank: str, page: Any, seq: int, last_hash: str
) -> VerifiedPage:
    return verify_page(page, remote_bank, seq, last_hash, peer_keys(session, peer))


def _apply(
    session: Session,
    settings: Settings,
    peer: Peer,
    follow: dict[str, str],
    page: VerifiedPage,
    seq: int,
    report: PullReport,
) -> None:
    """Apply a verified page and move the cursor, fenced on the cursor still being where the
    page started (a second worker applying the same page rolls back)."""
    if not page.items:
        return
    last = page.items[-1]
    moved = session.execute(
        update(PullCursor)
        .where(
            PullCursor.peer_id == peer.id,
            PullCursor.remote_bank == follow["remote"],
            PullCursor.seq == seq,
        )
        .values(seq=last["body"]["seq"], last_hash=last["hash"], updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:
        raise CursorMoved
    for key_id, public in page.learnt_keys.items():
        session.add(PeerKey(peer_id=peer.id, key_id=key_id, public_key=public, source="rotation"))
    bank = banks.get_bank(session, follow["local"])
    applier = _Applier(session, settings, peer, follow, bank, report)
    for item in page.items:
        applier.apply(item["body"])
    applier.flush_adds()


class _Applier:
    """Applies items in order; consecutive adds go to the banks service in one batch."""

    def __init__(
        self,
        session: Session,
        settings: Settings,
        peer: Peer,
        follow: dict[str, str],
        bank: Bank,
        report: PullReport,
    ) -> None:
        self.session, self.settings, self.peer = session, settings, peer
        self.follow, self.bank, self.report = follow, bank, report
        self.actor = f"peer:{peer.name}"
        self.pending: list[tuple[dict[str, Any], banks.NewEntry]] = []

    def apply(self, body: dict[str, Any]) -> None:
        if body["op"] == "add":
            new = self._new_entry(body)
            if new is not None:
                self.pending.append((body, new))
            return
        self.flush_adds()
        if body["op"] == "remove":
            self._remove(str(body.get("entry")))
        else:
            self._opinion(body)

    def _new_entry(self, body: dict[str, Any]) -> banks.NewEntry | None:
        mapping = self.peer.label_map or {}
        labels = [mapping.get(str(label), str(label)) for label in body.get("labels") or []]
        try:
            return banks.NewEntry.validated(
                dict(body.get("signals") or {}),
                labels=labels,
                source=self.actor,
                content_type=body.get("content_type"),
                variants=body.get("variants") or None,
            )
        except (InvalidInput, TypeError, ValueError, AttributeError):
            self.report.skipped += 1
            return None

    def flush_adds(self) -> None:
        if not self.pending:
            return
        bodies = [body for body, _new in self.pending]
        rows = banks.add_entries(
            self.session, self.bank, [new for _body, new in self.pending], added_by=self.actor
        )
        for body, entry in zip(bodies, rows, strict=True):
            provenance = body.get("provenance") or {}
            self.session.add(
                EntryProvenance(
                    entry_id=entry.id,
                    peer_id=self.peer.id,
                    peer_name=self.peer.name,
                    origin_uid=str(body.get("entry"))[:300],
                    remote_bank=self.follow["remote"],
                    feed_seq=body["seq"],
                    origin=provenance.get("origin") if isinstance(provenance, dict) else {},
                )
            )
        self.session.flush()
        self.report.count("add", len(rows))
        PULLED.labels(self.peer.name, "add").inc(len(rows))
        self.pending = []

    def _copies(self, uid: str) -> list[BankEntry]:
        """Local copies of the peer's entry `uid` (opinions on this instance's own entries are
        recorded and shown in matches, but never change them)."""
        ids = list(
            self.session.scalars(
                select(EntryProvenance.entry_id).where(
                    EntryProvenance.peer_id == self.peer.id, EntryProvenance.origin_uid == uid
                )
            )
        )
        if not ids:
            return []
        return list(self.session.scalars(select(BankEntry).where(BankEntry.id.in_(ids))))

    def _remove(self, uid: str) -> None:
        for entry in self._copies(uid):
            banks.delete_entry(self.session, entry, actor=self.actor)
            self.report.count("remove")
            PULLED.labels(self.peer.name, "remove").inc()

    def _opinion(self, body: dict[str, Any]) -> None:
        uid, kind = str(body.get("entry"))[:300], body.get("opinion")
        if kind not in {k.value for k in OpinionKind}:
            self.report.skipped += 1
            return
        self.session.add(
            Opinion(
                entry_uid=uid,
                opinion=kind,
                by=self.actor,
                peer_id=self.peer.id,
                note=str(body.get("note") or "")[:2000],
            )
        )
        self.report.count("opinion")
        PULLED.labels(self.peer.name, "opinion").inc()
        if kind != OpinionKind.false_positive.value:
            return
        for entry in self._copies(uid):
            if self.peer.opinion_policy == OpinionPolicy.disable.value and entry.enabled:
                banks.set_entry_state(self.session, entry, enabled=False, actor=self.actor)
            elif self.peer.opinion_policy == OpinionPolicy.review.value:
                quarantine(
                    self.session, entry.id, f"false_positive from peer {self.peer.name}", self.actor
                )


def _reject(db: Database, peer: Peer, remote_bank: str, exc: FeedRejected) -> None:
    REJECTED.labels(exc.reason).inc()
    log.warning(
        "feed page rejected",
        extra={"peer": peer.name, "bank": remote_bank, "reason": exc.reason, "why": exc.message},
    )
    with db.session() as session:
        detail = {"message": exc.message, **exc.detail}
        session.add(
            Rejection(peer_id=peer.id, remote_bank=remote_bank, reason=exc.reason, detail=detail)
        )
        audit_record(
            session,
            "exchange",
            "exchange.feed.reject",
            f"peer:{peer.name}",
            {"bank": remote_bank, "reason": exc.reason, **detail},
        )


def pull_and_record(
    db: Database, settings: Settings, name: str, fetch: Fetch = fetch_page
) -> dict[str, Any]:
    """Pull one peer and store the outcome on it (success resets the backoff)."""
    xsettings = exchange_settings()
    try:
        report = pull_peer(db, settings, name, fetch)
        error = None
    except PullFailed as exc:
        report, error = None, str(exc)
    with db.session() as session:
        peer = session.scalars(select(Peer).where(Peer.name == name)).one()
        now = utcnow()
        peer.last_pull_at = now
        if error is None:
            peer.failures, peer.last_error = 0, None
            peer.next_pull_at = now + backoff_delay(0, xsettings.pull_interval_seconds, 1e9)
        else:
            peer.failures += 1
            peer.last_error = error[:2000]
            peer.next_pull_at = now + backoff_delay(
                peer.failures, xsettings.pull_interval_seconds, xsettings.max_backoff_seconds
            )
    if report is None:
        return {"peer": name, "ok": False, "error": error}
    return {
        "peer": name,
        "ok": True,
        "applied": report.applied,
        "skipped": report.skipped,
        "pages": report.pages,
    }


periodic(PULL_JOB, lambda _settings: exchange_settings().pull_interval_seconds)


@job_handler(PULL_JOB)
def pull_due_peers(ctx: JobContext) -> dict[str, Any]:
    """Pull each peer whose next pull is due; each page commits on its own."""
    settings = job_settings(ctx)
    db = ctx.worker.db
    with db.session(readonly=True) as session:
        due = list(
            session.scalars(
                select(Peer.name).where(Peer.enabled.is_(True), Peer.next_pull_at <= utcnow())
            )
        )
    results = []
    for name in due:
        try:
            results.append(pull_and_record(db, settings, name))
        except Exception:
            log.exception("pull failed", extra={"peer": name})
            results.append({"peer": name, "ok": False, "error": "unexpected error; logged"})
    rearm(ctx)
    return {"peers": results}
