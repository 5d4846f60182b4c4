"""The command line as an operator uses it: hash, banks, screen, scan, API keys."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from tests.media import encode, jpeg, photo
from typer.testing import CliRunner

from prescreen.cli import app
from prescreen.core import cli_context


@pytest.fixture
def cli(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_LOG_JSON", "false")
    monkeypatch.chdir(tmp_path)
    cli_context.reset()
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(app, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    yield invoke
    cli_context.reset()


def _lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_hash_prints_one_json_object_per_file(cli, tmp_path) -> None:
    image, text = tmp_path / "a.jpg", tmp_path / "b.txt"
    image.write_bytes(jpeg(1))
    text.write_text("hello world")
    rows = _lines(cli("hash", str(image), str(text)))
    assert [r["content_type"] for r in rows] == ["photo", "text"]
    assert rows[0]["path"] == str(image)
    assert set(rows[0]["signals"]) >= {"pdq", "pdq_quality", "md5", "sha256"}
    assert len(rows[0]["signals"]["pdq"]) == 64
    assert set(rows[1]["signals"]) >= {"text"}


def test_hash_reports_bad_files_and_keeps_going(cli, tmp_path) -> None:
    good, bad = tmp_path / "good.jpg", tmp_path / "bad.jpg"
    good.write_bytes(jpeg(2))
    bad.write_bytes(b"not an image")
    result = cli("hash", str(bad), str(good), str(tmp_path / "missing.jpg"), ok=False)
    assert result.exit_code == 1
    assert [r["path"] for r in _lines(result)] == [str(good)]
    assert "declared as photo" in result.stderr and "cannot read" in result.stderr


def test_bank_lifecycle_and_screening(cli, tmp_path) -> None:
    original = photo(3)
    banked, edited = tmp_path / "banked.jpg", tmp_path / "edited.jpg"
    banked.write_bytes(encode(original, quality=95))
    edited.write_bytes(encode(original.resize((500, 375)), quality=35))
    cli("bank", "create", "terror", "--label", "terrorism")
    (entry,) = _lines(cli("bank", "add", "terror", str(banked), "--note", "from a report"))
    assert entry["provenance"]["note"] == "from a report" and entry["labels"] == []
    decision = _lines(cli("screen", str(edited), "--content-id", "c1"))[0]
    assert decision["decision"] == "block" and decision["matches"][0]["bank"] == "terror"
    assert _lines(cli("screen", "--text", "nothing to see"))[0]["decision"] == "allow"

    exported = cli("bank", "export", "terror").stdout
    dump = tmp_path / "terror.ndjson"
    dump.write_text(exported)
    cli("bank", "create", "copy")
    assert _lines(cli("bank", "import", "copy", str(dump), "--format", "ndjson")) == [
        {"added": 1, "skipped": 0, "errors": []}
    ]
    hma = tmp_path / "hma.csv"
    hma.write_text(f"signal_type,signal_value\npdq,{entry['signals']['pdq']}\nmd5,zz\n")
    refused = cli("bank", "import", "copy", str(hma), "--format", "hma-csv", ok=False)
    assert refused.exit_code == 1 and "line 3" in refused.stderr
    imported = _lines(
        cli("bank", "import", "copy", str(hma), "--format", "hma-csv", "--skip-invalid")
    )
    assert imported[0]["added"] == 1 and imported[0]["skipped"] == 1

    cli("bank", "disable-entry", "terror", str(entry["id"]))
    cli("bank", "delete", "copy", "--yes")
    assert _lines(cli("screen", str(edited)))[0]["decision"] == "allow"
    missing = cli("bank", "add", "nope", str(banked), ok=False)
    assert missing.exit_code == 1 and "no bank named 'nope'" in missing.stderr


def test_scan_writes_a_report_with_a_summary(cli, tmp_path) -> None:
    folder = tmp_path / "uploads"
    (folder / "sub").mkdir(parents=True)
    banked = photo(4)
    (folder / "copy.jpg").write_bytes(encode(banked, quality=60))
    (folder / "sub" / "other.jpg").write_bytes(jpeg(5))
    (folder / "note.txt").write_text("plain text")
    (folder / "broken.jpg").write_bytes(jpeg(6)[:500])
    source = tmp_path / "banked.jpg"
    source.write_bytes(encode(banked, quality=95))
    cli("bank", "create", "b")
    cli("bank", "add", "b", str(source))

    summary = _lines(cli("scan", str(folder), "--report", "report.jsonl"))[-1]["summary"]
    assert summary == {
        "files": 4, "report": "report.jsonl", "allow": 2, "hold": 0, "block": 1, "error": 1,
    }  # fmt: skip
    with open("report.jsonl") as f:
        rows = {Path(r["path"]).name: r for r in map(json.loads, f)}
    assert rows["copy.jpg"]["decision"] == "block"
    assert "truncated" in rows["broken.jpg"]["error"]

    cli("scan", str(folder), "--report", "report.csv", "--format", "csv", "--workers", "1")
    with open("report.csv") as f:
        table = {row["path"].split("/")[-1]: row for row in csv.DictReader(f)}
    assert table["copy.jpg"]["banks"] == "b" and table["other.jpg"]["decision"] == "allow"


def test_apikey_create_prints_the_key_once(cli) -> None:
    (created,) = _lines(cli("apikey", "create", "--role", "moderator", "--name", "alice"))
    assert created["key"].startswith("psk_") and created["role"] == "moderator"
    refused = cli("apikey", "create", "--role", "superuser", ok=False)
    assert refused.exit_code != 0
