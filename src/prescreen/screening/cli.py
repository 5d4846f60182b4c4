"""`prescreen hash`, `prescreen screen` and `prescreen scan`."""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from prescreen.core.cli_context import (
    CLI_ACTOR,
    database,
    emit,
    err_console,
    fail,
    matcher,
    settings,
)
from prescreen.core.config import Settings
from prescreen.core.errors import PrescreenError
from prescreen.jobs.service import Worker, get_job, job_to_dict
from prescreen.screening.service import (
    Hashed,
    ScreenRequest,
    hash_bytes,
    hash_text,
    hash_url,
    screen,
    submit_video,
    upload_kind,
)
from prescreen.signals.base import ContentKind
from prescreen.signals.detect import sniff_kind


def _hash_file(path: Path, cfg: Settings) -> Hashed:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PrescreenError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return hash_bytes(data, cfg, path.name)


def hash_command(
    files: Annotated[list[Path], typer.Argument(help="Files to hash")],
) -> None:
    """Print the signals of each file as one JSON object per line."""
    failures = 0
    for path in files:
        try:
            hashed = _hash_file(path, settings())
        except PrescreenError as exc:
            failures += 1
            err_console.print(f"[red]{path}:[/] {exc.message}", highlight=False)
            continue
        emit({"path": str(path), "content_type": hashed.kind.value, "signals": hashed.signals})
    if failures:
        raise typer.Exit(1)


def screen_command(
    file: Annotated[Path | None, typer.Argument(help="A file to screen")] = None,
    text: Annotated[str | None, typer.Option("--text", help="Screen this text")] = None,
    url: Annotated[str | None, typer.Option("--url", help="Screen this URL")] = None,
    content_id: Annotated[str | None, typer.Option(help="Your id for the content")] = None,
    user_id: Annotated[str | None, typer.Option(help="The uploader's id")] = None,
) -> None:
    """Screen one file, text or URL against every enabled bank and print the decision JSON."""
    given = [x for x in (file, text, url) if x is not None]
    if len(given) != 1:
        fail("give exactly one of FILE, --text or --url", code=2)
    try:
        if file is not None and _is_video(file):
            emit(_screen_video(file, content_id, user_id))
            return
        if file is not None:
            hashed = _hash_file(file, settings())
        elif text is not None:
            hashed = hash_text(text, settings())
        else:
            hashed = hash_url(url or "", settings())
        request = ScreenRequest(hashed, content_id, user_id, submitted_by=CLI_ACTOR)
        emit(screen(database(), matcher(), settings(), request))
    except PrescreenError as exc:
        fail(exc)


def _is_video(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return sniff_kind(head) is ContentKind.video


def _screen_video(path: Path, content_id: str | None, user_id: str | None) -> dict:
    """Queue the video like the API does, work the queue here, and wait for the decision."""
    data = path.read_bytes()
    upload_kind(data, settings(), path.name)
    request = ScreenRequest(None, content_id, user_id, submitted_by=CLI_ACTOR)
    queued = submit_video(database(), request, data, path.name)
    if "decision" in queued:
        return queued["decision"]
    worker = Worker(database(), context={"settings": settings(), "matcher": matcher()})
    job_id = queued["job"]["id"]
    with Progress(TextColumn("hashing {task.description}"), console=err_console) as progress:
        progress.add_task(path.name, total=None)
        while True:
            with database().session(readonly=True) as session:
                job = job_to_dict(get_job(session, job_id))
            if job["status"] == "done":
                return job["result"]["decision"]
            if job["status"] == "dead":
                raise PrescreenError(f"{path}: {job['error']}")
            if not worker.run_one():
                time.sleep(0.2)


def _hash_for_scan(path: Path, cfg: Settings) -> Hashed | str:
    try:
        return _hash_file(path, cfg)
    except PrescreenError as exc:
        return exc.message


def scan_command(
    directory: Annotated[Path, typer.Argument(help="Folder to screen, recursively")],
    report: Annotated[
        Path | None, typer.Option(help="Report file (default: scan-report.jsonl)")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv")] = "jsonl",
    workers: Annotated[int, typer.Option(help="Hashing processes (default: one per core)")] = 0,
) -> None:
    """Screen every file under a folder, using every core, and write a report with a summary."""
    if not directory.is_dir():
        fail(f"{directory} is not a folder", code=2)
    if fmt not in ("jsonl", "csv"):
        fail("--format must be jsonl or csv", code=2)
    report = report or Path(f"scan-report.{fmt}")
    paths = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))
    cfg, outcomes = settings(), Counter()
    db, index = database(), matcher()
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    ]
    with (
        ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool,
        _ReportWriter(report, fmt) as writer,
        Progress(*columns, console=err_console) as progress,
    ):
        task = progress.add_task("screening", total=len(paths))
        for path, hashed in zip(
            paths, pool.map(_hash_for_scan, paths, [cfg] * len(paths), chunksize=4), strict=True
        ):
            row = _screen_row(path, hashed, db, index, cfg)
            outcomes[row["decision"] or "error"] += 1
            writer.write(row)
            progress.advance(task)
    summary = {
        "files": len(paths),
        "report": str(report),
        **{k: outcomes[k] for k in ("allow", "hold", "block", "error")},
    }
    emit({"summary": summary})


def _screen_row(path: Path, hashed: Hashed | str, db, index, cfg: Settings) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "decision": None, "error": None}
    if isinstance(hashed, str):
        row["error"] = hashed
        return row
    try:
        decision = screen(
            db,
            index,
            cfg,
            ScreenRequest(hashed, metadata={"path": str(path)}, submitted_by=CLI_ACTOR),
        )
    except PrescreenError as exc:
        row["error"] = exc.message
        return row
    row.update(
        decision=decision["decision"],
        decision_id=decision["id"],
        content_type=decision["content_type"],
        matches=decision["matches"],
    )
    return row


class _ReportWriter:
    """JSONL (one object per file) or CSV (flat columns) report."""

    CSV_FIELDS = (
        "path",
        "decision",
        "content_type",
        "banks",
        "labels",
        "min_distance",
        "decision_id",
        "error",
    )

    def __init__(self, path: Path, fmt: str) -> None:
        self.path, self.fmt = path, fmt

    def __enter__(self) -> _ReportWriter:
        self.file = open(self.path, "w", encoding="utf-8", newline="")
        if self.fmt == "csv":
            self.csv = csv.DictWriter(self.file, fieldnames=self.CSV_FIELDS)
            self.csv.writeheader()
        return self

    def write(self, row: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps(row, ensure_ascii=False) + "\n")
            return
        matches = row.get("matches") or []
        self.csv.writerow(
            {
                "path": row["path"],
                "decision": row["decision"] or "",
                "content_type": row.get("content_type", ""),
                "banks": ";".join(sorted({m["bank"] for m in matches})),
                "labels": ";".join(sorted({m["label"] for m in matches if m["label"]})),
                "min_distance": min((m["distance"] for m in matches), default=""),
                "decision_id": row.get("decision_id", ""),
                "error": row["error"] or "",
            }
        )

    def __exit__(self, *exc: object) -> None:
        self.file.close()
