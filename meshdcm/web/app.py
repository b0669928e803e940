"""The Starlette application: pages, the JSON API, the event stream and the login.

Every route but the login page and the static assets needs a logged-in session (``auth.RequireLogin``, a middleware:
denied by default); every state-changing request
(POST/PUT/DELETE) needs the session's CSRF token in the ``X-CSRF-Token`` header (the login form carries it as a
field). Blocking work (pixels, files, SR) runs in Starlette's thread pool (plain ``def`` endpoints).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydicom.dataset import Dataset
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from meshdcm import Node
from meshdcm.retention import FolderRetention
from meshdcm.transfer import TransferError

from . import auth
from .images import ImageError, SeriesImages
from .report import SECTIONS, UID_RE, Drafts, ReportError, build_sr, protocol_text, sections_from
from .view import SERIES_KEYS, MeshView, iso
from ..atomic import replacing

log = logging.getLogger("meshdcm.web")
STATIC = resources.files("meshdcm.web") / "static"
ANSWER_WAIT = 5.0  # seconds a route waits for a node's answer (dead letters)
CACHE_MAX_BYTES = 20 * 2**30  # [nodes.web] cache_max_gb
CACHE_MAX_AGE = 7 * 86400.0  # [nodes.web] cache_max_days


@dataclass
class WebConfig:
    data: Path
    token: str = ""
    users_file: Path | None = None
    secret_key: str = ""
    https: bool = False
    cache_max_bytes: int | None = CACHE_MAX_BYTES  # series fetched from other machines, least recently used go first
    cache_max_age: float | None = CACHE_MAX_AGE


class Web:
    """The parts the routes share: the node, its view of the mesh, the images, drafts and reports."""

    def __init__(self, node: Node, config: WebConfig):
        from .hub import Hub

        self.node = node
        self.config = config
        self.login = auth.Login(config.token, config.users_file)
        self.hub = Hub()
        self.cache = FolderRetention(config.data / "cache", max_bytes=config.cache_max_bytes,
                                     max_age=config.cache_max_age)
        self.images = SeriesImages(self._locate, used=self.cache.used)
        self.view = MeshView(node, self.hub, on_series=lambda uid, uris, unit: self.images.prefetch(uid))
        self.drafts = Drafts(config.data / "drafts")
        self.reports_dir = config.data / "reports"
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        node.serve("reports", self.reports_dir)

        @node.task
        def close_at_stop(stopping) -> None:
            stopping.wait()
            self.images.close()

        self._last_fetched = ""  # kept until a page reads it (then it is in memory)
        node.task(self.cache.sweeper(keep=lambda: self.images.in_memory() | {self._last_fetched},
                                     removed=self._forget))

    def _locate(self, uid: str) -> tuple[Path, str | None]:
        found = self.view.series_uris.get(uid)
        if found is None:
            raise ImageError(f"series {uid} has not been announced to this node (open its study first)")
        uris, unit = found
        try:
            folder = self.node.fetch_folder(uris, self.cache.root / uid)
        except TransferError as exc:
            raise ImageError(f"series {uid} could not be fetched: {exc}") from exc
        if folder == self.cache.root / uid:  # fetched here, not a folder of this machine used in place
            self.cache.used(uid)
            self._last_fetched = uid
            self.cache.nudge()  # the sweeper keeps the cache within its size, off this request's path
        return folder, unit

    def _forget(self, uids: list[str]) -> None:
        for uid in uids:
            self.images.forget(uid)


# --- helpers ----------------------------------------------------------------------------------------------

def _web(request: Request) -> Web:
    return request.app.state.web


def _page(name: str, request: Request) -> HTMLResponse:
    html = (STATIC / name).read_text(encoding="utf-8").replace("{{csrf}}", auth.csrf_token(request))
    return HTMLResponse(html, headers={"Cache-Control": "no-store"})


def _uid(request: Request, key: str = "uid") -> str:
    uid = request.path_params[key]
    if not UID_RE.match(uid) or len(uid) > 64:
        raise ReportError(f"{uid[:80]!r} is not a DICOM UID")
    return uid


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _with_errors(func):
    """Known errors become JSON answers that say what to do; the page shows them in place. Sync or async."""
    if asyncio.iscoroutinefunction(func):
        async def run(request: Request):
            try:
                return await func(request)
            except (ReportError, ImageError) as exc:
                return _known_error(exc)
    else:
        def run(request: Request):
            try:
                return func(request)
            except (ReportError, ImageError) as exc:
                return _known_error(exc)
    run.__name__ = func.__name__
    return run


def _known_error(exc: ReportError | ImageError) -> JSONResponse:
    return _bad(str(exc), 404 if isinstance(exc, ImageError) else 400)


async def _json(request: Request) -> dict:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ReportError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ReportError("the request body must be a JSON object")
    return data


# --- login ----------------------------------------------------------------------------------------------------

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


# --- search and studies ------------------------------------------------------------------------------------

@_with_errors
async def search(request: Request):
    data = await _json(request)
    ds = Dataset()
    for key in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
                "AccessionNumber", "ModalitiesInStudy", "PatientBirthDate", "PatientSex",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
        setattr(ds, key, "")
    name = str(data.get("patient", "")).strip()
    if name:
        ds.PatientName = name if any(c in name for c in "*?") else name + "*"
    ds.PatientID = str(data.get("patient_id", "")).strip()
    ds.AccessionNumber = str(data.get("accession", "")).strip()
    ds.ModalitiesInStudy = str(data.get("modality", "")).strip().upper()
    start, end = (str(data.get(k, "")).replace("-", "").strip() for k in ("date_from", "date_to"))
    for value in (start, end):
        if value and not (len(value) == 8 and value.isdigit()):
            raise ReportError("dates are YYYY-MM-DD")
    if start or end:
        ds.StudyDate = f"{start}-{end}" if start != end else start
    request_id = _web(request).view.start_search(ds)
    return JSONResponse({"id": request_id})


@_with_errors
def search_state(request: Request):
    state = _web(request).view.search_state(request.path_params["id"])
    return JSONResponse(state) if state else _bad("no such search (searches are kept in memory)", 404)


@_with_errors
def open_study(request: Request):
    uid = _uid(request)
    web = _web(request)
    view = web.view
    again = request.query_params.get("again") == "1"
    study = view.study(uid)
    with view.lock:
        fetch = again or study.state in ("idle", "incomplete")
        if fetch:
            study.state = "fetching"
            study.done = study.total = 0
    if fetch:
        query = Dataset()
        query.StudyInstanceUID = uid
        for key in SERIES_KEYS:
            setattr(query, key, "")
        view.publish("find.series", query, what="series", key=uid)
        get = Dataset()
        get.StudyInstanceUID = uid
        view.publish("get.study", get, what="get", key=uid)
    ask = Dataset()
    ask.StudyInstanceUID = uid
    view.publish("get.timeline", ask, what="timeline", key=uid)
    if study.info.get("PatientID") or study.info.get("PatientName"):
        prior = Dataset()
        prior.PatientID = study.info.get("PatientID", "")
        prior.PatientName = study.info.get("PatientName", "")
        prior.StudyInstanceUID = uid
        with view.lock:
            if study.priors_state == "none":
                study.priors_state = "asked"
        view.publish("get.reports", prior, what="priors", key=uid)
    with view.lock:
        return JSONResponse(study.summary())


@_with_errors
def study_state(request: Request):
    view = _web(request).view
    with view.lock:
        return JSONResponse(view.study(_uid(request)).summary())


@_with_errors
def study_timeline(request: Request):
    return JSONResponse({"events": _web(request).view.timeline(_uid(request))})


@_with_errors
def measurements(request: Request):
    return JSONResponse({"measurements": _web(request).view.measurements(_uid(request))})


@_with_errors
async def draft(request: Request):
    web = _web(request)
    uid = _uid(request)
    user = auth.current_user(request)
    if request.method == "PUT":
        record = web.drafts.save(user, uid, sections_from(await _json(request)))
        return JSONResponse(record)
    record = web.drafts.load(user, uid)
    if record is None:
        view = web.view
        with view.lock:
            series = view.study(uid).summary()["series"]
        record = {"sections": {k: "" for k, _, _ in SECTIONS}, "saved": None, "signed": None}
        record["sections"]["protocol"] = protocol_text(series)
    return JSONResponse(record)


@_with_errors
def protocol(request: Request):
    view = _web(request).view
    with view.lock:
        series = view.study(_uid(request)).summary()["series"]
    return JSONResponse({"text": protocol_text(series)})


@_with_errors
async def sign(request: Request):
    web = _web(request)
    uid = _uid(request)
    user = auth.current_user(request)
    sections = sections_from(await _json(request))
    view = web.view
    with view.lock:
        evidence = view.study(uid).evidence
    if evidence is None:
        raise ReportError("no image of this study has arrived yet; open the study and wait for its series "
                          "before signing")
    try:
        sr = await asyncio.to_thread(build_sr, evidence, sections, user)
        folder = web.reports_dir / uid / str(sr.SeriesInstanceUID)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{sr.SOPInstanceUID}.dcm"
        await asyncio.to_thread(_save_whole, sr, path)
    except ReportError:
        raise
    except (ValueError, TypeError, AttributeError, OSError) as exc:  # highdicom refused, or the disk did
        reason = f"the report could not be made: {type(exc).__name__}: {exc}"
        view.report_error(uid, reason, "the draft is kept; fix the cause (disk space, the study's headers) and "
                                       "sign again")
        raise ReportError(reason + "; the draft is kept") from exc
    # the body is the whole SR (metadata only, a few KB): the index keeps its text for later prior-report lookups
    with view.lock:  # the report is listed before the pacs node's answer (uploaded or error) can be handled
        msg = view.publish("store.series", sr, what="report", key=uid,
                           uris=[web.node.uri_for(folder), folder.resolve().as_uri()])
        rep = {"request": msg.id, "sop": str(sr.SOPInstanceUID), "series": str(sr.SeriesInstanceUID),
               "state": "sent", "detail": "sent to the pacs node", "signed_by": user, "time": iso(), "updated": iso()}
        view.study(uid).reports.append(rep)
        rep = dict(rep)  # the answer says what this request did; later states come from the study
    web.drafts.save(user, uid, sections, signed=rep["time"])
    view.hub.emit("study", uid)
    log.info("report %s for study %s signed by %s and sent for upload", sr.SOPInstanceUID, uid, user)
    return JSONResponse(rep)


@_with_errors
async def open_in_viewer(request: Request):
    data = await _json(request)
    uid = str(data.get("study", ""))
    if not UID_RE.match(uid):
        raise ReportError("name the study to open")
    body = Dataset()
    body.StudyInstanceUID = uid
    meta = {"viewer": str(data["viewer"])} if data.get("viewer") else None
    msg = _web(request).view.publish("open.study", body, meta=meta)
    return JSONResponse({"request": msg.id})


# --- images ----------------------------------------------------------------------------------------------------

@_with_errors
async def series_info(request: Request):
    images, uid = _web(request).images, _uid(request)
    pixels = images.known(uid) or await asyncio.to_thread(images.info, uid)
    return JSONResponse(pixels.describe())


@_with_errors
async def series_slice(request: Request):
    """A slice from memory is answered on the event loop (scrolling is a stream of these); else a thread reads it."""
    images, uid = _web(request).images, _uid(request)
    try:
        index = int(request.path_params["index"])
    except ValueError:
        raise ReportError("the slice index is a number") from None
    data = images.cached(uid, index) or await asyncio.to_thread(images.slice_bytes, uid, index)
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": "private, max-age=3600"})


@_with_errors
def thumbnail(request: Request):
    return Response(_web(request).images.thumbnail(_uid(request)), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=60"})


# --- mesh monitor and dead letters ---------------------------------------------------------------------------

@_with_errors
def mesh(request: Request):
    web = _web(request)
    nodes = []
    for p in sorted(web.node.peers, key=lambda p: (p["kind"], p["name"])):
        if p["role"] == "tool":
            continue
        nodes.append({"name": p["name"], "kind": p["kind"], "host": p["host"], "group": p["group"],
                      "state": p["state"], "lag": p["silent"], "age": p["age"],
                      "topics": [{"topic": h["topic"] or "*", "where": h["where"], "shared": h["shared"]}
                                 for h in p["handlers"]]})
    with web.view.lock:
        errors = list(web.view.errors)[-50:]
    return JSONResponse({"self": web.node.name, "nodes": nodes, "rates": web.view.rates_summary(),
                         "errors": errors[::-1]})


def _wait(data: dict, default: float) -> float:
    """How long the page wants to wait for nodes' answers (``wait`` in the request, 0.1 to 30 s)."""
    try:
        return min(30.0, max(0.1, float(data.get("wait", default))))
    except (TypeError, ValueError):
        raise ReportError("wait is a number of seconds") from None


