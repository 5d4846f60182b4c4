"""`prescreen backfill FILE`: match a corpus of existing content signals against all banks."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from prescreen.core.cli_context import database, emit, fail
from prescreen.core.errors import PrescreenError
from prescreen.matching import backfill


class InputFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class OutputFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"
    parquet = "parquet"


def backfill_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="The corpus")],
    fmt: Annotated[InputFormat, typer.Option("--format", help="Input format")],
    output: Annotated[Path | None, typer.Option(help="Matches go here (default: stdout)")] = None,
    output_format: Annotated[OutputFormat, typer.Option()] = OutputFormat.csv,
    scheduler: Annotated[
        str | None, typer.Option(help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    ] = None,
    local_workers: Annotated[
        int, typer.Option(help="Start a Dask LocalCluster of this many processes (0: none)")
    ] = 0,
    batch_rows: Annotated[int, typer.Option(min=1, help="Rows per task")] = 50_000,
) -> None:
    """Match a Parquet or CSV corpus (`content_id` and one column per signal type) against
    every enabled bank, in this process or on a Dask cluster. Prints a summary as JSON."""
    try:
        with database().session(readonly=True) as session:
            snapshot = backfill.load_snapshot(session)
        if scheduler or local_workers:
            result = _on_dask(snapshot, file, fmt.value, scheduler, local_workers, batch_rows)
        else:
            result = backfill.backfill_local(snapshot, file, fmt.value, batch_rows)
        backfill.write_matches(result, output, output_format.value)
    except PrescreenError as exc:
        fail(exc)
    summary = {**result.summary(), "bank_signals": len(snapshot)}
    if output is None:  # stdout carries the matches
        sys.stderr.write(json.dumps(summary) + "\n")
    else:
        emit(summary)


def _on_dask(snapshot, file, fmt, scheduler, local_workers, batch_rows):
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            return backfill.backfill_dask(snapshot, file, fmt, client, batch_rows)
    with (
        LocalCluster(
            n_workers=local_workers, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        return backfill.backfill_dask(snapshot, file, fmt, client, batch_rows)
