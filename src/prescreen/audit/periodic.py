"""Periodic work on the durable job queue: each run queues the next one for the next time slot.

A slot's job has the dedupe key `periodic:<kind>:<slot>`, so however many processes start or
finish a run at once, each slot runs once. A run that fails is retried by the queue; if it dies,
the next server start arms the kind again. Finished runs of a kind are deleted as the next one
finishes, so the queue does not grow."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.jobs.models import Job, JobStatus
from prescreen.jobs.service import JobContext

log = logging.getLogger(__name__)
Interval = Callable[[Settings], float | None]
_PERIODIC: dict[str, Interval] = {}


def periodic(kind: str, interval: Interval) -> None:
    """Declare that jobs of `kind` run every `interval(settings)` seconds (None or 0: never)."""
    _PERIODIC[kind] = interval


def arm(
    session: Session,
    settings: Settings,
    kind: str,
    now: datetime | None = None,
    current: str | None = None,
    after: float = 0.0,
) -> Job | None:
    """Queue the next run of `kind` unless one is already queued or running, in the first slot
    that starts after `after` (the finished run's slot, as a Unix time) as well as after now."""
    seconds = _PERIODIC[kind](settings)
    if not seconds:
        return None
    now = now or utcnow()
    pending = select(Job.id).where(
        Job.kind == kind, Job.status.in_([JobStatus.queued.value, JobStatus.running.value])
    )
    if current is not None:
        pending = pending.where(Job.id != current)
    if session.scalar(pending.limit(1)) is not None:
        return None
    slot = int(max(now.timestamp(), after) // seconds) + 1
    delay = max(timedelta(seconds=slot * seconds - now.timestamp()), timedelta(0))
    key = f"periodic:{kind}:{slot}"
    insert_ignoring_conflict(
        session,
        Job,
        {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "payload": {"slot": slot, "at": slot * seconds},
            "max_attempts": 3,
            "run_after": now + delay,
            "submitted_by": "system",
            "dedupe_key": key,
        },
        "dedupe_key",
    )
    return session.scalar(select(Job).where(Job.dedupe_key == key))


def insert_ignoring_conflict(session: Session, model: type, values: dict, column: str) -> None:
    """INSERT ... ON CONFLICT (column) DO NOTHING, on SQLite and PostgreSQL alike (no savepoint,
    so the caller's transaction stays usable when the row already exists)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=[column]))


def rearm(ctx: JobContext) -> None:
    """At the end of a periodic run: queue the next, forget the finished ones."""
    settings = job_settings(ctx)
    ctx.session.execute(
        delete(Job).where(
            Job.kind == ctx.job.kind, Job.status == JobStatus.done.value, Job.id != ctx.job.id
        )
    )
    # By time, not by slot number: a slot's number means nothing once the interval has changed
    # (a run armed every 60 s, then the service restarted with a day: slot 29 million of a day
    # is in the year 81,000).
    at = ctx.job.payload.get("at")
    arm(
        ctx.session,
        settings,
        ctx.job.kind,
        current=ctx.job.id,
        after=at if isinstance(at, int | float) else 0.0,
    )


def job_settings(ctx: JobContext) -> Settings:
    from prescreen.core.config import get_settings

    return ctx.worker.context.get("settings") or get_settings()


def arm_all(db: Database, settings: Settings) -> None:
    """Arm every periodic kind (at server start)."""
    for kind in sorted(_PERIODIC):
        try:
            with db.session() as session:
                arm(session, settings, kind)
        except Exception:
            log.exception("could not schedule periodic job", extra={"kind": kind})
