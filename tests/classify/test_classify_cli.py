"""`prescreen classify` commands (the Typer app in prescreen.classify.cli)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from prescreen.classify.cli import _read_rows, app
from prescreen.classify.service import DEFAULT_THRESHOLDS

runner = CliRunner()


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["post", "tag"])
        writer.writerows(rows)


def labelled_rows() -> list[tuple[str, str]]:
    rows = []
    for i in range(40):
        rows.append((f"join the fight brothers the caliphate needs you now {i}", "terrorism"))
        rows.append((f"the bakery on main street sells fresh bread every day {i}", "none"))
        rows.append((f"those vermin people are subhuman and should be expelled {i}", "hate"))
    return rows


def test_run_one_text_prints_scores_and_flags() -> None:
    result = runner.invoke(app, ["run", "The weather in Lyon is mild today."])
    assert result.exit_code == 0, result.output
    line = json.loads(result.output.strip())
    assert set(line) == {"scores", "flagged"}
    assert set(line["scores"]) == {"terrorism", "hate"}
    for head, score in line["scores"].items():
        assert line["flagged"][head] == (score >= DEFAULT_THRESHOLDS[head]["hold"])


def test_run_file_streams_many_lines(tmp_path: Path) -> None:
    texts = [f"line {i}: the match ended two all after extra time" for i in range(3000)]
    path = tmp_path / "in.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["run", "--file", str(path), "--batch-size", "700"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().split("\n")
    assert len(lines) == 3000
    assert all("scores" in json.loads(line) for line in lines[:5] + lines[-5:])


def test_run_needs_text_or_file() -> None:
    assert runner.invoke(app, ["run"]).exit_code != 0


def test_train_then_eval_writes_a_report(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    write_csv(data, labelled_rows())
    model = tmp_path / "mine.npz"
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(data),
            "--text-column",
            "post",
            "--label-column",
            "tag",
            "--out",
            str(model),
            "--min-df",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert sorted(info["heads"]) == ["hate", "terrorism"] and model.exists()

    report = tmp_path / "report"
    result = runner.invoke(app, ["eval", "--model", str(model), "--data", str(data),
                                 "--text-column", "post", "--label-column", "tag",
                                 "--out", str(report)])  # fmt: skip
    assert result.exit_code == 0, result.output
    metrics = json.loads((report / "metrics.json").read_text())
    for head in ("terrorism", "hate"):
        m = metrics["heads"][head]
        assert {"precision", "recall", "f1", "confusion_matrix"} <= set(m)
        assert m["recall"] > 0.9
        assert (report / f"worst_errors_{head}.csv").exists()
        for plot in (f"pr_curve_{head}.png", f"calibration_{head}.png", f"confusion_{head}.png"):
            assert (report / plot).read_bytes()[:4] == b"\x89PNG"

    result = runner.invoke(app, ["run", "--model", str(model), "join the fight brothers"])
    assert result.exit_code == 0 and json.loads(result.output)["scores"]["terrorism"] > 0.5


def test_eval_of_the_default_model_with_binary_labels(tmp_path: Path) -> None:
    data = tmp_path / "bin.csv"
    write_csv(data, [("the sun is shining", "0"), ("kill the kuffar brothers", "1")] * 5)
    result = runner.invoke(app, ["eval", "--data", str(data), "--text-column", "post",
                                 "--label-column", "tag", "--head", "terrorism",
                                 "--out", str(tmp_path / "r")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "terrorism" in json.loads((tmp_path / "r" / "metrics.json").read_text())["heads"]


def test_bad_columns_are_reported(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    write_csv(data, labelled_rows())
    result = runner.invoke(app, ["train", "--data", str(data), "--out", str(tmp_path / "m.npz")])
    assert result.exit_code != 0
    with pytest.raises(typer.BadParameter, match="no column text"):
        _read_rows(data, "text", "tag")
