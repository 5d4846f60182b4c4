"""Bad input gets a 4xx JSON error that names the problem, and leaves nothing half-written."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image
from sqlalchemy import func, select
from tests.media import jpeg

from prescreen.banks.models import BankEntry, SignalChange
from prescreen.screening.models import Content, Decision


def _counts(db) -> tuple[int, ...]:
    with db.session() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(model))
            for model in (Content, Decision, BankEntry, SignalChange)
        )


def _png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid greyscale PNG header for a huge image, with a tiny compressed body."""
    import struct

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * width
    raw = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def _upload(client, auth, data, name="upload.jpg", mime="image/jpeg", **fields):
    return client.post(
        "/v1/screen", files={"file": (name, data, mime)}, data=fields, headers=auth("integrator")
    )


def _assert_error(response, status, *words):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    message = error["message"].lower()
    for word in words:
        assert word in message, (word, message)
    return error


@pytest.fixture
def bank(client, auth):
    client.post("/v1/banks", json={"name": "b"}, headers=auth("lead"))


def test_zero_byte_file(client, auth, db, bank) -> None:
    before = _counts(db)
    _assert_error(_upload(client, auth, b""), 422, "empty")
    _assert_error(
        client.post(
            "/v1/banks/b/content",
            files={"file": ("e.jpg", b"", "image/jpeg")},
            headers=auth("lead"),
        ),
        422,
        "empty",
    )
    assert _counts(db) == before


