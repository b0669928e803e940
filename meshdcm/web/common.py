"""What every route shares: the web node's parts (:class:`Web`, made from :class:`WebConfig`) and the helpers that
read a request and answer its errors."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from meshdcm import Node
from meshdcm.retention import FolderRetention
from meshdcm.transfer import TransferError

from . import auth
from .ai import AIResults
from .images import ImageError, SeriesImages
from .report import UID_RE, Drafts, ReportError
from .sessions import LoginThrottle, Sessions
from .signing import Signatures
from .view import MeshView

STATIC = resources.files("meshdcm.web") / "static"
CACHE_MAX_BYTES = 20 * 2**30  # [nodes.web] cache_max_gb
CACHE_MAX_AGE = 7 * 86400.0  # [nodes.web] cache_max_days
MAX_BODY = 2 * 2**20  # bytes of a request body (a report's five sections of 64,000 characters fit)


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
    """The parts the routes share: the node, its view of the mesh, the images, drafts and reports, who is logged
    in and the failed logins."""

    def __init__(self, node: Node, config: WebConfig):
        from .hub import Hub

        self.node = node
        self.config = config
        self.login = auth.Login(config.token, config.users_file)
        self.sessions = Sessions()
        self.throttle = LoginThrottle()
        self.hub = Hub()
        self.cache = FolderRetention(config.data / "cache", max_bytes=config.cache_max_bytes,
                                     max_age=config.cache_max_age)
        self.images = SeriesImages(self._locate, used=self.cache.used)
        self.ai = AIResults(lambda uris, dest: node.fetch_folder(uris, dest), config.data / "ai",
                            changed=lambda study: self.hub.emit("study", study))
        self.view = MeshView(node, self.hub, on_series=lambda uid, uris, unit: self.images.prefetch(uid),
                             on_sr=lambda study, series, uris, sender: self.ai.heard(study, series, uris, sender))
        self.drafts = Drafts(config.data / "drafts")
        self.reports_dir = config.data / "reports"
        self.reports_dir.mkdir(parents=True, exist_ok=True)
        self.signatures = Signatures(self.reports_dir)
        node.serve("reports", self.reports_dir)

        @node.task
        def close_at_stop(stopping) -> None:
            stopping.wait()
            self.images.close()
            self.ai.close()

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
    status = getattr(exc, "status", 404 if isinstance(exc, ImageError) else 400)
    report = getattr(exc, "report", None)
    return JSONResponse({"error": str(exc), **({"report": report} if report else {})}, status_code=status)


def _text(data: dict, key: str, limit: int, what: str) -> str:
    """A text field of a request, at most ``limit`` characters (else a 400 that names the field and its limit)."""
    value = data.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ReportError(f"{what} must be text")
    value = str(value).strip()
    if len(value) > limit:
        raise ReportError(f"{what} is {len(value):,} characters long; at most {limit} are allowed")
    return value


async def _json(request: Request) -> dict:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise ReportError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ReportError("the request body must be a JSON object")
    return data

