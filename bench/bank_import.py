"""Bulk import of N PDQ hashes, index included, both ways a user can do it.

`cli_s`: `prescreen bank import BANK FILE` into a new bank, from start to exit (the command
leaves the index snapshot up to date). `api_s`: `POST /v1/banks/{name}/import` of the same file
to `prescreen serve` (default workers) into a second bank of a fresh database, from sending the
body to the answer (the answering worker has indexed the entries by then), and `first_lookup_s`:
the first `POST /v1/lookup` after it, which another worker may answer by mapping the snapshot
the first one saved. Each lookup must find the last line's hash.

    python bench/bank_import.py --quick --json    # 100k hashes
    python bench/bank_import.py --json            # 1M hashes
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from http_screen import PRESCREEN, cli, free_port, log, stop_server, wait_ready, write_bank_file


def timed_cli_import(root: Path, bank_file: Path) -> float:
    env = _env(root / "cli")
    cli(env, "bank", "create", "imported", "--label", "terrorism", "--kind", "block")
    started = time.perf_counter()
    cli(env, "bank", "import", "imported", str(bank_file))
    return time.perf_counter() - started


def timed_api_import(root: Path, bank_file: Path, last: str) -> dict[str, float]:
    env = _env(root / "api")
    cli(env, "bank", "create", "imported", "--label", "terrorism", "--kind", "block")
    lead = json.loads(cli(env, "apikey", "create", "--role", "lead", "--name", "bench"))["key"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [PRESCREEN, "serve", "--port", str(port)], env=env, start_new_session=True
    )
    try:
        wait_ready(url, server, timeout=300)
        body = bank_file.read_bytes()
        headers = {"authorization": f"Bearer {lead}"}
        started = time.perf_counter()
        answer = httpx.post(
            f"{url}/v1/banks/imported/import", content=body, timeout=900,
            headers={**headers, "content-type": "application/x-ndjson"},
        )  # fmt: skip
        api_s = time.perf_counter() - started
        if answer.status_code != 200:
            raise SystemExit(f"the import was answered {answer.status_code}: {answer.text[:300]}")
        looked = time.perf_counter()
        found = httpx.post(
            f"{url}/v1/lookup", json={"signals": {"pdq": last}}, headers=headers, timeout=300
        ).json()["matches"]
        if not found:
            raise SystemExit("the first lookup after the import did not find the last entry")
        return {"api_s": api_s, "first_lookup_s": time.perf_counter() - looked}
    finally:
        stop_server(server)


def _env(root: Path) -> dict[str, str]:
    root.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PRESCREEN_DATABASE_URL": f"sqlite:///{root / 'prescreen.db'}",
        "PRESCREEN_DATA_DIR": str(root / "data"),
        "PRESCREEN_LOG_LEVEL": "WARNING",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k hashes")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument("--hashes", type=int, help="bank size (default 1M, quick 100k)")
    args = parser.parse_args()
    n = args.hashes or (100_000 if args.quick else 1_000_000)
    root = Path(tempfile.mkdtemp(prefix="prescreen-import-bench-"))
    try:
        bank_file = root / "bank.ndjson"
        write_bank_file(bank_file, n, [], seed=11)
        last = json.loads(bank_file.read_text().splitlines()[-1])["signals"]["pdq"]
        results: dict[str, Any] = {"hashes": n, "cli_s": timed_cli_import(root, bank_file)}
        log(f"prescreen bank import of {n:,} hashes, index included: {results['cli_s']:.1f} s")
        results.update(timed_api_import(root, bank_file, last))
        log(
            f"POST /v1/banks/imported/import: {results['api_s']:.1f} s, "
            f"first lookup {results['first_lookup_s']:.2f} s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    results = {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()}
    print(json.dumps(results) if args.json else json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
