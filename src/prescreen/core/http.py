"""HTTP plumbing: JSON errors for everything, an upload size cap, metrics and access logs."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram, multiprocess
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prescreen.core.errors import PrescreenError

log = logging.getLogger("prescreen.http")

REQUESTS = Counter("prescreen_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "prescreen_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def error_body(code: str, message: str, **detail) -> dict:
    body = {"code": code, "message": message}
    if detail:
        body["detail"] = detail
    return {"error": body}


class WorkerMetrics(multiprocess.MultiProcessCollector):
    """The workers' metric files added up, leaving out any that is empty. A worker creates its
    file, then sizes it: a scrape in between finds it empty, and a worker killed in between (a
    `kill -9`, an out-of-memory kill) leaves it so, on which prometheus_client's own collector
    fails every scrape."""

    def collect(self):
        files = []
        for path in glob.glob(os.path.join(self._path, "*.db")):
            try:
                if os.path.getsize(path) >= 8:  # the header: how much of the file is used
                    files.append(path)
            except OSError:  # removed meanwhile
                continue
        return self.merge(files, accumulate=True)


IMPORT_PATH = re.compile(r"^/v1/banks/[^/]+/import$")


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies over the limit, by Content-Length or while streaming, with a 413.
    Bank imports (whole hash lists) have their own, larger limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_import_bytes: int) -> None:
        self.app, self.default_max, self.import_max = app, max_bytes, max_import_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        max_bytes = self.import_max if IMPORT_PATH.match(scope["path"]) else self.default_max
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            return await self._refuse(send, max_bytes)
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send, max_bytes)

    async def _refuse(self, send: Send, max_bytes: int) -> None:
        body = json.dumps(
            error_body(
                "payload_too_large",
                f"request body is over the limit of {max_bytes:,} bytes",
                max_bytes=max_bytes,
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Observe:
    """Metrics and an access log line per request (plain ASGI: no per-request task or body
    re-streaming, which Starlette's decorator middleware would add to every call)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(elapsed)
            if log.isEnabledFor(logging.INFO):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )


def install(app: FastAPI, max_upload_bytes: int, max_import_bytes: int) -> None:
    """Error handlers, metrics and logging middleware, and the size cap (outermost)."""

    @app.exception_handler(PrescreenError)
    async def prescreen_error(_request: Request, exc: PrescreenError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if any(e["type"] == "json_invalid" for e in errors):
            return JSONResponse(
                error_body("malformed_json", "the request body is not valid JSON", errors=errors),
                status_code=400,
            )
        summary = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in errors
        )
        return JSONResponse(
            error_body("invalid_input", summary or "invalid request", errors=errors),
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        error_id = str(uuid.uuid4())
        log.exception("unhandled error", extra={"error_id": error_id})
        return JSONResponse(
            error_body("internal_error", "unexpected error; it has been logged", error_id=error_id),
            status_code=500,
        )

    app.add_middleware(Observe)
    app.add_middleware(
        BodySizeLimit, max_bytes=max_upload_bytes + 64 * 1024, max_import_bytes=max_import_bytes
    )
