"""The FastAPI application: routers from every domain, plumbing from core."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager
from datetime import timedelta

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy import text

from prescreen import __version__
from prescreen.audit.api import router as audit_router
from prescreen.banks.api import router as banks_router
from prescreen.core import http
from prescreen.core.config import Settings, get_settings
from prescreen.core.db import Database
from prescreen.core.logging import configure_logging
from prescreen.core.memory import grown_too_much
from prescreen.exchange.api import router as exchange_router
from prescreen.exchange.hma_api import router as hma_router
from prescreen.franking.api import router as franking_router
from prescreen.jobs.api import router as jobs_router
from prescreen.jobs.service import Worker
from prescreen.legal.api import router as legal_router
from prescreen.matching.api import router as matching_router
from prescreen.matching.service import Matcher
from prescreen.review.api import integrations as review_integrations_router
from prescreen.review.api import router as review_router
from prescreen.review.ui import STATIC_DIR as REVIEW_STATIC_DIR
from prescreen.review.ui import router as review_ui_router
from prescreen.screening.api import router as screening_router
from prescreen.screening.retroscan_api import router as retroscan_router
from prescreen.transparency.api import router as transparency_router
from prescreen.transparency.ui import router as transparency_ui_router
from prescreen.webhooks.api import router as webhooks_router

log = logging.getLogger(__name__)

DESCRIPTION = """Screen uploads against shared hash banks before they go live.

Authenticate with `Authorization: Bearer <key>` (create one with `prescreen apikey create`).
Errors are JSON: `{"error": {"code": ..., "message": ..., "detail": ...}}`.
"""


def create_app(settings: Settings | None = None, db: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    db = db or Database(settings.database_url)
    matcher = Matcher(snapshot_dir=settings.data_dir / "index")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        def load() -> None:
            with db.session() as session:
                matcher.rebuild(session)

        # Blocking work runs in the thread pool, and hashing uploads in slots of its own
        # (`core.deps.run_hashing`); more threads than these only add memory.
        to_thread.current_default_thread_limiter().total_tokens = settings.request_threads
        app.state.hashing_slots = CapacityLimiter(settings.hashing_threads)
        await run_in_threadpool(load)
        workers = [
            Worker(
                db,
                lease=timedelta(seconds=settings.job_lease_seconds),
                context={"settings": settings, "matcher": matcher},
            )
            for _ in range(settings.workers_in_process)
        ]
        for worker in workers:
            worker.start_thread()
        log.info("prescreen ready", extra={"version": __version__, "indexes": matcher.size()})
        yield
        for worker in workers:
            worker.stop()
        # A worker replaced for its memory leaves the snapshot as the others map it: rewritten
        # now, they would keep the old files mapped and the fresh worker the new ones (the
        # index twice in memory).
        if not grown_too_much():
            await run_in_threadpool(matcher.save_snapshot)

    app = FastAPI(
        title="prescreen",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings, app.state.db, app.state.matcher = settings, db, matcher
    http.install(app, settings.max_upload_bytes, settings.max_import_bytes)
    # Routes are matched in the order they are added, and each one tried costs a few
    # microseconds (about 0.3 ms for a path after all ~140): the upload path's and HMA's matching
    # routes come first, then the health checks, then the rest.
    for router in (screening_router, matching_router, hma_router):
        app.include_router(router)

    @app.get("/healthz", tags=["operations"], summary="The process is alive")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="The database answers and indexes are loaded")
    def readyz():
        try:
            with db.session() as session:
                session.execute(text("SELECT 1"))
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "database": str(exc)[:200]}, 503)
        if not matcher.loaded:
            return JSONResponse({"status": "loading"}, 503)
        return {"status": "ready", "indexes": matcher.size()}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    def metrics() -> PlainTextResponse:
        registry = None
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # several workers: add theirs up
            registry = CollectorRegistry()
            http.WorkerMetrics(registry)
        body = generate_latest(registry) if registry else generate_latest()
        return PlainTextResponse(body, media_type=CONTENT_TYPE_LATEST)

    for router in (banks_router, jobs_router, webhooks_router):
        app.include_router(router)
    for router in (review_router, review_integrations_router, review_ui_router):
        app.include_router(router)
    app.include_router(franking_router)
    app.include_router(audit_router)
    app.include_router(legal_router)
    app.include_router(retroscan_router)
    app.include_router(exchange_router)
    app.include_router(transparency_router)
    app.include_router(transparency_ui_router)
    app.mount("/ui/static", StaticFiles(directory=REVIEW_STATIC_DIR), name="ui-static")

    return app


def app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory prescreen.app:app_from_env`."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return create_app(settings)
