"""Every /v1 route checks the caller's key and role; keys are stored only as hashes."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import select

from prescreen.core.auth import ApiKey

PUBLIC = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}


def _v1_routes(client):
    for path, operations in client.get("/openapi.json").json()["paths"].items():
        if path.startswith("/v1"):
            for method in operations:
                yield method.upper(), re.sub(r"\{[^}]+\}", "1", path)


def test_every_v1_route_refuses_missing_and_bad_keys(client) -> None:
    routes = list(_v1_routes(client))
    assert len(routes) >= 14
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer psk_0000_nope"}, {"X-API-Key": "junk"}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("role,method,path,allowed", [
    ("moderator", "POST", "/v1/banks", False),
    ("integrator", "DELETE", "/v1/banks/x", False),
    ("auditor", "POST", "/v1/screen", False),
    ("legal", "GET", "/v1/banks", False),
    ("moderator", "GET", "/v1/banks", True),
    ("integrator", "POST", "/v1/lookup", True),
    ("lead", "POST", "/v1/banks", True),
    ("admin", "DELETE", "/v1/banks/x", True),
])  # fmt: skip
def test_roles_are_checked(client, auth, role, method, path, allowed) -> None:
    body = {"name": "roles-bank"} if path == "/v1/banks" else {"signals": {"md5": "0" * 32}}
    response = client.request(method, path, json=body, headers=auth(role))
    if allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403
        assert "may not" in response.json()["error"]["message"]


def test_keys_are_stored_hashed_and_revocable(client, db, keys) -> None:
    key = keys["integrator"]
    secret = key.split("_", 2)[2]
    with db.session() as session:
        rows = session.scalars(select(ApiKey)).all()
        assert all(secret not in (r.secret_hash, r.key_id, r.name) for r in rows)
        row = next(r for r in rows if r.role == "integrator")
        assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
        row.revoked_at = row.created_at
    response = client.post(
        "/v1/lookup", json={"signals": {"md5": "0" * 32}}, headers={"X-API-Key": key}
    )
    assert response.status_code == 401