async def _ask_dead(web: Web, topic: str, meta: dict, done: tuple[str, ...], wait: float) -> list:
    msg = web.view.publish(topic, Dataset(), meta=meta, what="dead", key=topic)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        answers = web.view.take_answers(msg.id)
        if any(a.topic in done for a in answers) and topic != "dead.list":
            break
        await asyncio.sleep(0.05)
    return web.view.take_answers(msg.id)


@_with_errors
async def dead_letters(request: Request):
    web = _web(request)
    data = await _json(request)
    meta = {"node": str(data["node"])} if data.get("node") else {}
    answers = await _ask_dead(web, "dead.list", meta, ("dead.end",), _wait(data, 1.5))
    letters, ends = [], []
    for a in answers:
        if a.topic == "dead.letter":
            letters.append({**{k: a.meta.get(k) for k in ("node", "id", "topic", "handler", "error", "attempts",
                                                         "first_failed", "last_failed")}, **a.uids})
        elif a.topic == "dead.end":
            ends.append(dict(a.meta))
    return JSONResponse({"letters": letters, "ends": ends})


@_with_errors
async def dead_action(request: Request):
    web = _web(request)
    data = await _json(request)
    action = request.path_params["action"]
    if action not in ("retry", "drop") or not data.get("node") or not data.get("id"):
        raise ReportError("say which node and which dead letter (node, id) to retry or drop")
    answer = "dead.retried" if action == "retry" else "dead.dropped"
    wait = _wait(data, ANSWER_WAIT)
    answers = await _ask_dead(web, f"dead.{action}", {"node": str(data["node"]), "id": str(data["id"])},
                              (answer, "dead.end"), wait)
    for a in answers:
        if a.topic == answer:
            return JSONResponse({"ok": True, "node": a.meta.get("node"), "id": a.meta.get("id")})
        if a.topic == "dead.end" and a.meta.get("error"):
            return _bad(f"node {data['node']}: {a.meta['error']}", 409)
    return _bad(f"no answer from node {data['node']} within {wait:g} s: is it running, and does it keep "
                f"dead letters? (meshdcm dead {action} {data['node']} {data['id']})", 504)


