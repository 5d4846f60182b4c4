"""FastAPI dependencies: the database session and the calling actor with a role check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from anyio import to_thread
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from prescreen.core.auth import VERIFIED_KEYS, Actor, Role, authenticate_cached, check_role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.matching.service import Matcher

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer psk_...`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_db(request: Request) -> Database:
    return request.app.state.db


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_matcher(request: Request) -> Matcher:
    return request.app.state.matcher


T = TypeVar("T")


async def run_hashing(request: Request, work: Callable[..., T], *args: Any) -> T:
    """Run CPU-bound work on an upload (hashing it, screening it) in a thread, as many at
    once per worker as `hashing_threads` allows (see there why one)."""
    return await to_thread.run_sync(work, *args, limiter=request.app.state.hashing_slots)


def get_session(db: Database = Depends(get_db)) -> Iterator[Session]:
    """The request's transaction. Routes take it as `SESSION`, with `scope="function"`, so it
    commits before the response is sent (FastAPI otherwise runs this exit after sending): a
    2xx then means the change is stored and the client's next request sees it, and a failed
    commit is the error response rather than a success that was never stored."""
    with db.session() as session:
        yield session


# How every route takes the request's session: `session: Session = SESSION`.
SESSION = Depends(get_session, scope="function")


def require(*roles: Role) -> Callable[..., Awaitable[Actor]]:
    """A dependency that authenticates the caller by its bearer token or `X-API-Key` header
    and checks its role (admins pass everywhere)."""
    allowed = frozenset(roles)

    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        header_key: str | None = Depends(api_key_header),
    ) -> Actor:
        presented = credentials.credentials if credentials else header_key
        return await authorized(request, presented, allowed)

    return dependency


async def authorized(request: Request, presented: str | None, allowed: frozenset[Role]) -> Actor:
    """The actor holding the `presented` key, if its role is allowed. On the event loop: a key
    verified moments ago is answered from memory, and only a new one costs a database read,
    in the thread pool."""
    state = request.app.state
    ttl = state.settings.auth_cache_seconds
    actor = VERIFIED_KEYS.get(presented, ttl) if presented and ttl > 0 else None
    if actor is None:
        actor = await run_in_threadpool(authenticate_cached, state.db, presented, ttl)
    check_role(actor, allowed)
    return actor
