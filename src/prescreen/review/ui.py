"""The review web UI under `/ui`: server-rendered pages (Jinja2) with htmx for live refresh.

Security: sessions in an HttpOnly, SameSite=Strict cookie (Secure when configured) with idle and
absolute timeouts; a CSRF token on every POST (form field or `X-CSRF-Token` header); a strict
Content-Security-Policy (no inline script, no external origin); pages are never cached. Media is
blurred and greyscale until revealed, and CSAM-labelled media is never rendered or served.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from starlette.exceptions import HTTPException as StarletteHTTPException

from prescreen.banks.models import Bank
from prescreen.core.auth import Role
from prescreen.core.config import Settings
from prescreen.core.db import Database, utcnow
from prescreen.core.deps import get_db, get_settings
from prescreen.core.errors import Forbidden, InvalidInput, NotFound, PrescreenError
from prescreen.core.validation import clean_text
from prescreen.review import service, users
from prescreen.review.api import media_response
from prescreen.review.service import LEADS, PRIORITY_NAMES, REVIEWERS, Reviewer

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))
SESSION_COOKIE = "prescreen_session"
LOGIN_COOKIE = "prescreen_login"
UUID_LEN = 36
DEFAULT_LABELS = (
    "terrorism",
    "violent_extremism",
    "csam",
    "ncii",
    "hate",
    "imminent_threat",
    "other",
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "media-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    def __init__(self, expired: bool = False) -> None:
        self.expired = expired


class UiRoute(APIRoute):
    """HTML error pages instead of JSON, a login redirect, and security headers on every page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired as exc:
                target = "/ui/login" + ("?expired=1" if exc.expired else "")
                if request.headers.get("hx-request"):
                    response = Response(status_code=401, headers={"HX-Redirect": target})
                else:
                    response = RedirectResponse(target, status_code=303)
            except PrescreenError as exc:
                response = _error_page(request, exc.status_code, exc.message)
            except StarletteHTTPException as exc:
                response = _error_page(request, exc.status_code, str(exc.detail))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _error_page(request: Request, status: int, message: str) -> Response:
    login = getattr(request.state, "ui_login", None)
    return templates.TemplateResponse(
        request,
        "error.html",
        {"login": login, "status": status, "message": message},
        status_code=status,
    )


@dataclass(frozen=True)
class Login:
    """The logged-in UI user of a request."""

    user_id: int
    username: str
    role: Role
    csrf: str

    @property
    def reviewer(self) -> Reviewer:
        return Reviewer(f"user:{self.username}", self.role)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def is_lead(self) -> bool:
        return self.role in LEADS

    @property
    def can_review(self) -> bool:
        return self.role in REVIEWERS


def _secret(request: Request, settings: Settings) -> bytes:
    secret = getattr(request.app.state, "ui_session_secret", None)
    if secret is None:
        secret = users.session_secret(settings)
        request.app.state.ui_session_secret = secret
    return secret


def _load_login(request: Request, db: Database, settings: Settings) -> Login | None:
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    with db.session() as session:
        found = users.load_session(session, token, settings, _secret(request, settings))
        if found is None:
            return None
        row, user = found
        return Login(user.id, user.username, Role(user.role), row.csrf_token)


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


def require_ui(*roles: Role) -> Callable[..., Coroutine[Any, Any, Login]]:
    """A logged-in user with one of `roles` (admins pass); POSTs need the CSRF token."""
    allowed = frozenset(roles)

    async def dependency(
        request: Request,
        db: Database = Depends(get_db),
        settings: Settings = Depends(get_settings),
    ) -> Login:
        login = await run_in_threadpool(_load_login, request, db, settings)
        if login is None:
            raise LoginRequired(expired=bool(request.cookies.get(SESSION_COOKIE)))
        request.state.ui_login = login
        if request.method == "POST":
            given = request.headers.get("x-csrf-token")
            if not given:
                form = await request.form()
                value = form.get("csrf_token")
                given = value if isinstance(value, str) else None
            if not _same_origin(request) or not users.tokens_equal(given, login.csrf):
                raise Forbidden("the form has expired or did not come from this site; reload")
        if allowed and login.role not in allowed and login.role is not Role.admin:
            raise Forbidden(f"the {login.role.value} role may not open this page")
        return login

    return dependency


Reviewing = Annotated[Login, Depends(require_ui(*REVIEWERS))]
Admin = Annotated[Login, Depends(require_ui(Role.admin))]
Anyone = Annotated[Login, Depends(require_ui())]


def _page(request: Request, name: str, login: Login | None, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"login": login, "now": utcnow(), **context})


def _case_id(case_id: str) -> str:
    if len(case_id) != UUID_LEN or any(c not in "0123456789abcdef-" for c in case_id):
        raise NotFound("no such case")
    return case_id


# ---------------------------------------------------------------------------------------------
# Login