# --- events ------------------------------------------------------------------------------------------------------

async def events(request: Request):
    hub = _web(request).hub

    async def stream():
        sub = hub.subscribe()
        try:
            yield "retry: 1000\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(sub[1].get(), timeout=15)
                    yield f"data: {json.dumps(event)}\n\n"
                except asyncio.TimeoutError:
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
        finally:
            hub.unsubscribe(sub)
    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


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
        Route("/api/studies/{uid}/protocol", protocol),
        Route("/api/viewer/open", open_in_viewer, methods=["POST"]),
        Route("/api/series/{uid}/info", series_info),
        Route("/api/series/{uid}/slices/{index}", series_slice),
        Route("/api/series/{uid}/thumbnail", thumbnail),
        Route("/api/mesh", mesh),
        Route("/api/dead/list", dead_letters, methods=["POST"]),
        Route("/api/dead/{action}", dead_action, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    # outermost first: headers on every answer, then the session, then the login check before any route
    middleware = [Middleware(SecurityHeaders), Middleware(SessionMiddleware, secret_key=config.secret_key or secrets.token_urlsafe(32),
                             session_cookie="meshdcm_session", same_site="strict", https_only=config.https,
                             max_age=12 * 3600), Middleware(auth.RequireLogin)]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.web = web
    return app


def _save_whole(ds, path: Path) -> None:
    """A signed report written under a temporary name and renamed: the pacs node never uploads half of one."""
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)

