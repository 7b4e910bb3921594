"""What every console page shares: the templates, rendering, the sign-in cookie and the CSRF token.

Rendering: Jinja2 with autoescape, so every value a user wrote (a name, a default, an event's data) is
text, never markup. Every page carries the CSRF token of its browser in its forms.

CSRF, as a double-submit cookie: the first page a browser gets sets ``schemasaga_csrf`` (random,
HttpOnly, SameSite=Strict) and every form carries the same value in a hidden field; a POST whose field
does not equal its cookie is refused (403) before anything is decided. Another site can neither read
the value nor (SameSite=Strict) make the browser send the cookie with its POST.

Sign-in: when tokens are required (SCHEMASAGA_AUTH), a console request needs a token, from an
``Authorization: Bearer`` header (a proxy) or from the ``schemasaga_console`` cookie that the sign-in
form sets (HttpOnly, SameSite=Strict, Secure over https): the token itself, checked on every request,
so a revoked token signs its browser out at once. Without one, a page redirects to the sign-in form.
"""

from __future__ import annotations

import functools
import hmac
import json
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials

from schemasaga.api.deps import bearer, get_services
from schemasaga.domain.access import OPEN, Caller, Scope

ASSETS = Path(__file__).resolve().parent.parent / "console"
# A page with something in flight asks for news this often (seconds), and only then.
REFRESH_SECONDS = 2
SESSION_COOKIE = "schemasaga_console"
CSRF_COOKIE = "schemasaga_csrf"
CSRF_FIELD = "csrf"
MAX_FORM_BYTES = 64 * 1024


# Every page: nothing cached; scripts, styles and images from this service only, and no inline script
# (so markup that slipped past the escaping could not run); not framed by another site.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class LoginNeeded(Exception):
    """A console request without a live token while tokens are required: the answer is the sign-in
    form, then back to ``next``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A POST whose CSRF field does not match its cookie."""


@functools.cache
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(ASSETS / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["json"] = pretty_json
    env.filters["when"] = when
    return env


def when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None else ""


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_token(request: Request) -> str:
    """The browser's CSRF token: its cookie's, else a new one (set on the answer by :func:`render`)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and 20 <= len(token) <= 100:
        return token
    cached: str | None = getattr(request.state, "new_csrf", None)
    if cached is None:
        cached = secrets.token_urlsafe(32)
        request.state.new_csrf = cached
    return cached


def render(
    request: Request, name: str, *, status_code: int = 200, refresh: bool = False, **context: Any
) -> HTMLResponse:
    html = (
        templates()
        .get_template(name)
        .render(
            refresh=REFRESH_SECONDS if refresh else None,
            csrf=csrf_token(request),
            signed_in=SESSION_COOKIE in request.cookies,
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)
    new: str | None = getattr(request.state, "new_csrf", None)
    if new is not None:
        response.set_cookie(
            CSRF_COOKIE, new, httponly=True, samesite="strict", secure=_secure(request), path="/"
        )
    return response


def not_found(request: Request, message: str) -> HTMLResponse:
    return render(request, "not_found.html", status_code=404, title="Not found", message=message)


async def form_of(request: Request) -> dict[str, str]:
    """The POST's urlencoded form (the last value of each field), after its CSRF check."""
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise CsrfRefused("the form is too large")
    fields = {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = fields.pop(CSRF_FIELD, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), sent.encode()):
        raise CsrfRefused(
            "the form's CSRF token does not match this browser's: reload the page and try again"
        )
    return fields


def set_session(request: Request, response: HTMLResponse | Any, token: str | None) -> None:
    if token is None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    else:
        response.set_cookie(
            SESSION_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/"
        )


async def console_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Caller:
    """Who a console request acts as: the open caller unless tokens are required; then the token of its
    ``Authorization`` header or of its sign-in cookie (else :class:`LoginNeeded`)."""
    if not request.app.state.tokens_required:
        return OPEN
    token = credentials.credentials if credentials is not None else request.cookies.get(SESSION_COOKIE)
    caller = await (await get_services(request)).tokens.authenticate(token) if token else None
    if caller is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginNeeded(target if request.method == "GET" else "/console")
    return caller


async def console_reader(caller: Annotated[Caller, Depends(console_caller)]) -> Caller:
    """The console shows every database's tables and events: a read token limited to none."""
    caller.require(Scope.READ, every_database=True)
    return caller


ConsoleCaller = Annotated[Caller, Depends(console_reader)]
