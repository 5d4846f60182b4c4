"""Batch backfill on Dask: a `LocalCluster` gives exactly the single-process result, which is
what the online matcher says for each content."""

from __future__ import annotations

import hashlib
import json
import random

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from prescreen.banks.service import NewEntry, add_entries, create_bank, get_bank
from prescreen.cli import app
from prescreen.core import cli_context
from prescreen.matching.backfill import backfill_dask, backfill_local, load_snapshot
from prescreen.matching.service import Matcher

BANK_IMAGES = 200


def _pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _flip(hex_hash: str, bits: int, rng: random.Random) -> str:
    positions = rng.sample(range(256), bits)
    return f"{int(hex_hash, 16) ^ sum(1 << p for p in positions):064x}"


def _md5(n: int) -> str:
    return hashlib.md5(str(n).encode()).hexdigest()


@pytest.fixture
def corpus(db, tmp_path):
    """Banks with block, hold and allow kinds, a disabled entry and a disabled bank; a corpus
    of 3,000 contents, a fifth of them near-copies at distances around the threshold."""
    rng = random.Random(12)
    images = [_pdq(rng) for _ in range(BANK_IMAGES)]
    with db.session() as session:
        create_bank(session, "terror", kind="block", labels=["terrorism"])
        create_bank(session, "tight", kind="hold", labels=["hate"], pdq_threshold=10)
        create_bank(session, "good", kind="allow")
        create_bank(session, "off", kind="block", enabled=False)
        for name, part in (("terror", images[:120]), ("tight", images[120:180])):
            add_entries(session, get_bank(session, name), [NewEntry.validated({"pdq": h})
                        for h in part], "test")  # fmt: skip
        add_entries(session, get_bank(session, "good"),
                    [NewEntry.validated({"pdq": h}) for h in images[180:]], "test")  # fmt: skip
        add_entries(session, get_bank(session, "terror"),
                    [NewEntry.validated({"md5": _md5(n)}) for n in range(50)], "test")  # fmt: skip
        off = [NewEntry.validated({"md5": _md5(n)}) for n in range(50, 60)]
        add_entries(session, get_bank(session, "off"), off, "test")
        add_entries(session, get_bank(session, "terror"),
                    [NewEntry.validated({"md5": _md5(99)}, enabled=False)], "test")  # fmt: skip
    ids, pdqs, md5s = [], [], []
    for n in range(3000):
        ids.append(f"c{n:05d}")
        near = n % 5 == 0
        pdqs.append(_flip(rng.choice(images), rng.randint(0, 40), rng) if near else _pdq(rng))
        md5s.append(_md5(n % 120) if n % 7 == 0 else (None if n % 3 else _md5(10_000 + n)))
    table = pa.table({"content_id": ids, "pdq": pdqs, "md5": md5s})
    pq.write_table(table, tmp_path / "corpus.parquet", row_group_size=500)
    pacsv.write_csv(table, tmp_path / "corpus.csv")
    return tmp_path


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_dask_backfill_matches_the_single_process_result_exactly(db, corpus) -> None:
    from distributed import Client, LocalCluster

    with db.session() as session:
        snapshot = load_snapshot(session)
    single = backfill_local(snapshot, corpus / "corpus.parquet", "parquet", batch_rows=700)
    from_csv = backfill_local(snapshot, corpus / "corpus.csv", "csv", batch_rows=1000)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        distributed = backfill_dask(snapshot, corpus / "corpus.parquet", "parquet", client, 400)
    assert distributed.matches == single.matches == from_csv.matches
    assert distributed.rows == single.rows == 3000 and distributed.workers == 2
    banks = {m[1] for m in single.matches}
    assert banks == {"terror", "tight", "good"}, "disabled banks never match"
    assert 500 < len(single.matches) < 1500

    # Each content's matches are what the online matcher finds for it.
    matcher, by_content = Matcher(), {}
    for match in single.matches:
        by_content.setdefault(match[0], set()).add((match[1], match[3], match[5]))
    table = pq.read_table(corpus / "corpus.parquet").to_pylist()
    with db.session() as session:
        for row in table[::7]:
            signals = {k: row[k] for k in ("pdq", "md5") if row[k]}
            online = {(m.bank, m.entry, m.distance) for m in matcher.lookup(session, signals)}
            assert online == by_content.get(row["content_id"], set()), row["content_id"]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_backfill_command_writes_matches_and_a_summary(db, corpus, monkeypatch) -> None:
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_DATA_DIR", str(corpus))
    cli_context.reset()
    out = corpus / "matches.ndjson"
    result = CliRunner().invoke(
        app,
        ["backfill", str(corpus / "corpus.csv"), "--format", "csv", "--output", str(out),
         "--output-format", "ndjson"],
    )  # fmt: skip
    cli_context.reset()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])
    matches = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary["rows"] == 3000 and summary["matches"] == len(matches) > 500
    assert set(matches[0]) == {"content_id", "bank", "bank_kind", "entry", "signal_type",
                               "distance", "label"}  # fmt: skip
    bad = CliRunner().invoke(app, ["backfill", str(corpus / "corpus.csv"), "--format", "parquet"])
    cli_context.reset()
    assert bad.exit_code == 1 and "cannot read" in bad.output
