"""Web UI users and sessions: scrypt password hashes, lock-out after repeated failures, sessions
with idle and absolute timeouts, CSRF tokens, and the server's session secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from prescreen.audit.service import record as audit_record
from prescreen.core.auth import Role
from prescreen.core.config import Settings
from prescreen.core.db import utcnow
from prescreen.core.errors import Conflict, InvalidInput, NotFound
from prescreen.review.models import UiSession, UiUser

UI_ROLES = (Role.moderator, Role.lead, Role.admin, Role.legal, Role.auditor)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2**14, 8, 1, 32
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=5)
SECRET_FILE = "session_secret"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    """`scrypt$N$r$p$salt$hash` with a random 16-byte salt; parameters travel with the hash."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=SCRYPT_LEN
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


def validate_new_user(username: str, password: str, role: str) -> tuple[str, str]:
    username = username.strip().lower()
    if not USERNAME.match(username):
        raise InvalidInput(
            "usernames are 2-64 lower-case letters, digits and _ . - (starting with a letter or "
            "digit)"
        )
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"passwords are at least {MIN_PASSWORD} characters long")
    if "\x00" in password:
        raise InvalidInput("passwords must not contain NUL characters")
    try:
        role_value = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"unknown role {role!r}", roles=[r.value for r in UI_ROLES]) from exc
    if role_value not in UI_ROLES:
        raise InvalidInput(f"role {role!r} cannot log in to the UI", roles=list(UI_ROLES))
    return username, role_value.value


def create_user(
    session: Session, username: str, password: str, role: str, actor: str = "cli"
) -> UiUser:
    username, role = validate_new_user(username, password, role)
    if session.scalar(select(UiUser.id).where(UiUser.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    user = UiUser(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    session.flush()
    audit_record(session, actor, "ui_user.create", f"ui_user:{username}", {"role": role})
    return user


def list_users(session: Session) -> list[UiUser]:
    return list(session.scalars(select(UiUser).order_by(UiUser.username)))


def set_disabled(session: Session, user_id: int, disabled: bool, actor: str = "cli") -> UiUser:
    user = session.get(UiUser, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    user.disabled = disabled
    action = "ui_user.disable" if disabled else "ui_user.enable"
    audit_record(session, actor, action, f"ui_user:{user.username}", {})
    if disabled:
        session.execute(delete(UiSession).where(UiSession.user_id == user.id))
    session.flush()
    return user


def user_to_dict(user: UiUser) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
    }


def authenticate_user(session: Session, username: str, password: str) -> UiUser | None:
    """The user if the password is right and the account usable; failures do not say why, and
    take as long whether or not the user exists."""
    now = utcnow()
    user = session.scalar(select(UiUser).where(UiUser.username == username.strip().lower()))
    if user is None:
        verify_password(password, _DUMMY_HASH)
        return None
    if user.locked_until is not None and user.locked_until > now:
        verify_password(password, _DUMMY_HASH)
        return None
    if not verify_password(password, user.password_hash) or user.disabled:
        audit_record(
            session, f"user:{user.username}", "ui.login.failed", f"ui_user:{user.username}"
        )
        user.failed_logins += 1
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until, user.failed_logins = now + LOCKOUT, 0
        return None
    user.failed_logins, user.locked_until, user.last_login_at = 0, None, now
    audit_record(session, f"user:{user.username}", "ui.login", f"ui_user:{user.username}")
    return user


def session_secret(settings: Settings) -> bytes:
    """The configured secret, or one generated at first start into DATA_DIR (mode 0600)."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    value = path.read_text().strip()
    if len(value) < 32:
        raise RuntimeError(f"{path} holds no usable session secret; delete it to regenerate")
    return value.encode()


def _token_id(secret: bytes, token: str) -> str:
    return hmac.new(secret, f"session:{token}".encode(), hashlib.sha256).hexdigest()


def start_session(
    session: Session, user: UiUser, settings: Settings, secret: bytes
) -> tuple[str, UiSession]:
    """A new session; returns the cookie token (never stored) and the row."""
    now = utcnow()
    token = secrets.token_urlsafe(32)
    row = UiSession(
        id=_token_id(secret, token),
        user_id=user.id,
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(hours=settings.ui_session_max_hours),
    )
    session.add(row)
    session.execute(delete(UiSession).where(UiSession.expires_at < now))
    session.flush()
    return token, row


def load_session(
    session: Session, token: str | None, settings: Settings, secret: bytes
) -> tuple[UiSession, UiUser] | None:
    """The live session for a cookie token; expired (idle or absolute) sessions are ended."""
    if not token or len(token) > 256:
        return None
    row = session.get(UiSession, _token_id(secret, token))
    if row is None:
        return None
    now = utcnow()
    idle = timedelta(minutes=settings.ui_session_idle_minutes)
    user = session.get(UiUser, row.user_id)
    if now >= row.expires_at or now - row.last_seen_at >= idle or user is None or user.disabled:
        session.delete(row)
        session.flush()
        return None
    if now - row.last_seen_at > timedelta(seconds=15):
        row.last_seen_at = now
    return row, user


def end_session(session: Session, token: str | None, secret: bytes) -> None:
    if token and len(token) <= 256:
        session.execute(delete(UiSession).where(UiSession.id == _token_id(secret, token)))


def login_token(secret: bytes, nonce: str) -> str:
    """The CSRF token of the login form, bound to a pre-login cookie nonce."""
    return hmac.new(secret, f"login:{nonce}".encode(), hashlib.sha256).hexdigest()


def tokens_equal(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).encode(), expected.encode())
