"""The job queue: leases, retries, dead letters, fencing, webhooks, and asynchronous video."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from tests.media import video
from tests.webhook_receiver import WebhookReceiver

from prescreen.core.db import utcnow
from prescreen.jobs.models import Job, JobBlob
from prescreen.jobs.service import PermanentJobError, Worker, enqueue, job_handler
from prescreen.matching.service import Matcher
from prescreen.screening.models import Decision
from prescreen.webhooks.service import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

calls: list[str] = []


@job_handler("test_flaky")
def _flaky(ctx):
    calls.append(ctx.job.id)
    if ctx.job.attempts < ctx.job.payload["succeed_on"]:
        raise RuntimeError("transient failure")
    return {"attempt": ctx.job.attempts}


@job_handler("test_permanent")
def _permanent(ctx):
    raise PermanentJobError("this input can never work")


def _job(db, job_id) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        session.expunge(job)
        return job


def _make_due(db, job_id) -> None:
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(run_after=func.now()))


def test_retries_with_backoff_then_dead_letter(db) -> None:
    with db.session() as session:
        ok = enqueue(session, "test_flaky", {"succeed_on": 2}).id
        doomed = enqueue(session, "test_flaky", {"succeed_on": 99}, max_attempts=2).id
    worker = Worker(db)
    assert worker.run_one() and worker.run_one()
    first = _job(db, ok)
    assert first.status == "queued" and first.attempts == 1 and "transient" in first.error
    assert not worker.run_one()  # both are backing off
    _make_due(db, ok)
    _make_due(db, doomed)
    assert worker.run_one() and worker.run_one()
    assert _job(db, ok).status == "done" and _job(db, ok).result == {"attempt": 2}
    dead = _job(db, doomed)
    assert dead.status == "dead" and dead.attempts == 2 and dead.finished_at is not None


def test_permanent_errors_go_straight_to_dead_letter(db) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test_permanent", {}, blob=(b"bytes", "x.mp4")).id
    Worker(db).run_one()
    job = _job(db, job_id)
    assert job.status == "dead" and job.attempts == 1 and "never work" in job.error
    with db.session() as session:
        assert session.get(JobBlob, job_id) is None


def test_an_expired_lease_is_taken_over_and_the_late_worker_is_fenced_off(db) -> None:
    with db.session() as session:
        job_id = enqueue(session, "test_flaky", {"succeed_on": 1}).id
    slow = Worker(db, name="slow", lease=timedelta(seconds=30))
    claimed = slow.claim()
    assert claimed.id == job_id and claimed.lease_owner == "slow"
    assert Worker(db, name="other").claim() is None  # still leased
    with db.session() as session:  # the slow worker goes silent until its lease runs out
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    fast = Worker(db, name="fast")
    assert fast.run_one()
    assert _job(db, job_id).status == "done"
    with db.session() as session, pytest.raises(Exception, match=job_id):
        slow._complete(session, claimed, {"late": True})
    assert _job(db, job_id).result == {"attempt": 2}


def _run_until(db, settings, predicate, timeout=60.0) -> None:
    worker = Worker(db, context={"settings": settings, "matcher": Matcher()})
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "jobs did not finish in time"
        if not worker.run_one():
            with db.session() as session:  # skip the backoff wait of retried deliveries
                session.execute(
                    update(Job).where(Job.status == "queued").values(run_after=func.now())
                )
            time.sleep(0.05)


def test_video_is_screened_asynchronously_with_a_signed_webhook(
    client, auth, db, settings, receiver
) -> None:
    WebhookReceiver.fail_first = 1  # the first delivery fails and must be retried
    webhook = client.put("/v1/webhook", json={"url": receiver}, headers=auth("integrator"))
    assert webhook.status_code == 200, webhook.text
    secret = webhook.json()["secret"]
    data = video(seconds=2)
    response = client.post(
        "/v1/screen",
        files={"file": ("clip.mp4", data, "video/mp4")},
        data={"content_id": "vid-1"},
        headers=auth("integrator"),
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    again = client.post(
        "/v1/screen",
        files={"file": ("clip.mp4", data, "video/mp4")},
        data={"content_id": "vid-1"},
        headers=auth("integrator"),
    )
    assert again.status_code == 202 and again.json()["job_id"] == job_id

    _run_until(db, settings, lambda: len(WebhookReceiver.received) >= 2)
    status = client.get(f"/v1/jobs/{job_id}", headers=auth("integrator")).json()
    assert status["status"] == "done"
    decision = status["result"]["decision"]
    assert decision["decision"] == "allow" and decision["content_id"] == "vid-1"
    assert decision["content_type"] == "video" and decision["signals"]["md5"]

    headers, body = WebhookReceiver.received[-1]
    assert verify(secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify("whsec_wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    delivered = json.loads(body)
    assert delivered["event"] == "decision" and delivered["data"]["id"] == decision["id"]
    assert len(WebhookReceiver.received) == 2  # the first attempt got a 500 and was retried

    replay = client.post(
        "/v1/screen",
        files={"file": ("clip.mp4", data, "video/mp4")},
        data={"content_id": "vid-1"},
        headers=auth("integrator"),
    )
    assert replay.status_code == 200 and replay.json()["id"] == decision["id"]
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Decision)) == 1
        assert session.scalar(select(func.count()).select_from(JobBlob)) == 0


def test_webhook_urls_must_be_public_unless_allowed(client, auth) -> None:
    response = client.put(
        "/v1/webhook", json={"url": "http://127.0.0.1:9/hook"}, headers=auth("integrator")
    )
    assert response.status_code == 422 and "non-public" in response.json()["error"]["message"]
    bad = client.put("/v1/webhook", json={"url": "ftp://x.example/"}, headers=auth("integrator"))
    assert bad.status_code == 422