@router.get("", response_class=HTMLResponse)
@router.get("/", response_class=HTMLResponse)
def home() -> Response:
    return RedirectResponse("/ui/queue", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    expired: bool = False,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    if _load_login(request, db, settings) is not None:
        return RedirectResponse("/ui/queue", status_code=303)
    return _login_page(request, settings, expired=expired)


def _login_page(
    request: Request, settings: Settings, error: str | None = None, expired: bool = False
) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {
            "login": None,
            "csrf": users.login_token(_secret(request, settings), nonce),
            "error": error,
            "expired": expired,
        },
        status_code=401 if error else 200,
    )
    _set_cookie(response, LOGIN_COOKIE, nonce, settings, max_age=1800)
    return response


def _set_cookie(
    response: Response, name: str, value: str, settings: Settings, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=settings.ui_cookie_secure,
    )


@router.post("/login", response_class=HTMLResponse)
def login_submit(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=128)] = "",
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    secret = _secret(request, settings)
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not _same_origin(request):
        return _login_page(request, settings, "The login form expired. Please try again.")
    if not users.tokens_equal(csrf_token, users.login_token(secret, nonce)):
        return _login_page(request, settings, "The login form expired. Please try again.")
    with db.session() as session:
        user = users.authenticate_user(session, username, password)
        token = None
        if user is not None:
            token, _row = users.start_session(session, user, settings, secret)
    if token is None:
        return _login_page(request, settings, "Wrong username or password.")
    response = RedirectResponse("/ui/queue", status_code=303)
    _set_cookie(response, SESSION_COOKIE, token, settings)
    response.delete_cookie(LOGIN_COOKIE, path="/ui")
    return response


