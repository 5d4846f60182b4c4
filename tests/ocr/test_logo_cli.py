"""Logo banks from the command line: create one, add a logo file, screen an image with it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tests.ocr.synthetic import base_photo, draw_logo, jpeg_bytes, place_logo, png_bytes
from typer.testing import CliRunner

from prescreen.cli import app
from prescreen.core import cli_context


@pytest.fixture
def cli(db, monkeypatch, tmp_path):
    monkeypatch.setenv("PRESCREEN_DATABASE_URL", db.url)
    monkeypatch.setenv("PRESCREEN_LOG_JSON", "false")
    monkeypatch.setenv("PRESCREEN_OCR_ENABLED", "false")
    monkeypatch.setenv("PRESCREEN_LOGO_BUDGET_MS", "20000")
    monkeypatch.chdir(tmp_path)
    cli_context.reset()
    runner = CliRunner()

    def invoke(*args: str) -> dict:
        result = runner.invoke(app, list(args), catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout.splitlines()[-1])

    yield invoke
    cli_context.reset()


def test_a_logo_bank_from_the_command_line(cli, tmp_path) -> None:
    bank = cli("bank", "create", "marks", "--kind", "hold", "--logo-threshold", "0.6")
    assert bank["logo_threshold"] == 0.6
    (tmp_path / "logo.png").write_bytes(png_bytes(draw_logo(5)))
    entry = cli("bank", "add", "marks", str(tmp_path / "logo.png"))
    assert list(entry["signals"]) == ["logo"]

    image, _ = place_logo(
        base_photo(6, (1024, 768)), draw_logo(5), 0.2, 0.8, np.random.default_rng(6)
    )
    (tmp_path / "upload.jpg").write_bytes(jpeg_bytes(image))
    decision = cli("screen", str(tmp_path / "upload.jpg"))
    assert decision["decision"] == "hold", decision["signals"].get("media_steps")
    assert decision["reasons"][0]["signal_type"] == "logo"
    assert decision["signals"]["media_steps"]["logo"]["status"] == "ok"
    assert "ocr" not in decision["signals"]["media_steps"]
