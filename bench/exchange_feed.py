"""Exchange throughput on one machine: publishing a shared bank's signed feed, serving pages,
verifying them, and applying them at a follower (the same database follows its own bank, so
the numbers are signing, verification and database work, without the network).

    python bench/exchange_feed.py --entries 20000 --json
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from pathlib import Path

from prescreen.banks import service as banks
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.core.schema import upgrade
from prescreen.exchange import feed, service
from prescreen.exchange.config import exchange_settings
from prescreen.exchange.feedformat import verify_page
from prescreen.exchange.pull import pull_and_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="exchange-bench-"))
    db = Database(f"sqlite:///{root / 'bench.db'}")
    upgrade(db)
    settings = Settings(database_url=db.url, data_dir=root, _env_file=None)
    results: dict[str, float | int] = {"entries": args.entries, "page": args.page}

    with db.session() as session:
        bank = banks.create_bank(session, "shared", shared=True, labels=["terrorism"])
        new = [
            banks.NewEntry.validated({"pdq": secrets.token_hex(32)}) for _ in range(args.entries)
        ]
        banks.add_entries(session, bank, new, "bench", return_rows=False)
        public = service.identity(session, settings)["keys"][0]["public_key"]
        service.create_peer(
            session, "self", [public], "bench", base_url="http://127.0.0.1:1",
            follows=[{"remote": "shared", "local": "copy"}], trust="act",
        )  # fmt: skip

    started = time.perf_counter()
    with db.session() as session:
        feed.publish_pending(session, settings)
    results["publish_items_per_s"] = round(args.entries / (time.perf_counter() - started))

    started = time.perf_counter()
    with db.session() as session:
        page = json.loads(json.dumps(feed.feed_page(session, settings, "shared", 0, args.page)))
    results["serve_page_ms"] = round((time.perf_counter() - started) * 1000, 1)
    keys = {k["key_id"]: k["public_key"] for k in page["keys"]}
    started = time.perf_counter()
    verify_page(page, "shared", 0, "", keys)
    results["verify_page_ms"] = round((time.perf_counter() - started) * 1000, 1)

    def fetch(_peer, bank, after, xsettings):
        with db.session() as session:
            return json.loads(json.dumps(feed.feed_page(session, settings, bank, after, args.page)))

    exchange_settings.cache_clear()
    started = time.perf_counter()
    report = pull_and_record(db, settings, "self", fetch)
    elapsed = time.perf_counter() - started
    assert report["ok"] and report["applied"] == {"add": args.entries}, report
    results["follow_items_per_s"] = round(args.entries / elapsed)
    if args.json:
        print(json.dumps(results))
    else:
        for key, value in results.items():
            print(f"{key:>22}: {value}")
    db.dispose()


if __name__ == "__main__":
    sys.exit(main())
