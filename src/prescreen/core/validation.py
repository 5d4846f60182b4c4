"""Input hygiene shared by every entry point: strings a database can store, JSON of sane shape."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field

MAX_JSON_DEPTH = 16


def clean_text(value: str) -> str:
    """Refuse NUL characters and unpaired surrogates, which no database column accepts."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"is not valid Unicode ({exc.reason})") from exc
    return value


def clean_identifier(value: str) -> str:
    clean_text(value)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("must not contain control characters")
    return value


def clean_json(value: Any, depth: int = 0) -> Any:
    """Metadata as given, provided it nests at most 16 deep and holds only storable values."""
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"nests deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must not contain NaN or infinite numbers")
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_json(v, depth + 1) for v in value]
    return value


CleanStr = Annotated[str, AfterValidator(clean_text)]
Identifier = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(clean_identifier)]
Metadata = Annotated[dict[str, Any], AfterValidator(clean_json)]

BANK_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
MAX_ROW_ID = 2**31 - 1
