"""`prescreen classify`: train, evaluate and run text classifiers.

prescreen classify run "some text"                 # one JSON object per text
prescreen classify run --file posts.txt            # one text per line, streamed in batches
prescreen classify train --data labelled.csv --out my-model.npz
prescreen classify eval --data labelled.csv --out report/   [--model my-model.npz]
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import typer

app = typer.Typer(help="Text classifiers: terrorism and hate heads.", no_args_is_help=True)

NEGATIVE_VALUES = {"", "0", "false", "no", "none", "neither", "normal", "nohate", "clean", "ok"}
POSITIVE_VALUES = {"1", "true", "yes"}


def _read_rows(path: Path, text_column: str, label_column: str) -> tuple[list[str], list[str]]:
    csv.field_size_limit(10_000_000)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {text_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise typer.BadParameter(
                f"{path} has no column {', '.join(sorted(missing))} "
                f"(columns: {', '.join(reader.fieldnames or [])})"
            )
        texts, labels = [], []
        for row in reader:
            texts.append(row[text_column] or "")
            labels.append((row[label_column] or "").strip())
    return texts, labels


def _heads_from_labels(labels: list[str], head: str | None) -> dict[str, np.ndarray]:
    """Binary labels make one head (named `head`); other values make one head per value."""
    values = {v.lower() for v in labels}
    if values <= NEGATIVE_VALUES | POSITIVE_VALUES:
        y = np.array([int(v.lower() in POSITIVE_VALUES) for v in labels])
        return {head or "label": y}
    names = sorted({v for v in labels if v.lower() not in NEGATIVE_VALUES})
    if head:
        names = [n for n in names if n == head]
    return {n: np.array([int(v == n) for v in labels]) for n in names}


@app.command()
def train(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="labelled CSV"),
    out: Path = typer.Option(..., "--out", help="model file to write (.npz)"),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    head: str | None = typer.Option(
        None, "--head", help="head name for 0/1 labels (default 'label')"
    ),
    c: float = typer.Option(4.0, "--c", help="inverse regularisation strength"),
    min_df: int = typer.Option(2, "--min-df", help="drop n-grams seen in fewer documents"),
) -> None:
    """Train a calibrated TF-IDF + logistic-regression model on a CSV.

    Labels 0/1 (or true/false) train one head; any other values train one head per value, with
    rows of the other values (and none/neither/normal/0) as its negatives.
    """
    from prescreen.classify.training import Example, FitSettings, fit_model

    texts, labels = _read_rows(data, text_column, label_column)
    heads = _heads_from_labels(labels, head)
    if not heads or len(texts) < 10:
        raise typer.BadParameter("need at least 10 rows and one positive label value")
    examples = [
        Example(t, {h: int(y[i]) for h, y in heads.items()}, "csv", f"row:{i}")
        for i, t in enumerate(texts)
    ]
    for name, y in heads.items():
        if y.sum() < 3 or (len(y) - y.sum()) < 3:
            raise typer.BadParameter(f"head {name!r} needs at least 3 positives and 3 negatives")
    folds = int(min(3, min(min(y.sum(), len(y) - y.sum()) for y in heads.values())))
    settings = FitSettings(min_df=min_df, default_c=c, folds=max(2, folds))
    model = fit_model(examples, list(heads), settings, name=out.stem)
    model.save(out)
    typer.echo(json.dumps({"model": str(out), "version": model.version, "heads": model.heads,
                           "examples": len(texts), "bytes": out.stat().st_size}))  # fmt: skip


@app.command("eval")
def evaluate(
    data: Path = typer.Option(..., "--data", exists=True, dir_okay=False, help="labelled CSV"),
    model_path: Path | None = typer.Option(
        None, "--model", help="model file (default: the shipped model)"
    ),
    out: Path = typer.Option(Path("classify-report"), "--out", help="report folder"),
    text_column: str = typer.Option("text", "--text-column"),
    label_column: str = typer.Option("label", "--label-column"),
    head: str | None = typer.Option(None, "--head", help="model head that 0/1 labels are for"),
    threshold: float | None = typer.Option(
        None, "--threshold", help="decision threshold (default: the model's hold threshold)"
    ),
) -> None:
    """Precision, recall, F1, PR curve, calibration plot, confusion matrix and worst errors."""
    from prescreen.classify.evaluation import evaluate_labelled
    from prescreen.classify.service import load_model

    model = load_model(model_path)
    texts, labels = _read_rows(data, text_column, label_column)
    default_head = head or (model.heads[0] if len(model.heads) == 1 else None)
    heads = _heads_from_labels(labels, default_head)
    unknown = set(heads) - set(model.heads)
    if unknown:
        raise typer.BadParameter(
            f"labels {sorted(unknown)} are not heads of the model ({model.heads}); "
            "pass --head for 0/1 labels"
        )
    thresholds = {h: _hold_threshold(model, h) if threshold is None else threshold for h in heads}
    summary = evaluate_labelled(model, texts, heads, thresholds, out)
    typer.echo(json.dumps(summary, indent=2))


def _hold_threshold(model, head: str) -> float:
    from prescreen.classify.service import DEFAULT_THRESHOLDS

    limits = model.meta.get("thresholds", {}).get(head) or DEFAULT_THRESHOLDS.get(head)
    return float(limits["hold"]) if limits else 0.5


def _lines(path: Path) -> Iterator[str]:
    handle = sys.stdin if str(path) == "-" else path.open(encoding="utf-8", errors="replace")
    try:
        for line in handle:
            yield line.rstrip("\r\n")
    finally:
        if handle is not sys.stdin:
            handle.close()


@app.command()
def run(
    text: str | None = typer.Argument(None, help="text to score"),
    file: Path | None = typer.Option(None, "--file", help="one text per line ('-' for stdin)"),
    model_path: Path | None = typer.Option(None, "--model", help="model file"),
    batch_size: int = typer.Option(512, "--batch-size", min=1),
) -> None:
    """Score texts: one JSON object per text, {"scores": {...}, "flagged": {...}}.

    `flagged` is true where a score reaches the default policy's hold threshold.
    """
    from prescreen.classify.model import batched
    from prescreen.classify.service import default_model, load_model

    if (text is None) == (file is None):
        raise typer.BadParameter("give either TEXT or --file")
    model = load_model(model_path) if model_path else default_model()
    holds = {h: _hold_threshold(model, h) for h in model.heads}
    texts: Iterable[str] = [text] if text is not None else _lines(file)  # type: ignore[arg-type]
    out = sys.stdout
    for chunk in batched(texts, batch_size):
        lines = []
        for scores in model.score(chunk):
            flagged = {h: scores[h] >= holds[h] for h in model.heads}
            lines.append(json.dumps({"scores": scores, "flagged": flagged}))
        out.write("\n".join(lines) + "\n")
        out.flush()
