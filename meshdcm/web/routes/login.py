"""The pages and the session: the home and login pages, logging in and out, and who is logged in (``/api/me``)."""

from __future__ import annotations

import logging
import secrets

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse

from .. import auth
from ..common import STATIC, _bad, _page, _web
from ..report import SECTIONS

log = logging.getLogger("meshdcm.web")


async def login_page(request: Request):
    if auth.current_user(request):
        return RedirectResponse("/", status_code=303)
    return _page("login.html", request)


async def login(request: Request):
    form = await request.form()
    if not auth.csrf_ok(request, str(form.get("csrf", ""))):
        return _bad("missing or wrong CSRF token; reload the login page", 403)
    user = _web(request).login.check(str(form.get("user", "")).strip(), str(form.get("secret", "")))
    if user is None:
        log.warning("failed login from %s", request.client.host if request.client else "?")
        html = (STATIC / "login.html").read_text(encoding="utf-8").replace("{{csrf}}", auth.csrf_token(request))
        html = html.replace("<!--error-->", '<p class="error" id="login-error">Wrong token or password.</p>')
        return HTMLResponse(html, status_code=401)
    request.session.clear()
    request.session["user"] = user
    request.session["csrf"] = secrets.token_urlsafe(32)  # a new token after login
    log.info("user %s logged in", user)
    return RedirectResponse("/", status_code=303)


async def logout(request: Request):
    request.session.clear()
    return JSONResponse({"ok": True})


async def home(request: Request):
    return _page("index.html", request)


async def me(request: Request):
    return JSONResponse({"user": auth.current_user(request), "csrf": auth.csrf_token(request),
                         "node": _web(request).node.name, "sections": [list(s) for s in SECTIONS]})