def test_truncated_jpeg(client, auth, db, bank) -> None:
    data = jpeg(1)
    before = _counts(db)
    _assert_error(_upload(client, auth, data[: len(data) // 3]), 422, "truncated")
    _assert_error(
        client.post(
            "/v1/banks/b/content",
            files={"file": ("t.jpg", data[:2000], "image/jpeg")},
            headers=auth("lead"),
        ),
        422,
        "truncated",
    )
    assert _counts(db) == before


def test_text_file_named_jpg(client, auth, db) -> None:
    before = _counts(db)
    error = _assert_error(
        _upload(client, auth, b"just some words, not a picture\n", name="photo.jpg"),
        415,
        "photo.jpg",
        "declared as photo",
    )
    assert error["detail"]["detected"] == "text"
    assert _counts(db) == before


def test_decompression_bomb(client, auth, db) -> None:
    bomb = _png_bomb()
    assert len(bomb) < 1_000_000
    before = _counts(db)
    error = _assert_error(_upload(client, auth, bomb, name="bomb.png", mime="image/png"), 413)
    assert "30000x30000" in error["message"] and "bomb" in error["message"]
    assert _counts(db) == before


def test_upload_over_the_size_limit(client, auth, db, settings) -> None:
    big = b"\xff\xd8\xff" + b"\x00" * (settings.max_upload_bytes + 1)
    before = _counts(db)
    _assert_error(_upload(client, auth, big), 413, "over the limit")
    assert _counts(db) == before


def test_invalid_utf8(client, auth, db, bank) -> None:
    before = _counts(db)
    _assert_error(
        _upload(client, auth, b"caf\xe9 \xff\xfe", name="note.txt", mime="text/plain"), 422, "utf-8"
    )
    _assert_error(
        client.post(
            "/v1/banks/b/import",
            content=b'{"signals": {"md5": "\xff"}}',
            headers={**auth("lead"), "Content-Type": "application/x-ndjson"},
        ),
        422,
        "utf-8",
    )
    _assert_error(
        client.post(
            "/v1/screen",
            content=b'{"text": "caf\xe9"}',
            headers={**auth("integrator"), "Content-Type": "application/json"},
        ),
        400,
        "json",
    )
    assert _counts(db) == before


def test_import_lines_with_fields_of_the_wrong_type_are_named_and_nothing_is_written(
    client, auth, db, bank
) -> None:
    pdq = '"signals": {"pdq": "' + "0f" * 32 + '"}'
    lines = [
        "{" + pdq + ', "provenance": 5}',
        "{" + pdq + ', "content_type": ["photo"]}',
        "{" + pdq + ', "labels": "terrorism"}',
        '{"signals": ["pdq"]}',
        "{" + pdq + ', "variants": "crop90"}',
        "{" + pdq + ', "content_type": "photo"}',
    ]
    before = _counts(db)
    error = _assert_error(
        client.post(
            "/v1/banks/b/import",
            content="\n".join(lines),
            headers={**auth("lead"), "Content-Type": "application/x-ndjson"},
        ),
        422,
        "nothing was imported",
    )
    messages = {e["line"]: e["message"] for e in error["detail"]["errors"]}
    assert sorted(messages) == [1, 2, 3, 4, 5]
    assert "provenance" in messages[1] and "content_type" in messages[2]
    assert _counts(db) == before


def test_malformed_json(client, auth, db) -> None:
    before = _counts(db)
    for body in (b'{"text": "hi"', b"[1, 2", b"nul", b""):
        response = client.post(
            "/v1/screen",
            content=body,
            headers={**auth("integrator"), "Content-Type": "application/json"},
        )
        error = _assert_error(response, 400, "not valid json")
        assert error["code"] == "malformed_json"
    _assert_error(
        client.post(
            "/v1/banks",
            content=b"{name:",
            headers={**auth("lead"), "Content-Type": "application/json"},
        ),
        400,
        "json",
    )
    assert _counts(db) == before


def test_unknown_fields(client, auth, db) -> None:
    before = _counts(db)
    error = _assert_error(
        client.post("/v1/screen", json={"text": "hi", "colour": "red"}, headers=auth("integrator")),
        422,
        "colour",
    )
    assert error["code"] == "invalid_input"
    _assert_error(
        client.post("/v1/banks", json={"name": "x", "threshold": 3}, headers=auth("lead")),
        422,
        "threshold",
    )
    _assert_error(_upload(client, auth, jpeg(2), colour="red"), 422, "colour")
    assert _counts(db) == before


def test_unknown_bank(client, auth, db) -> None:
    before = _counts(db)
    for method, path, kwargs in [
        ("GET", "/v1/banks/nope", {}),
        ("PATCH", "/v1/banks/nope", {"json": {"kind": "hold"}}),
        ("POST", "/v1/banks/nope/entries", {"json": {"signals": {"md5": "0" * 32}}}),
        ("POST", "/v1/banks/nope/content", {"files": {"file": ("a.jpg", jpeg(3), "image/jpeg")}}),
        ("GET", "/v1/banks/nope/export", {}),
    ]:
        error = _assert_error(
            client.request(method, path, headers=auth("lead"), **kwargs), 404, "nope"
        )
        assert error["code"] == "not_found"
    _assert_error(
        client.post(
            "/v1/lookup",
            json={"signals": {"md5": "0" * 32}, "banks": ["nope"]},
            headers=auth("lead"),
        ),
        404,
        "nope",
    )
    assert _counts(db) == before


def test_hostile_strings_and_values(client, auth, db) -> None:
    before = _counts(db)
    cases = [
        {"text": "hi", "content_id": "a\x00b"},
        {"text": "hi", "metadata": {"k": "\ud800"}},
        {"text": "\ud800"},
        {"hashes": {"pdq": "ab"}},
        {"hashes": {"pdq_quality": 500, "md5": "0" * 32}},
        {"url": "javascript:alert(1)"},
        {"text": "a", "url": "http://x.example"},
        {},
    ]
    for body in cases:
        response = client.post(
            "/v1/screen",
            content=__import__("json").dumps(body),
            headers={**auth("integrator"), "Content-Type": "application/json"},
        )
        assert 400 <= response.status_code < 500, (body, response.text)
        assert response.json()["error"]["message"]
    _assert_error(
        client.post(
            "/v1/screen", content=b"x", headers={**auth("integrator"), "Content-Type": "text/plain"}
        ),
        415,
    )
    assert _counts(db) == before


def test_an_image_that_is_not_really_one(client, auth, db) -> None:
    gif = io.BytesIO()
    Image.new("P", (10, 10)).save(gif, "GIF")
    corrupt = gif.getvalue()[:6] + b"\x00" * 40
    response = _upload(client, auth, corrupt, name="x.gif", mime="image/gif")
    assert response.status_code in (415, 422)
