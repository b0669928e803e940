"""A study's report: its draft, the protocol text that pre-fills it, and signing it (a DICOM SR sent for upload)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse

from ...atomic import replacing
from .. import auth
from ..common import _json, _uid, _web, _with_errors
from ..report import SECTIONS, ReportError, build_sr, protocol_text, sections_from
from ..view import iso

log = logging.getLogger("meshdcm.web")


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


def _save_whole(ds, path: Path) -> None:
    """A signed report written under a temporary name and renamed: the pacs node never uploads half of one."""
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
