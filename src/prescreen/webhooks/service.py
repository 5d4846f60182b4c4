"""Signed webhooks: an integrator registers a URL; decisions are POSTed to it, retried with backoff.

Each delivery carries `X-Prescreen-Timestamp` and `X-Prescreen-Signature: v1=<hex>`, where the
hex is HMAC-SHA256(secret, "<timestamp>.<raw body>"). Receivers recompute it, compare in
constant time and reject old timestamps, which defeats forgery and replay.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from prescreen.core.config import get_settings
from prescreen.core.errors import InvalidInput, NotFound
from prescreen.jobs.service import JobContext, PermanentJobError, enqueue, job_handler
from prescreen.webhooks.models import WebhookEndpoint

DELIVERY_JOB = "deliver_webhook"
SIGNATURE_HEADER = "X-Prescreen-Signature"
TIMESTAMP_HEADER = "X-Prescreen-Timestamp"
TIMEOUT_SECONDS = 10.0


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    """What a receiver does: constant-time comparison and a freshness window."""
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), body), signature)


def check_url(url: str, allow_private: bool) -> str:
    """Only http(s) to public addresses unless the operator allows private ones (SSRF guard)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("a webhook URL must be an absolute http or https URL")
    if not allow_private:
        for address in _resolve(parts.hostname):
            if not address.is_global:
                raise InvalidInput(
                    f"webhook host {parts.hostname} resolves to a non-public address {address}; "
                    "set PRESCREEN_WEBHOOK_ALLOW_PRIVATE=true to allow it"
                )
    return url


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        raise InvalidInput(f"webhook host {host} does not resolve") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def set_endpoint(session: Session, owner_key_id: str, url: str) -> tuple[WebhookEndpoint, str]:
    """Create or replace an integrator's endpoint; returns it and its new signing secret."""
    check_url(url, get_settings().webhook_allow_private)
    endpoint = session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.owner_key_id == owner_key_id)
    )
    secret = "whsec_" + secrets.token_urlsafe(32)
    if endpoint is None:
        endpoint = WebhookEndpoint(owner_key_id=owner_key_id, url=url, secret=secret)
        session.add(endpoint)
    else:
        endpoint.url, endpoint.secret = url, secret
    session.flush()
    return endpoint, secret


def get_endpoint(session: Session, owner_key_id: str) -> WebhookEndpoint | None:
    return session.scalar(
        select(WebhookEndpoint).where(WebhookEndpoint.owner_key_id == owner_key_id)
    )


def delete_endpoint(session: Session, owner_key_id: str) -> None:
    endpoint = get_endpoint(session, owner_key_id)
    if endpoint is None:
        raise NotFound("no webhook is configured for this key")
    session.delete(endpoint)


def notify(session: Session, owner_key_id: str | None, event: str, data: dict[str, Any]) -> None:
    """Queue a delivery in the caller's transaction, if the owner has an endpoint."""
    if not owner_key_id:
        return
    endpoint = get_endpoint(session, owner_key_id)
    if endpoint is None:
        return
    enqueue(
        session,
        DELIVERY_JOB,
        {"endpoint": endpoint.id, "event": event, "data": data},
        max_attempts=8,
    )


@job_handler(DELIVERY_JOB)
def deliver(ctx: JobContext) -> dict[str, Any]:
    endpoint = ctx.session.get(WebhookEndpoint, ctx.job.payload["endpoint"])
    if endpoint is None:
        raise PermanentJobError("the webhook endpoint was removed")
    check_url(endpoint.url, get_settings().webhook_allow_private)
    body = json.dumps(
        {
            "event": ctx.job.payload["event"],
            "delivery": ctx.job.id,
            "data": ctx.job.payload["data"],
        },
        sort_keys=True,
    ).encode()
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(endpoint.secret, timestamp, body),
        "User-Agent": "prescreen-webhook/1",
    }
    response = httpx.post(endpoint.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
    if response.status_code >= 300:
        raise RuntimeError(f"webhook answered {response.status_code}")
    return {"status_code": response.status_code}
