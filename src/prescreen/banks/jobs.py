"""Bank imports as background jobs: the API takes a large file in one request, answers at once,
and the job reports its progress until it has stored every entry (or, on error, none)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from prescreen.banks.models import Bank
from prescreen.banks.service import PARSERS, get_bank, validate_lines, write_import
from prescreen.core.db import Database
from prescreen.core.errors import InvalidInput
from prescreen.jobs.models import Job, JobBlob, JobStatus
from prescreen.jobs.service import JobContext, PermanentJobError, enqueue, job_handler, take_blob
from prescreen.signals.detect import decode_text

IMPORT_JOB = "bank.import"


def submit_import(
    session: Session, bank: Bank, data: bytes, fmt: str, skip_invalid: bool, actor: str
) -> Job:
    """Queue an import of `data` (NDJSON or HMA CSV) into `bank`."""
    payload = {"bank": bank.name, "format": fmt, "skip_invalid": skip_invalid, "actor": actor}
    return enqueue(
        session, IMPORT_JOB, payload, submitted_by=actor, max_attempts=3,
        blob=(data, f"import.{fmt}"),
    )  # fmt: skip


@job_handler(IMPORT_JOB)
def run_import(ctx: JobContext) -> dict[str, Any]:
    """Validate outside the job's transaction (reporting progress as it goes), then write
    everything in it, so a worker killed half-way leaves nothing behind."""
    db: Database = ctx.worker.db
    payload, job_id = ctx.job.payload, ctx.job.id
    with db.session(readonly=True) as session:
        blob = session.get(JobBlob, job_id)
        if blob is None:
            raise PermanentJobError("the import's file is gone")
        data = blob.data
    try:
        lines = decode_text(data, "the import file").splitlines()
    except InvalidInput as exc:
        raise PermanentJobError(exc.message) from exc
    del data

    def progress(read: int) -> None:
        report_progress(
            db, job_id, {"phase": "validating", "lines_read": read, "lines": len(lines)}
        )

    source = f"import:{payload['format']}"
    try:
        valid, report = validate_lines(
            lines, PARSERS[payload["format"]], source, payload["skip_invalid"], progress
        )
    except InvalidInput as exc:
        named = "; ".join(f"line {e['line']}: {e['message']}" for e in exc.detail["errors"][:20])
        raise PermanentJobError(f"{exc.message}: {named}") from exc
    report_progress(db, job_id, {"phase": "writing", "entries": len(valid), "lines": len(lines)})
    bank = get_bank(ctx.session, payload["bank"])
    write_import(ctx.session, bank, valid, report, payload["actor"], source)
    take_blob(ctx.session, job_id)
    return report.to_dict()


def report_progress(db: Database, job_id: str, progress: dict[str, Any]) -> None:
    """Shown as `result.progress` by `GET /v1/jobs/{id}` while the job runs."""
    with db.session() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.running.value)
            .values(result={"progress": progress})
            .execution_options(synchronize_session=False)
        )
