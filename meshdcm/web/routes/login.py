"""The pages and the session: the home and login pages, logging in and out, and who is logged in (``/api/me``).

A login starts a server-side session (``sessions.Sessions``; the cookie carries its id), a logout ends it. Failed
logins are throttled per client address and per user name (``sessions.LoginThrottle``: 429 with Retry-After). The
login form carries the page's location hash (``next``, e.g. ``#/study/UID``) through the login, back to that page.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from .. import auth
from ..common import STATIC, _bad, _page, _web
from ..report import SECTIONS
from ..sessions import retry_after

log = logging.getLogger("meshdcm.web")

#: A location hash the login may return to: a page of this app (``#/study/1.2.3``), nothing else.
NEXT_RE = re.compile(r"^#/[A-Za-z0-9._/-]{0,200}$")


async def login_page(request: Request):
    if auth.current_user(request):
        return RedirectResponse("/", status_code=303)
    return HTMLResponse(_login_html(request, ""), headers={"Cache-Control": "no-store"})


def _login_html(request: Request, error: str, next_hash: str = "") -> str:
    page = (STATIC / "login.html").read_text(encoding="utf-8").replace("{{csrf}}", auth.csrf_token(request))
    page = page.replace("{{next}}", html.escape(next_hash, quote=True))
    if error:
        page = page.replace("<!--error-->", f'<p class="error" id="login-error">{html.escape(error)}</p>')
    return page


async def login(request: Request):
    web = _web(request)
    form = await request.form(max_files=0, max_fields=10)
    if not auth.csrf_ok(request, str(form.get("csrf", ""))):
        return _bad("missing or wrong CSRF token; reload the login page", 403)
    user, secret = str(form.get("user", "")).strip(), str(form.get("secret", ""))
    next_hash = str(form.get("next", ""))
    next_hash = next_hash if NEXT_RE.match(next_hash) else ""
    if len(user) > auth.MAX_USER or len(secret) > auth.MAX_SECRET:
        return HTMLResponse(_login_html(request, f"The user name is at most {auth.MAX_USER} characters and the token "
                                                 f"or password at most {auth.MAX_SECRET}.", next_hash), 400,
                            headers={"Cache-Control": "no-store"})
    client = request.client.host if request.client else "?"
    wait = web.throttle.wait(client, user)
    if wait > 0:
        return _throttled(request, wait, next_hash)
    person = await asyncio.to_thread(web.login.check, user, secret)  # scrypt: ~50 ms, off the event loop
    if person is None:
        lock = web.throttle.failed(client, user)
        log.warning("failed login from %s%s", client, f" (further logins locked for {lock:g} s)" if lock else "")
        if lock:
            return _throttled(request, lock, next_hash)
        return HTMLResponse(_login_html(request, "Wrong token or password.", next_hash), 401,
                            headers={"Cache-Control": "no-store"})
    web.throttle.succeeded(client, user)
    web.sessions.end(request.session.get("sid"))
    request.session.clear()
    request.session["sid"] = web.sessions.start(person)
    request.session["csrf"] = secrets.token_urlsafe(32)  # a new token after login
    log.info("user %s logged in", person.user)
    return RedirectResponse("/" + next_hash, status_code=303)


def _throttled(request: Request, wait: float, next_hash: str) -> HTMLResponse:
    seconds = retry_after(wait)
    return HTMLResponse(_login_html(request, f"Too many failed logins from this address or for this user: try "
                                             f"again in {seconds} s.", next_hash), 429,
                        headers={"Retry-After": seconds, "Cache-Control": "no-store"})


async def logout(request: Request):
    _web(request).sessions.end(request.session.get("sid"))
    request.session.clear()
    return JSONResponse({"ok": True})


async def home(request: Request):
    return _page("index.html", request)


async def me(request: Request):
    person = auth.current_person(request)
    return JSONResponse({"user": person.user, "full_name": person.full_name, "organisation": person.organisation,
                         "cannot_sign": auth.why_cannot_sign(person), "csrf": auth.csrf_token(request),
                         "node": _web(request).node.name, "sections": [list(s) for s in SECTIONS]})
