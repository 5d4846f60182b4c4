"""A job queue in the database: leases with timeouts, retries with backoff, a dead-letter state.

A worker claims a job by taking its lease in one atomic UPDATE (with SKIP LOCKED on PostgreSQL).
A worker that dies leaves its lease to expire, and another worker takes the job over. A handler
commits its effects in the same transaction that marks the job done, fenced on still holding the
lease, so a job's effects are stored exactly once even when two workers ran it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from prometheus_client import Counter
from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from prescreen.core.db import Database, DatabaseUnavailable, utcnow
from prescreen.core.errors import NotFound, PrescreenError
from prescreen.core.memory import anonymous_mb, check_growth, release_free_memory
from prescreen.jobs.models import Job, JobBlob, JobStatus

log = logging.getLogger(__name__)
JOBS = Counter("prescreen_jobs_total", "Jobs finished", ["kind", "status"])
DEFAULT_LEASE = timedelta(seconds=60)
REARM_SECONDS = 60.0
# A job that ran this long or left this much more memory resident (a retro-scan, a video) hands
# what it freed back to the system. By memory as well as time: a retro-scan of 200,000 entries
# can finish within a second on a fast host and still leave 50 MB behind. The memory figure is
# above what requests served meanwhile hold (up to 20 MB a worker at 16 uploads at once), so a
# short job during a burst does not count as large.
RELEASE_AFTER_SECONDS = 1.0
RELEASE_AFTER_MB = 32.0


class PermanentJobError(PrescreenError):
    """The job cannot succeed however often it is retried (e.g. a corrupt video)."""

    code = "job_failed"


class LeaseLost(Exception):
    """Another worker took the job over; this worker's results must not be stored."""


@dataclass
class JobContext:
    """What a handler gets: the job, a session whose commit also completes the job, the worker."""

    job: Job
    session: Session
    worker: Worker


Handler = Callable[[JobContext], dict[str, Any] | None]
_HANDLERS: dict[str, Handler] = {}


def job_handler(kind: str) -> Callable[[Handler], Handler]:
    """Register the function that runs jobs of `kind`."""

    def register(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn

    return register


def enqueue(
    session: Session,
    kind: str,
    payload: dict[str, Any],
    submitted_by: str = "",
    max_attempts: int = 5,
    delay: timedelta = timedelta(0),
    dedupe_key: str | None = None,
    blob: tuple[bytes, str] | None = None,
) -> Job:
    """Queue a job in the caller's transaction (so it exists only if the caller commits)."""
    job = Job(
        id=str(uuid.uuid4()),
        kind=kind,
        payload=payload,
        max_attempts=max_attempts,
        run_after=utcnow() + delay,
        submitted_by=submitted_by,
        dedupe_key=dedupe_key,
    )
    session.add(job)
    if blob is not None:
        session.add(JobBlob(job_id=job.id, data=blob[0], filename=blob[1][:256]))
    session.flush()
    return job


def find_by_dedupe_key(session: Session, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.dedupe_key == key))


def take_blob(session: Session, job_id: str) -> tuple[bytes, str]:
    """The job's bytes; deleted with the job's completion (same transaction)."""
    blob = session.get(JobBlob, job_id)
    if blob is None:
        raise PermanentJobError("the job's upload is gone")
    data, name = blob.data, blob.filename
    session.delete(blob)
    return data, name


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    return job


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "result": job.result,
        "error": job.error,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def backoff(attempt: int) -> timedelta:
    """1 s, 2 s, 4 s ... capped at 5 minutes."""
    return timedelta(seconds=min(300, 2 ** max(0, attempt - 1)))