@router.post("/logout")
def logout(
    request: Request,
    _login: Anyone,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    with db.session() as session:
        users.end_session(session, request.cookies.get(SESSION_COOKIE), _secret(request, settings))
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/ui")
    return response


# ---------------------------------------------------------------------------------------------
# Queue


def _queue_rows(db: Database, login: Login, status: str, kind: str | None) -> list[dict]:
    with db.session() as session:
        now = utcnow()
        return [
            service.case_summary(case, now)
            for case in service.list_cases(session, login.reviewer, status, kind, limit=200)
        ]


QUEUE_VIEWS = {"pending", "escalated", "decided"}


@router.get("/queue", response_class=HTMLResponse)
def queue(
    request: Request,
    login: Reviewing,
    view: str = "pending",
    done: str | None = None,
    db: Database = Depends(get_db),
) -> Response:
    view = view if view in QUEUE_VIEWS else "pending"
    with db.session() as session:
        stats = service.stats(session)
    return _page(
        request,
        "queue.html",
        login,
        rows=_queue_rows(db, login, view, None),
        view=view,
        stats=stats,
        done=done if done in service.CASE_VERDICTS + service.APPEAL_OUTCOMES else None,
    )


@router.get("/queue/rows", response_class=HTMLResponse)
def queue_rows(
    request: Request, login: Reviewing, view: str = "pending", db: Database = Depends(get_db)
) -> Response:
    view = view if view in QUEUE_VIEWS else "pending"
    return _page(
        request, "_queue_rows.html", login, rows=_queue_rows(db, login, view, None), view=view
    )


@router.post("/queue/next")
def next_case(
    login: Reviewing,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    """Claim the most urgent case nobody is working, and open it."""
    with db.session() as session:
        now = utcnow()
        for case in service.list_cases(session, login.reviewer, "pending", None, limit=50):
            if case.claimed_by in (None, login.reviewer.id) or (
                case.claim_expires_at is not None and case.claim_expires_at <= now
            ):
                service.claim(session, settings, case, login.reviewer)
                return RedirectResponse(f"/ui/cases/{case.id}", status_code=303)
    return RedirectResponse("/ui/queue?done=empty", status_code=303)


# ---------------------------------------------------------------------------------------------
# Case


def _bank_choices(db: Database, settings: Settings) -> list[dict]:
    with db.session() as session:
        banks = [
            {"name": b.name, "kind": b.kind, "labels": b.labels}
            for b in session.scalars(select(Bank).where(Bank.kind != "allow").order_by(Bank.name))
        ]
    if all(b["name"] != settings.review_bank for b in banks):
        banks.insert(0, {"name": settings.review_bank, "kind": "block", "labels": []})
    return banks


@router.get("/cases/{case_id}", response_class=HTMLResponse)
def case_page(
    request: Request,
    case_id: str,
    login: Reviewing,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    with db.session() as session:
        case = service.get_case(session, _case_id(case_id), login.reviewer)
        detail = service.case_detail(
            session, case, settings, media_url="/ui/cases/{case}/media/{content}"
        )
    banks = _bank_choices(db, settings)
    labels = list(
        dict.fromkeys(
            [*detail["labels"], *(label for b in banks for label in b["labels"]), *DEFAULT_LABELS]
        )
    )
    return _page(
        request,
        "case.html",
        login,
        case=detail,
        banks=banks,
        label_choices=labels,
        default_bank=settings.review_bank,
        mine=detail["claimed_by"] == login.reviewer.id,
        priority_names=PRIORITY_NAMES,
    )


@router.post("/cases/{case_id}/claim")
def claim_case(
    case_id: str,
    login: Reviewing,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    with db.session() as session:
        case = service.get_case(session, _case_id(case_id), login.reviewer)
        service.claim(session, settings, case, login.reviewer)
    return RedirectResponse(f"/ui/cases/{case_id}", status_code=303)


@router.post("/cases/{case_id}/release")
def release_case(case_id: str, login: Reviewing, db: Database = Depends(get_db)) -> Response:
    with db.session() as session:
        case = service.get_case(session, _case_id(case_id), login.reviewer)
        service.release(session, case, login.reviewer)
    return RedirectResponse("/ui/queue", status_code=303)


@router.post("/cases/{case_id}/decide")
def decide(
    case_id: str,
    login: Reviewing,
    verdict: Annotated[str, Form(max_length=32)] = "",
    label: Annotated[str, Form(max_length=64)] = "",
    bank: Annotated[str, Form(max_length=128)] = "",
    share: Annotated[str, Form(max_length=8)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
) -> Response:
    reason = _clean(reason)
    with db.session() as session:
        case = service.get_case(session, _case_id(case_id), login.reviewer)
        if case.kind == "appeal":
            service.decide_appeal(session, settings, case, login.reviewer, verdict, reason)
        else:
            service.decide_case(
                session,
                settings,
                case,
                login.reviewer,
                verdict,
                reason=reason,
                label=_clean(label) or None,
                bank_name=_clean(bank) or None,
                share=share == "on",
            )
    return RedirectResponse(f"/ui/queue?{urlencode({'done': verdict})}", status_code=303)


def _clean(value: str) -> str:
    try:
        return clean_text(value).strip()
    except ValueError as exc:
        raise InvalidInput(f"a field {exc}") from exc


@router.get("/cases/{case_id}/media/{content_pk}")
def media(
    case_id: str, content_pk: str, login: Reviewing, db: Database = Depends(get_db)
) -> Response:
    with db.session() as session:
        data, media_type = service.get_media(
            session, _case_id(case_id), _case_id(content_pk), login.reviewer
        )
    return media_response(data, media_type)


# ---------------------------------------------------------------------------------------------
# Dashboard and admin


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request, login: Reviewing, partial: bool = False, db: Database = Depends(get_db)
) -> Response:
    with db.session() as session:
        stats = service.stats(session)
    peak = max([h["count"] for h in stats["decisions_24h"]["per_hour"]] + [1])
    bars = [
        {**h, "step": round(20 * h["count"] / peak)} for h in stats["decisions_24h"]["per_hour"]
    ]
    name = "_dashboard_panel.html" if partial else "dashboard.html"
    return _page(request, name, login, stats=stats, bars=bars, priority_names=PRIORITY_NAMES)


@router.get("/admin/users", response_class=HTMLResponse)
def admin_users(
    request: Request,
    login: Admin,
    created: str | None = None,
    db: Database = Depends(get_db),
) -> Response:
    return _admin_page(request, login, db, created=created)


def _admin_page(
    request: Request,
    login: Login,
    db: Database,
    error: str | None = None,
    created: str | None = None,
    status: int = 200,
) -> Response:
    with db.session() as session:
        rows = [users.user_to_dict(u) for u in users.list_users(session)]
    response = _page(
        request,
        "admin_users.html",
        login,
        users=rows,
        roles=[r.value for r in users.UI_ROLES],
        error=error,
        created=created,
    )
    response.status_code = status
    return response


@router.post("/admin/users")
def admin_create_user(
    request: Request,
    login: Admin,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    role: Annotated[str, Form(max_length=16)] = "",
    db: Database = Depends(get_db),
) -> Response:
    try:
        with db.session() as session:
            user = users.create_user(
                session, _clean(username), _clean(password), role, f"user:{login.username}"
            )
            name = user.username
    except PrescreenError as exc:
        return _admin_page(request, login, db, error=exc.message, status=exc.status_code)
    return RedirectResponse(f"/ui/admin/users?{urlencode({'created': name})}", status_code=303)


@router.post("/admin/users/{user_id}/{action}")
def admin_toggle_user(
    user_id: int, action: str, login: Admin, db: Database = Depends(get_db)
) -> Response:
    if action not in ("disable", "enable"):
        raise NotFound("no such action")
    if user_id == login.user_id and action == "disable":
        raise InvalidInput("you cannot disable your own account")
    with db.session() as session:
        users.set_disabled(session, user_id, action == "disable", f"user:{login.username}")
    return RedirectResponse("/ui/admin/users", status_code=303)


def age(value: str | datetime) -> str:
    """`3 m`, `2 h 5 m`, `4 d` since (or until, for a future time) a moment."""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    seconds = int(abs((utcnow() - when).total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} m" if minutes else f"{hours} h"
    return f"{hours // 24} d"


def overdue(value: str) -> bool:
    return datetime.fromisoformat(value) < utcnow()


def short_time(value: str | None) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M UTC")


templates.env.filters["age"] = age
templates.env.filters["short_time"] = short_time
templates.env.tests["overdue"] = overdue
