"""Train, evaluate and save the default text model (terrorism and hate heads).

    python scripts/train_text_model.py                       # shared data next to the repo
    python scripts/train_text_model.py --data /path/to/text --out model.npz --metrics m.json

Reads the corpora from `<shared data>/text` at run time (nothing is copied into the repository),
trains on the training splits, picks the hold/block thresholds on validation and stores them and
every validation figure in the model file's metadata and in the metrics JSON. The same seed gives
the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main(argv: list[str] | None = None) -> int:
    from prescreen.classify.evaluation import evaluate_default
    from prescreen.classify.training import FitSettings, train_default

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "text")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src/prescreen/classify/models/default.npz"
    )
    parser.add_argument(
        "--metrics", type=Path, default=ROOT / "src/prescreen/classify/models/default.metrics.json"
    )
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--c-terrorism", type=float, default=4.0)
    parser.add_argument("--c-hate", type=float, default=4.0)
    parser.add_argument("--min-df", type=int, default=3)
    parser.add_argument("--synthetic", type=int, default=16000, help="generated negatives")
    parser.add_argument("--synthetic-weight", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no training data at {args.data}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.time()
    settings = FitSettings(
        min_df=args.min_df, c={"terrorism": args.c_terrorism, "hate": args.c_hate}, seed=args.seed
    )
    model = train_default(
        args.data, args.seed, settings, synthetic=args.synthetic,
        synthetic_weight=args.synthetic_weight,
    )  # fmt: skip
    trained = time.time()
    report = evaluate_default(model, args.data, seed=args.seed)
    model.meta["thresholds"] = report["thresholds"]
    model.meta["validation"] = {k: v for k, v in report.items() if k != "model_version"}
    model.save(args.out)
    report["model_version"] = model.version
    report["model_bytes"] = args.out.stat().st_size
    report["train_seconds"] = round(trained - started, 1)
    args.metrics.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
