"""A worker process only takes the jobs it can run: one built without some part of prescreen
leaves that part's jobs (queued by other processes) to the processes that have it."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from prescreen.core.config import Settings
from prescreen.jobs.models import Job
from prescreen.jobs.service import Worker, enqueue
from prescreen.matching.service import Matcher
from prescreen.screening.retroscan import FEED_JOB


def test_a_worker_leaves_jobs_it_has_no_code_for_to_others(db) -> None:
    with db.session() as session:
        job_id = enqueue(session, "added_by_a_plugin_this_process_lacks", {}).id
    assert Worker(db).run_one() is False
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        assert (job.status, job.attempts, job.error) == ("queued", 0, None)


def test_workers_restart_a_schedule_whose_last_run_died(db, tmp_path) -> None:
    """A periodic run that ran out of attempts (e.g. during a database outage) would end its
    schedule; a worker re-arms it by itself."""
    settings = Settings(database_url=db.url, data_dir=tmp_path, retroscan_interval_seconds=0.2,
                        _env_file=None)  # fmt: skip
    with db.session() as session:
        dead = enqueue(session, FEED_JOB, {"slot": 1}, max_attempts=1)
        dead.status, dead.attempts = "dead", 1
    worker = Worker(db, context={"settings": settings, "matcher": Matcher()})
    worker.start_thread()
    try:
        deadline = time.monotonic() + 20
        while not _done_runs(db):
            assert time.monotonic() < deadline, "the schedule did not resume"
            time.sleep(0.1)
    finally:
        worker.stop()


def _done_runs(db) -> int:
    with db.session(readonly=True) as session:
        return session.scalar(
            select(func.count()).where(Job.kind == FEED_JOB, Job.status == "done")
        )