class Worker:
    """Claims and runs jobs until stopped. Several may run in several processes."""

    def __init__(
        self,
        db: Database,
        name: str | None = None,
        kinds: list[str] | None = None,
        lease: timedelta = DEFAULT_LEASE,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.db = db
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.kinds = kinds
        self.lease = lease
        self.context = context or {}
        self._stop = threading.Event()

    def claim(self) -> Job | None:
        """Take the lease of the next due job: a queued one, or one whose lease has expired."""
        now = utcnow()
        due = or_(
            and_(Job.status == JobStatus.queued.value, Job.run_after <= now),
            and_(Job.status == JobStatus.running.value, Job.lease_expires_at < now),
        )
        candidate = select(Job.id).where(due).order_by(Job.run_after).limit(1)
        # Only kinds this process can run: a worker built without some domain must leave its
        # jobs to the processes that have it, not fail them.
        candidate = candidate.where(Job.kind.in_(self.kinds or sorted(_HANDLERS)))
        candidate = candidate.with_for_update(skip_locked=True).scalar_subquery()
        with self.db.session() as session:
            job = session.scalars(
                update(Job)
                .where(Job.id == candidate, due)
                .values(
                    status=JobStatus.running.value,
                    lease_owner=self.name,
                    lease_expires_at=now + self.lease,
                    attempts=Job.attempts + 1,
                    updated_at=now,
                )
                .returning(Job)
                .execution_options(synchronize_session=False)
            ).one_or_none()
            if job is not None:
                session.expunge(job)
            return job

    def run_one(self) -> bool:
        """Claim and run one job; False when none was due."""
        job = self.claim()
        if job is None:
            return False
        if job.attempts > job.max_attempts:
            self._fail(job, f"gave up after {job.max_attempts} attempts", permanent=True)
            return True
        handler = _HANDLERS.get(job.kind)
        if handler is None:
            self._fail(job, f"no handler for job kind {job.kind!r}", permanent=True)
            return True
        heartbeat = _Heartbeat(self, job.id)
        started, held_before = time.monotonic(), anonymous_mb()
        try:
            with heartbeat, self.db.session() as session:
                result = handler(JobContext(job=job, session=session, worker=self))
                self._complete(session, job, result or {})
        except LeaseLost:
            log.warning("lease lost; another worker finishes the job", extra={"job": job.id})
        except PermanentJobError as exc:
            self._fail(job, exc.message, permanent=True)
        except Exception as exc:
            log.exception("job failed", extra={"job": job.id, "kind": job.kind})
            self._fail(job, f"{type(exc).__name__}: {exc}", permanent=False)
        finally:
            self._after_large_job(started, held_before)
        return True

    def _after_large_job(self, started: float, held_before: float) -> None:
        """Give back what a large job freed, and stop taking jobs if this process kept too much
        of it (it is then replaced, `core.memory.check_growth`). Small jobs skip both: a trim
        and a full collection cost tens of milliseconds."""
        took = time.monotonic() - started
        if took < RELEASE_AFTER_SECONDS and anonymous_mb() - held_before < RELEASE_AFTER_MB:
            return
        release_free_memory()
        if check_growth():
            self.stop()

    def _complete(self, session: Session, job: Job, result: dict[str, Any]) -> None:
        """Mark done in the handler's transaction, only while this worker still holds the lease."""
        now = utcnow()
        done = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.lease_owner == self.name, Job.status == "running")
            .values(
                status=JobStatus.done.value,
                result=result,
                error=None,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if done.rowcount != 1:
            raise LeaseLost(job.id)
        JOBS.labels(job.kind, "done").inc()

    def _fail(self, job: Job, error: str, permanent: bool) -> None:
        now = utcnow()
        dead = permanent or job.attempts >= job.max_attempts
        values: dict[str, Any] = {
            "status": (JobStatus.dead if dead else JobStatus.queued).value,
            "error": error[:4000],
            "lease_owner": None,
            "lease_expires_at": None,
            "updated_at": now,
        }
        if dead:
            values["finished_at"] = now
        else:
            values["run_after"] = now + backoff(job.attempts)
        with self.db.session() as session:
            session.execute(
                update(Job)
                .where(Job.id == job.id, Job.lease_owner == self.name)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if dead:  # uploads are not kept once nothing will use them
                session.execute(delete(JobBlob).where(JobBlob.job_id == job.id))
        JOBS.labels(job.kind, "dead" if dead else "retry").inc()
        log.warning("job failed", extra={"job": job.id, "dead": dead, "error": error[:300]})

    def extend_lease(self, job_id: str) -> bool:
        with self.db.session() as session:
            renewed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.lease_owner == self.name, Job.status == "running")
                .values(lease_expires_at=utcnow() + self.lease)
                .execution_options(synchronize_session=False)
            )
            return renewed.rowcount == 1

    def run_forever(self, poll_seconds: float = 0.5) -> None:
        log.info("worker started", extra={"worker": self.name, "kinds": self.kinds})
        next_arming = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_arming:
                self.arm_periodic()
                next_arming = time.monotonic() + REARM_SECONDS
            try:
                if not self.run_one():
                    self._stop.wait(poll_seconds)
            except DatabaseUnavailable as exc:  # busy (a long SQLite write) or down: no traceback
                log.warning("database unavailable; retrying", extra={"error": exc.message})
                self._stop.wait(poll_seconds * 4)
            except Exception:
                log.exception("worker loop error; retrying")
                self._stop.wait(poll_seconds * 4)

    def arm_periodic(self) -> None:
        """Make sure every scheduled kind has its next run queued. A run queues the next one
        when it finishes, so a run that died (out of attempts during a database outage, say)
        would end its chain; workers re-arm once a minute, and the slot's unique key keeps
        each slot to one job however many workers do it."""
        settings = self.context.get("settings")
        if settings is None:
            return
        from prescreen.audit.periodic import arm_all

        arm_all(self.db, settings)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name=f"worker-{self.name}", daemon=True)
        thread.start()
        return thread


class _Heartbeat:
    """Renew the lease every third of its length while a long job runs."""

    def __init__(self, worker: Worker, job_id: str) -> None:
        self.worker, self.job_id = worker, job_id
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        interval = self.worker.lease.total_seconds() / 3
        while not self._done.wait(interval):
            try:
                if not self.worker.extend_lease(self.job_id):
                    return
            except Exception:
                log.exception("lease renewal failed", extra={"job": self.job_id})

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
