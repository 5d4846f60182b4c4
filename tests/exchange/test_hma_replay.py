"""HMA's API, replayed: each request below is written from HMA's recorded request and response
shapes (../shared/reference/hma-api.md), sent to prescreen, and the answer must have HMA's shape
exactly (same keys, same JSON types, e.g. distances as strings)."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
from PIL import Image
from tests.media import jpeg

INT, STR, HEX64 = object(), object(), object()


def conforms(actual: Any, expected: Any, where: str = "$") -> None:
    """`actual` has exactly the shape of `expected` (placeholders INT, STR, HEX64 match any)."""
    if expected is INT:
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{where}: {actual!r}"
    elif expected is STR:
        assert isinstance(actual, str), f"{where}: {actual!r}"
    elif expected is HEX64:
        assert isinstance(actual, str) and len(actual) == 64, f"{where}: {actual!r}"
        int(actual, 16)
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), f"{where}: {actual!r}"
        for key, value in expected.items():
            conforms(actual[key], value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual!r}"
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            conforms(a, e, f"{where}[{index}]")
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r}"


def flip_bits(hex_hash: str, count: int) -> str:
    value = int(hex_hash, 16) ^ ((1 << count) - 1)
    return f"{value:064x}"


def blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (300, 300), (128, 128, 128)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def hma(client, keys):
    """The client as an HMA caller configured with a key in its base URL (HTTP Basic)."""
    token = base64.b64encode(f"hma:{keys['admin']}".encode()).decode()
    client.headers["Authorization"] = f"Basic {token}"
    return client


def test_hma_requests_replayed(hma) -> None:
    photo = jpeg(7)

    # Banks
    assert hma.get("/c/banks").json() == []
    created = hma.post("/c/banks", json={"name": "BENCH_BANK"})
    assert created.status_code == 201
    conforms(created.json(), {"matching_enabled_ratio": 1.0, "name": "BENCH_BANK"})
    duplicate = hma.post("/c/banks", json={"name": "BENCH_BANK"})
    assert duplicate.status_code == 403
    conforms(duplicate.json(), {"message": STR})
    conforms(hma.get("/c/banks").json(), [{"matching_enabled_ratio": 1.0, "name": "BENCH_BANK"}])

    # A signal, then content with metadata
    signal = flip_bits("f" * 64, 0)
    added = hma.post("/c/bank/BENCH_BANK/signal", json={"pdq": "a" * 64, "note": "opt"})
    assert added.status_code == 200
    conforms(added.json(), {"id": INT, "signals": {"pdq": "a" * 64}})
    metadata = {"content_id": "c-1", "content_uri": "https://example.org/c-1"}
    content = hma.post(
        "/c/bank/BENCH_BANK/content",
        files={"photo": ("f.jpg", photo, "image/jpeg")},
        data={"metadata": json.dumps(metadata), "note": "seen on a forum"},
    )
    assert content.status_code == 200, content.text
    conforms(content.json(), {"id": INT, "signals": {"pdq": HEX64}})
    content_id, signal = content.json()["id"], content.json()["signals"]["pdq"]

    shown = hma.get(f"/c/bank/BENCH_BANK/content/{content_id}?include_signals=true")
    conforms(
        shown.json(),
        {
            "bank": {"matching_enabled_ratio": 1.0, "name": "BENCH_BANK"},
            "disable_until_ts": 1,
            "id": content_id,
            "metadata": {
                "collab": None,
                "content_id": "c-1",
                "content_uri": "https://example.org/c-1",
                "json": None,
            },
            "note": "seen on a forum",
            "original_media_uri": None,
            "signals": {"pdq": signal},
        },
    )

    # Hasher
    hashed = hma.post("/h/hash", files={"photo": ("f.jpg", photo, "image/jpeg")})
    conforms(hashed.json(), {"pdq": signal})

    # Matcher
    raw = hma.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": signal})
    conforms(raw.json(), {"matches": [content_id]})
    with_distance = hma.get(
        "/m/raw_lookup",
        params={"signal_type": "pdq", "signal": signal, "include_distance": "true"},
    )
    conforms(with_distance.json(), {"matches": [{"bank_content_id": content_id, "distance": "0"}]})
    other_bank = hma.get(
        "/m/raw_lookup", params={"signal_type": "pdq", "signal": signal, "banks": "OTHER,X"}
    )
    conforms(other_bank.json(), {"matches": []})
    looked = hma.post("/m/lookup", files={"photo": ("f.jpg", photo, "image/jpeg")})
    conforms(
        looked.json(),
        {"pdq": {"BENCH_BANK": [{"bank_content_id": content_id, "distance": "0"}]}},
    )
    unrelated = hma.post("/m/lookup", files={"photo": ("g.jpg", jpeg(99), "image/jpeg")})
    conforms(unrelated.json(), {"pdq": {}})
    by_signal = hma.get("/m/lookup", params={"signal_type": "pdq", "signal": signal})
    conforms(by_signal.json(), {"BENCH_BANK": [{"bank_content_id": content_id, "distance": "0"}]})

    near = hma.post("/m/compare", json={"pdq": [signal, flip_bits(signal, 4)]})
    conforms(near.json(), {"pdq": [True, {"distance": 4}]})
    far = hma.post("/m/compare", json={"pdq": [signal, flip_bits(signal, 128)]})
    conforms(far.json(), {"pdq": [False, {"distance": 128}]})

    status = hma.get("/m/index/status")
    conforms(
        status.json(),
        {
            "pdq": {"built_to": INT, "present": True, "size": INT},
            "video_md5": {"built_to": -1, "present": True, "size": 0},
        },
    )
    assert status.json()["pdq"]["size"] >= 2

    # Removal
    conforms(hma.delete(f"/c/bank/BENCH_BANK/content/{content_id}").json(), {"deleted": 1})
    conforms(hma.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": signal}).json(),
             {"matches": []})  # fmt: skip

    alive = hma.get("/status")
    assert alive.status_code == 200 and alive.text == "I-AM-ALIVE"


def test_hma_low_quality_and_errors(hma, client, auth) -> None:
    blank = ("blank.png", blank_png(), "image/png")
    hashed = hma.post("/h/hash", files={"photo": blank})
    assert hashed.status_code == 200 and hashed.json() == {"pdq": ""}
    refused = hma.post("/m/lookup", files={"photo": blank})
    assert refused.status_code == 400
    conforms(refused.json(), {"message": STR})
    bad = hma.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "zz"})
    assert bad.status_code == 400 and set(bad.json()) == {"message"}
    huge = hma.get(f"/c/bank/BENCH_BANK/content/{2**70}")
    assert huge.status_code == 400 and set(huge.json()) == {"message"}
    missing = hma.get("/c/bank/NO_SUCH_BANK/content/1")
    assert missing.status_code == 404 and set(missing.json()) == {"message"}


def test_hma_routes_check_keys_and_roles(client, auth) -> None:
    nobody = client.get("/c/banks")
    assert nobody.status_code == 401 and set(nobody.json()) == {"message"}
    assert client.get("/c/banks", headers=auth("integrator")).status_code == 200
    forbidden = client.post("/c/banks", json={"name": "X"}, headers=auth("integrator"))
    assert forbidden.status_code == 403 and set(forbidden.json()) == {"message"}
    key = auth("lead")["Authorization"].removeprefix("Bearer ")
    assert (
        client.post("/c/banks", json={"name": "Y"}, headers={"X-API-Key": key}).status_code == 201
    )
    assert client.get("/status").text == "I-AM-ALIVE"  # load balancers need no key
