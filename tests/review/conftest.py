"""Helpers for review tests: banks that hold, uploads screened through the API, extra keys."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance
from tests.media import encode, jpeg, photo

from prescreen.core.auth import create_api_key
from prescreen.core.config import reset_settings
from prescreen.core.db import Database


def edited(seed: int, variant: int = 0) -> bytes:
    """A copy of photo(seed) as someone re-uploading it would make: resized, brighter, re-saved."""
    image = photo(seed)
    image = image.resize((560 - 40 * variant, 420 - 30 * variant), Image.Resampling.BILINEAR)
    image = ImageEnhance.Brightness(image).enhance(1.08 + 0.03 * variant)
    return encode(image, "JPEG", quality=80 - 5 * variant)


@dataclass
class Review:
    """Drives the API as a platform, a lead and moderators would."""

    client: TestClient
    db: Database
    keys: dict[str, str]
    extra: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def headers(self, role: str) -> dict[str, str]:
        key = self.keys.get(role) or self.extra[role]
        return {"Authorization": f"Bearer {key}"}

    def key(self, name: str, role: str) -> str:
        """Another key (e.g. a second moderator)."""
        with self.db.session() as session:
            self.extra[name] = create_api_key(session, role, name)[1]
        return self.extra[name]

    def bank(self, name: str, kind: str, labels: list[str], seeds: list[int]) -> None:
        created = self.client.post(
            "/v1/banks",
            json={"name": name, "kind": kind, "labels": labels},
            headers=self.headers("lead"),
        )
        assert created.status_code == 201, created.text
        for seed in seeds:
            added = self.client.post(
                f"/v1/banks/{name}/content",
                files={"file": ("x.jpg", jpeg(seed), "image/jpeg")},
                data={"labels": labels[0]},
                headers=self.headers("lead"),
            )
            assert added.status_code == 201, added.text

    def screen(
        self, data: bytes, user_id: str | None = "user-1", content_id: str | None = None
    ) -> dict:
        self.counter += 1
        fields = {"content_id": content_id or f"upload-{self.counter}"}
        if user_id:
            fields["user_id"] = user_id
        response = self.client.post(
            "/v1/screen",
            files={"file": ("upload.jpg", data, "image/jpeg")},
            data=fields,
            headers=self.headers("integrator"),
        )
        assert response.status_code == 200, response.text
        return response.json()

    def cases(self, role: str = "moderator", **params) -> list[dict]:
        response = self.client.get("/v1/review/cases", params=params, headers=self.headers(role))
        assert response.status_code == 200, response.text
        return response.json()["cases"]

    def case(self, case_id: str, role: str = "moderator") -> dict:
        response = self.client.get(f"/v1/review/cases/{case_id}", headers=self.headers(role))
        assert response.status_code == 200, response.text
        return response.json()

    def decide(self, case_id: str, role: str = "moderator", **body):
        return self.client.post(
            f"/v1/review/cases/{case_id}/decision", json=body, headers=self.headers(role)
        )

    def held_case(self, seed: int, user_id: str = "user-1", variant: int = 0) -> tuple[dict, dict]:
        """Screen an edited copy of a banked photo: it is held; returns (decision, case)."""
        decision = self.screen(edited(seed, variant), user_id=user_id)
        assert decision["decision"] == "hold", decision
        matching = [
            c
            for c in self.cases("admin", status="all")
            if any(
                i["content_id"] == decision["content_id"]
                for i in self.case(c["id"], "admin")["items"]
            )
        ]
        assert len(matching) == 1
        return decision, matching[0]


@pytest.fixture
def review(client, db, keys) -> Review:
    return Review(client, db, keys)


@pytest.fixture
def env_settings(monkeypatch):
    """Set PRESCREEN_* variables read through get_settings() (screening hooks read them)."""

    def set_(**values: object) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"PRESCREEN_{name.upper()}", str(value))
        reset_settings()

    yield set_
    reset_settings()


@pytest.fixture(autouse=True)
def _fresh_settings():
    reset_settings()
    yield
    reset_settings()


def image_bytes(size: tuple[int, int] = (64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(buffer, "PNG")
    return buffer.getvalue()
