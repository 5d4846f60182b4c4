"""Fixtures for the OCR and logo tests: generous step budgets (the suite shares a busy
machine; the overrun test sets its own), and skips where Tesseract or the fonts are missing."""

from __future__ import annotations

import pytest
from tests.ocr.synthetic import font_available

from prescreen.core.config import Settings
from prescreen.signals import ocr


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ocr_budget_ms": 20_000.0, "logo_budget_ms": 20_000.0})


@pytest.fixture
def needs_tesseract() -> None:
    if (why := ocr.availability()) is not None:
        pytest.skip(f"OCR tests need Tesseract: {why}")
    if not font_available():
        pytest.skip("OCR tests render captions with Debian's fonts-dejavu, which is missing")
