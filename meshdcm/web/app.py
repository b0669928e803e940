"""The Starlette application: pages, the JSON API, the event stream and the login.

Every route but the login page and the static assets needs a logged-in session (``auth.RequireLogin``, a middleware:
denied by default); every state-changing request
(POST/PUT/DELETE) needs the session's CSRF token in the ``X-CSRF-Token`` header (the login form carries it as a
field). No request body is longer than ``MAX_BODY`` (``BodyLimit``: 413). Blocking work (pixels, files, SR) runs
in Starlette's thread pool (plain ``def`` endpoints).

The routes live in ``routes/``, one module per area, and share ``common`` (the node's parts, the request helpers);
this module lists every route in one table and puts the middleware in front of them.
"""

from __future__ import annotations

import json
import secrets

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from meshdcm import Node

from . import auth
from .common import CACHE_MAX_AGE, CACHE_MAX_BYTES, MAX_BODY, STATIC, Web, WebConfig
from .routes.events import events
from .routes.images import series_aif, series_curve, series_info, series_slice, thumbnail
from .routes.login import home, login, login_page, logout, me
from .routes.monitor import dead_action, dead_letters, mesh
from .routes.reports import amend, draft, protocol, sign
from .routes.studies import (
    measurements,
    open_in_viewer,
    open_study,
    search,
    search_state,
    study_state,
    study_timeline,
)

__all__ = ["CACHE_MAX_AGE", "CACHE_MAX_BYTES", "MAX_BODY", "SECURITY_HEADERS", "BodyLimit", "SecurityHeaders",
           "WebConfig", "create_app"]


#: Sent with every answer: only this origin's scripts, styles, images and connections; never framed; no referrer.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
                                 b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    """Pure ASGI middleware (a BaseHTTPMiddleware would buffer the event stream) adding SECURITY_HEADERS."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)
        return await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes is answered 413 before any route reads it (a
    declared Content-Length at once; a chunked body once the limit is passed). The refused body is read and
    dropped, up to ``DRAIN`` bytes, so that the client, still sending, reads the answer instead of a reset."""

    DRAIN = 64 * 2**20

    def __init__(self, app, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in auth.SAFE_METHODS:
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.limit:
                return await self._refuse(receive, send)
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(receive, send, size, more)
        body, sent = b"".join(chunks), [False]

        async def replay():
            if not sent[0]:
                sent[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)

    async def _refuse(self, receive, send, size: int = 0, more: bool = True) -> None:
        while more and size <= self.DRAIN:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.dumps({"error": f"the request is larger than {self.limit // 2**20} MiB; send less (a report "
                                    "section holds at most 64,000 characters)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})


def create_app(node: Node, config: WebConfig) -> Starlette:
    web = Web(node, config)
    routes = [
        Route("/", home),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/me", me),
        Route("/api/events", events),
        Route("/api/search", search, methods=["POST"]),
        Route("/api/search/{id}", search_state),
        Route("/api/studies/{uid}", study_state),
        Route("/api/studies/{uid}/open", open_study, methods=["POST"]),
        Route("/api/studies/{uid}/timeline", study_timeline),
        Route("/api/studies/{uid}/measurements", measurements),
        Route("/api/studies/{uid}/draft", draft, methods=["GET", "PUT"]),
        Route("/api/studies/{uid}/sign", sign, methods=["POST"]),
        Route("/api/studies/{uid}/amend", amend, methods=["POST"]),
        Route("/api/studies/{uid}/protocol", protocol),
        Route("/api/viewer/open", open_in_viewer, methods=["POST"]),
        Route("/api/series/{uid}/info", series_info),
        Route("/api/series/{uid}/slices/{index}", series_slice),
        Route("/api/series/{uid}/thumbnail", thumbnail),
        Route("/api/series/{uid}/curve", series_curve),
        Route("/api/series/{uid}/aif", series_aif),
        Route("/api/mesh", mesh),
        Route("/api/dead/list", dead_letters, methods=["POST"]),
        Route("/api/dead/{action}", dead_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    # outermost first: headers on every answer, the body's size, then the session, then the login check before any
    # route (the cookie holds the session id; the session itself is web.sessions, ended at logout)
    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit),
                  Middleware(SessionMiddleware, secret_key=config.secret_key or secrets.token_urlsafe(32),
                             session_cookie="meshdcm_session", same_site="strict", https_only=config.https,
                             max_age=int(web.sessions.max_age)), Middleware(auth.RequireLogin)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.web = web
    app.state.sessions = web.sessions
    return app

