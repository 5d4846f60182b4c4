"""Metrics, operating thresholds and evaluation reports for text models."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
)

from prescreen.classify.model import TextModel, batched
from prescreen.classify.obfuscate import OBFUSCATIONS, obfuscate


def hard_negatives_path() -> Path:
    return Path(str(files("prescreen.classify") / "data" / "hard_negatives.csv"))


def load_hard_negatives(path: Path | None = None) -> list[dict[str, str]]:
    with (path or hard_negatives_path()).open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def predict(model: TextModel, texts: Sequence[str], batch: int = 2048) -> np.ndarray:
    parts = [model.predict(chunk) for chunk in batched(texts, batch)]
    return np.vstack(parts) if parts else np.zeros((0, len(model.heads)))


def recall_at_precision(y: np.ndarray, s: np.ndarray, precision: float) -> tuple[float, float]:
    """Best recall with precision >= `precision`, and the lowest score threshold giving it."""
    p, r, t = precision_recall_curve(y, s)
    ok = np.flatnonzero(p[:-1] >= precision)
    if not len(ok):
        return 0.0, 1.0
    best = ok[np.argmax(r[ok])]
    return float(r[best]), float(t[best])


def binary_metrics(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    pred = s >= threshold
    return {
        "precision": round(float(precision_score(y, pred, zero_division=0)), 4),
        "recall": round(float(recall_score(y, pred, zero_division=0)), 4),
        "f1": round(float(f1_score(y, pred, zero_division=0)), 4),
        "macro_f1": round(float(f1_score(y, pred, average="macro", zero_division=0)), 4),
        "average_precision": round(float(average_precision_score(y, s)), 4),
        "n": len(y),
        "positives": int(y.sum()),
    }


def best_macro_f1(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    grid = np.unique(np.round(s, 4))
    if len(grid) > 400:
        grid = np.quantile(s, np.linspace(0.0, 1.0, 401))
    scores = [(float(f1_score(y, s >= t, average="macro")), float(t)) for t in grid]
    return max(scores)


def evaluate_default(model: TextModel, data: Path, seed: int = 13) -> dict[str, Any]:
    """Every figure of the model card, on validation data the model never trained on."""
    from prescreen.classify.training import build_default_corpus

    val = [
        ex for ex in build_default_corpus(data, seed)
        if ex.split == "val" and ex.source != "synthetic"
    ]  # fmt: skip
    probs = predict(model, [ex.text for ex in val])
    t_col, h_col = model.heads.index("terrorism"), model.heads.index("hate")
    report: dict[str, Any] = {"model_version": model.version}

    # terrorism: account-disjoint pro-ISIS tweets against every other validation source
    t_rows = np.array([i for i, ex in enumerate(val) if "terrorism" in ex.labels])
    y_t = np.array([val[i].labels["terrorism"] for i in t_rows])
    s_t = probs[t_rows, t_col]
    recall90, t_hold = recall_at_precision(y_t, s_t, 0.90)
    _, t_block = recall_at_precision(y_t, s_t, 0.98)
    t_block = max(t_block, t_hold)

    # hate: HateXplain validation split and user-disjoint Stormfront
    hate_sets = {}
    for source in ("hatexplain", "stormfront"):
        rows = np.array([i for i, ex in enumerate(val) if ex.source == source])
        hate_sets[source] = (np.array([val[i].labels["hate"] for i in rows]), probs[rows, h_col])
    grid = np.linspace(0.05, 0.95, 91)
    mean_f1 = [
        np.mean([f1_score(y, s >= t, average="macro") for y, s in hate_sets.values()]) for t in grid
    ]
    h_hold = float(grid[int(np.argmax(mean_f1))])
    y_all = np.concatenate([y for y, _ in hate_sets.values()])
    s_all = np.concatenate([s for _, s in hate_sets.values()])
    _, h_block = recall_at_precision(y_all, s_all, 0.95)
    h_block = max(h_block, h_hold)

    thresholds = {
        "terrorism": {"hold": round(t_hold, 4), "block": round(t_block, 4)},
        "hate": {"hold": round(h_hold, 4), "block": round(h_block, 4)},
    }
    report["thresholds"] = thresholds
    report["terrorism"] = {
        "recall_at_precision_0.90": round(recall90, 4),
        "at_hold": binary_metrics(y_t, s_t, t_hold),
        "at_block": binary_metrics(y_t, s_t, t_block),
        "validation_accounts": len({val[i].group for i, y in zip(t_rows, y_t, strict=True) if y}),
    }
    report["hate"] = {}
    for source, (y, s) in hate_sets.items():
        best, at = best_macro_f1(y, s)
        report["hate"][source] = {
            "at_hold": binary_metrics(y, s, h_hold),
            "best_macro_f1": round(best, 4),
            "best_threshold": round(at, 4),
        }

    # hard negatives: news, policy, research and counter-speech about terrorism
    hard = load_hard_negatives()
    hard_probs = predict(model, [r["text"] for r in hard])
    by_category: dict[str, list[int]] = {}
    for i, r in enumerate(hard):
        by_category.setdefault(r["category"], []).append(i)
    english = [i for i, r in enumerate(hard) if r["lang"] == "en"]
    report["hard_negatives"] = {
        "n": len(hard),
        "terrorism_fpr_at_hold": round(float(np.mean(hard_probs[:, t_col] >= t_hold)), 4),
        "terrorism_fpr_at_block": round(float(np.mean(hard_probs[:, t_col] >= t_block)), 4),
        "hate_fpr_at_hold": round(float(np.mean(hard_probs[:, h_col] >= h_hold)), 4),
        "terrorism_fpr_at_hold_by_category": {
            c: round(float(np.mean(hard_probs[rows, t_col] >= t_hold)), 4)
            for c, rows in sorted(by_category.items())
        },
        "terrorism_fpr_at_hold_english": round(
            float(np.mean([hard_probs[i, t_col] >= t_hold for i in english])), 4
        ),
        "worst": [
            {"text": hard[i]["text"], "terrorism": round(float(hard_probs[i, t_col]), 3)}
            for i in np.argsort(-hard_probs[:, t_col])[:10]
        ],
    }

    # robustness: recall on validation positives after each evasion, at the hold threshold
    positives = [val[i].text for i, y in zip(t_rows, y_t, strict=True) if y == 1]
    clean = float(np.mean(s_t[y_t == 1] >= t_hold))
    robust: dict[str, Any] = {"terrorism_clean_recall": round(clean, 4)}
    hate_pos = [ex.text for ex in val if ex.source in hate_sets and ex.labels.get("hate") == 1]
    hate_clean = float(np.mean(predict(model, hate_pos)[:, h_col] >= h_hold))
    robust["hate_clean_recall"] = round(hate_clean, 4)
    for kind in [*OBFUSCATIONS, "all"]:
        obf = [obfuscate(t, kind, seed=i) for i, t in enumerate(positives)]
        recall = float(np.mean(predict(model, obf)[:, t_col] >= t_hold))
        hobf = [obfuscate(t, kind, seed=i) for i, t in enumerate(hate_pos)]
        hrecall = float(np.mean(predict(model, hobf)[:, h_col] >= h_hold))
        robust[kind] = {
            "terrorism_recall": round(recall, 4),
            "terrorism_drop_points": round(100 * (clean - recall), 2),
            "hate_recall": round(hrecall, 4),
            "hate_drop_points": round(100 * (hate_clean - hrecall), 2),
        }
    report["robustness"] = robust
    return report


# --- report folder for `prescreen classify eval` ------------------------------------------------


def evaluate_labelled(
    model: TextModel,
    texts: Sequence[str],
    labels: dict[str, np.ndarray],
    thresholds: dict[str, float],
    out_dir: Path,
    worst: int = 25,
) -> dict[str, Any]:
    """Per-head metrics at `thresholds`, plus plots and worst errors, written under `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    probs = predict(model, texts)
    summary: dict[str, Any] = {"model_version": model.version, "n": len(texts), "heads": {}}
    for head, y in labels.items():
        s = probs[:, model.heads.index(head)]
        thr = thresholds.get(head, 0.5)
        metrics = binary_metrics(y, s, thr) if len(set(y.tolist())) > 1 else {"n": len(y)}
        metrics["threshold"] = thr
        metrics["confusion_matrix"] = confusion_matrix(y, s >= thr, labels=[0, 1]).tolist()
        if len(set(y.tolist())) > 1:
            metrics["recall_at_precision_0.90"] = round(recall_at_precision(y, s, 0.9)[0], 4)
        order = np.argsort(-np.abs(y - s))[:worst]
        errors = [{"text": texts[i], "label": int(y[i]), "score": round(float(s[i]), 4)}
                  for i in order if (s[i] >= thr) != bool(y[i])]  # fmt: skip
        with (out_dir / f"worst_errors_{head}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=["label", "score", "text"])
            writer.writeheader()
            writer.writerows(errors)
        metrics["plots"] = _plots(head, y, s, thr, out_dir)
        summary["heads"][head] = metrics
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2))
    return summary


def _plots(head: str, y: np.ndarray, s: np.ndarray, thr: float, out_dir: Path) -> list[str]:
    """PR curve, calibration and confusion matrix PNGs; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    if len(set(y.tolist())) > 1:
        p, r, _ = precision_recall_curve(y, s)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(r, p)
        ax.set(xlabel="recall", ylabel="precision", title=f"{head}: precision-recall",
               xlim=(0, 1), ylim=(0, 1.02))  # fmt: skip
        fig.tight_layout()
        fig.savefig(out_dir / f"pr_curve_{head}.png", dpi=100)
        plt.close(fig)
        made.append(f"pr_curve_{head}.png")
    bins = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(s, bins) - 1, 0, 9)
    centers, observed = [], []
    for b in range(10):
        sel = idx == b
        if sel.any():
            centers.append(float(s[sel].mean()))
            observed.append(float(y[sel].mean()))
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.plot(centers, observed, marker="o")
    ax.set(xlabel="predicted score", ylabel="observed positive share",
           title=f"{head}: calibration")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out_dir / f"calibration_{head}.png", dpi=100)
    plt.close(fig)
    made.append(f"calibration_{head}.png")
    cm = confusion_matrix(y, s >= thr, labels=[0, 1])
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, str(v), ha="center", va="center")
    ax.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual",
           title=f"{head} @ {thr:.2f}")  # fmt: skip
    fig.tight_layout()
    fig.savefig(out_dir / f"confusion_{head}.png", dpi=100)
    plt.close(fig)
    made.append(f"confusion_{head}.png")
    return made
