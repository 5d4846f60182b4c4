"""Importing the lists platforms receive (HMA, ThreatExchange, prescreen NDJSON) through the API
and the CLI, and exporting them back."""

from __future__ import annotations

import json
import secrets

from typer.testing import CliRunner

from prescreen.cli import app
from prescreen.core import cli_context

PDQ = [secrets.token_hex(32) for _ in range(3)]
MD5 = secrets.token_hex(16)

SAMPLES = {
    "hma-csv": f"signal_type,signal_value,note\npdq,{PDQ[0]},from hma\nvideo_md5,{MD5},clip\n",
    "hma-json": json.dumps(
        [
            {"signals": {"pdq": PDQ[0]}, "note": "content", "metadata": {"content_id": "1"}},
            {"video_md5": MD5, "note": "signal body"},
        ]
    ),
    "te-json": json.dumps(
        {
            "data": [
                {
                    "id": "901",
                    "raw_indicator": PDQ[0],
                    "type": "HASH_PDQ",
                    "tags": {"data": [{"text": "Terrorism"}]},
                    "status": "MALICIOUS",
                },
                {
                    "id": "902",
                    "raw_indicator": MD5,
                    "type": "HASH_VIDEO_MD5",
                    "tags": ["violent extremism"],
                },
                {
                    "id": "903",
                    "raw_indicator": PDQ[1],
                    "type": "HASH_PDQ",
                    "status": "NON_MALICIOUS",
                },
            ]
        }
    ),
    "te-signals": f"# exported list\npdq {PDQ[0]} terrorism,propaganda\nvideo_md5 {MD5}\n",
    "ndjson": "\n".join(
        json.dumps({"signals": s, "labels": ["terrorism"]}) for s in ({"pdq": PDQ[0]}, {"md5": MD5})
    ),
}


def test_every_format_imports_two_entries(client, auth) -> None:
    for number, (fmt, body) in enumerate(sorted(SAMPLES.items())):
        bank = f"list-{number}"
        assert client.post("/v1/banks", json={"name": bank}, headers=auth()).status_code == 201
        imported = client.post(
            f"/v1/exchange/import/{bank}", params={"format": fmt}, content=body, headers=auth()
        )
        assert imported.status_code == 200, (fmt, imported.text)
        assert imported.json()["added"] == 2, (fmt, imported.json())
        entries = client.get(f"/v1/banks/{bank}/entries", headers=auth()).json()["entries"]
        signals = sorted(v for e in entries for v in e["signals"].values())
        assert signals == sorted([PDQ[0], MD5]), fmt
    te = client.get("/v1/banks/list-3/entries", headers=auth()).json()["entries"]
    assert [e["labels"] for e in te] == [["terrorism"], ["violent_extremism"]]
    assert te[1]["content_type"] == "video"


def test_a_bad_line_rejects_the_file_unless_skipped(client, auth) -> None:
    client.post("/v1/banks", json={"name": "strict"}, headers=auth())
    body = f"pdq {PDQ[2]}\npdq not-a-hash\n"
    refused = client.post(
        "/v1/exchange/import/strict", params={"format": "te-signals"}, content=body, headers=auth()
    )
    assert (
        refused.status_code == 422 and refused.json()["error"]["detail"]["errors"][0]["line"] == 2
    )
    assert client.get("/v1/banks/strict/entries", headers=auth()).json()["entries"] == []
    skipped = client.post(
        "/v1/exchange/import/strict",
        params={"format": "te-signals", "skip_invalid": "true"},
        content=body,
        headers=auth(),
    )
    report = skipped.json()
    assert (report["added"], report["skipped"], report["errors"][0]["line"]) == (1, 1, 2)
    denied = client.post(
        "/v1/exchange/import/strict",
        params={"format": "ndjson"},
        content="",
        headers=auth("integrator"),
    )
    assert denied.status_code == 403


def test_exports_round_trip(client, auth) -> None:
    client.post("/v1/banks", json={"name": "src", "labels": ["terrorism"]}, headers=auth())
    client.post(
        "/v1/exchange/import/src", params={"format": "te-signals"}, content=SAMPLES["te-signals"],
        headers=auth(),
    )  # fmt: skip
    for fmt in ("hma-csv", "te-signals", "ndjson"):
        exported = client.get("/v1/exchange/export/src", params={"format": fmt}, headers=auth())
        assert exported.status_code == 200
        bank = f"copy-{fmt}"
        client.post("/v1/banks", json={"name": bank}, headers=auth())
        again = client.post(
            f"/v1/exchange/import/{bank}", params={"format": fmt}, content=exported.text,
            headers=auth(),
        )  # fmt: skip
        assert again.json()["added"] == 2, (fmt, exported.text)


def test_cli_imports_and_exports(db, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_DATA_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text(SAMPLES["te-signals"])
    cli_context.reset()
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    try:
        cli("bank", "create", "cli-list")
        imported = cli("exchange", "import", "cli-list", str(listing), "--format", "te-signals")
        assert json.loads(imported)["added"] == 2
        exported = cli("exchange", "export", "cli-list", "--format", "te-signals")
        assert sorted(line.split()[1] for line in exported.splitlines()) == sorted([PDQ[0], MD5])
        identity = json.loads(cli("exchange", "identity"))
        assert len(identity["keys"]) == 1 and identity["instance"] == identity["current_key"]
    finally:
        cli_context.reset()
