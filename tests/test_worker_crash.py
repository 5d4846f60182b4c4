"""`kill -9` of a worker in the middle of a video job: another worker finishes the job, and
exactly one decision is stored. Real processes, real video, a real database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select
from tests.media import video

from prescreen.jobs.models import Job
from prescreen.screening.models import Decision
from prescreen.screening.service import ScreenRequest, submit_video


def _worker(env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "prescreen.cli", "worker"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def _job(db, job_id) -> Job:
    with db.session(readonly=True) as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_worker_job_is_done_once_by_another(db) -> None:
    clip = video(seconds=60, size=(640, 360), seed=5)
    request = ScreenRequest(None, content_id="crash-1", submitted_by="test")
    job_id = submit_video(db, request, clip, "crash.mp4")["job"]["id"]
    env = {
        **os.environ,
        "PRESCREEN_DATABASE_URL": db.url,
        "PRESCREEN_JOB_LEASE_SECONDS": "2",
        "PRESCREEN_LOG_JSON": "true",
    }
    first = _worker(env)
    try:
        _wait(lambda: _job(db, job_id).status == "running", 60, "the first worker to claim")
        time.sleep(0.3)
        assert _job(db, job_id).status == "running", "the job finished before the kill"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 0
    second = _worker(env)
    try:
        _wait(lambda: _job(db, job_id).status == "done", 120, "the second worker to finish")
    finally:
        second.send_signal(signal.SIGTERM)  # as a service manager stops it: gracefully
        assert second.wait(timeout=20) == 0
    job = _job(db, job_id)
    assert job.attempts == 2 and job.error is None
    assert job.result["decision"]["content_id"] == "crash-1"
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1
