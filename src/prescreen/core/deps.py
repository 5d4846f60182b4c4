"""FastAPI dependencies: the database session and the calling actor with a role check."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from prescreen.core.auth import Actor, Role, authenticate, check_role
from prescreen.core.config import Settings
from prescreen.core.db import Database
from prescreen.matching.service import Matcher

bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer psk_...`")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_matcher(request: Request) -> Matcher:
    return request.app.state.matcher


def get_session(db: Database = Depends(get_db)) -> Iterator[Session]:
    with db.session() as session:
        yield session


def require(*roles: Role) -> Callable[..., Actor]:
    """A dependency that authenticates the caller and checks its role (admins pass everywhere)."""
    allowed = frozenset(roles)

    def dependency(
        db: Database = Depends(get_db),
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
        header_key: str | None = Depends(api_key_header),
    ) -> Actor:
        presented = credentials.credentials if credentials else header_key
        with db.session(readonly=True) as session:
            actor = authenticate(session, presented)
        check_role(actor, allowed)
        return actor

    return dependency
