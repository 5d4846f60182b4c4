"""`prescreen user ...`: web UI users (moderators, leads, admins)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from prescreen.core.cli_context import database, emit, err_console, fail
from prescreen.core.errors import PrescreenError
from prescreen.review import users

app = typer.Typer(help="Web UI users: create, list, disable.", no_args_is_help=True)
PASSWORD_ENV = "PRESCREEN_PASSWORD"


@app.command("create")
def create(
    username: Annotated[str, typer.Option(help="Login name (lower-case letters, digits, _ . -)")],
    role: Annotated[str, typer.Option(help="moderator, lead, admin, legal or auditor")],
) -> None:
    """Create a UI user. The password is read from PRESCREEN_PASSWORD or asked for (hidden)."""
    password = os.environ.get(PASSWORD_ENV)
    if not password:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with database().session() as session:
            user = users.create_user(session, username, password, role)
            emit(users.user_to_dict(user))
    except PrescreenError as exc:
        fail(exc)
    err_console.print(f"User {username!r} can now log in at /ui/login.")


@app.command("list")
def list_() -> None:
    """Every UI user, one JSON object per line."""
    with database().session() as session:
        for user in users.list_users(session):
            emit(users.user_to_dict(user))


@app.command("disable")
def disable(username: str) -> None:
    """Disable a user and end their sessions."""
    _set_disabled(username, True)


@app.command("enable")
def enable(username: str) -> None:
    """Enable a disabled user."""
    _set_disabled(username, False)


def _set_disabled(username: str, disabled: bool) -> None:
    try:
        with database().session() as session:
            match = [u for u in users.list_users(session) if u.username == username.lower()]
            if not match:
                fail(f"no user {username!r}")
            emit(users.user_to_dict(users.set_disabled(session, match[0].id, disabled)))
    except PrescreenError as exc:
        fail(exc)
