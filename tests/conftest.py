"""Shared fixtures. Database tests run on SQLite always and on PostgreSQL when
PRESCREEN_TEST_DATABASE_URL is set (CI sets it); each test starts from an empty, migrated schema."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from tests.webhook_receiver import WebhookReceiver

from prescreen.app import create_app
from prescreen.core.auth import Role, create_api_key
from prescreen.core.config import Settings, reset_settings
from prescreen.core.db import Base, Database
from prescreen.core.schema import import_all_models, upgrade

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("PRESCREEN_SHARED_DATA", ROOT.parent / "shared" / "data"))
PDQ_DATA = SHARED_DATA / "pdq"
PG_URL_ENV = "PRESCREEN_TEST_DATABASE_URL"

import_all_models()


def needs_pdq_data() -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        not PDQ_DATA.is_dir(), reason=f"reference PDQ data not found at {PDQ_DATA}"
    )


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set; PostgreSQL variants are skipped")
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    db = Database(url)
    with db.engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    upgrade(db)
    db.dispose()
    return url


def _truncate_postgres(db: Database) -> None:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[Database]:
    """An empty, migrated database on each backend."""
    if request.param == "sqlite":
        path = tmp_path / "prescreen.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        database = Database(f"sqlite:///{path}")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
        _truncate_postgres(database)
    yield database
    database.dispose()


@pytest.fixture
def settings(db: Database, tmp_path) -> Settings:
    return Settings(
        database_url=db.url,
        data_dir=tmp_path,
        max_upload_bytes=5 * 1024 * 1024,
        log_json=False,
        _env_file=None,
    )


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def keys(db: Database) -> dict[str, str]:
    """One API key per role."""
    with db.session() as session:
        return {role.value: create_api_key(session, role, f"test-{role.value}")[1] for role in Role}


@pytest.fixture
def auth(keys):
    def headers(role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[role]}"}

    return headers


@pytest.fixture
def receiver(monkeypatch) -> Iterator[str]:
    """The URL of a webhook endpoint on this machine (`WebhookReceiver` records deliveries)."""
    monkeypatch.setenv("PRESCREEN_WEBHOOK_ALLOW_PRIVATE", "true")
    reset_settings()
    WebhookReceiver.received, WebhookReceiver.fail_first = [], 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), WebhookReceiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()
    reset_settings()
