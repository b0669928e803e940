"""A study's report: its draft, the protocol text that pre-fills it, signing it (a DICOM SR sent for upload) and
amending a signed one (``signing``: once signed, only an amendment that names its predecessor)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse

from ...atomic import replacing
from .. import auth
from ..common import _json, _uid, _web, _with_errors
from ..report import SECTIONS, UID_RE, ReportError, build_sr, protocol_text, sections_from
from ..signing import SignatureRefused, public, read_report
from ..view import MeshView, iso

log = logging.getLogger("meshdcm.web")


@_with_errors
async def draft(request: Request):
    """PUT: save the draft (``?amends=SOP``: an amendment of that signed report). GET: the draft, and the study's
    signed report (``report``) with its text when the draft is not an amendment of it in progress."""
    web = _web(request)
    uid = _uid(request)
    user = auth.current_user(request)
    if request.method == "PUT":
        amends = request.query_params.get("amends") or None
        if amends is not None and (not UID_RE.match(amends) or len(amends) > 64):
            raise ReportError("amends names a signed report by its SOP Instance UID")
        data = await _json(request)
        ai_sr = _ai_sr(data)
        record = web.drafts.save(user, uid, sections_from(data), amends=amends, ai_sr=ai_sr)
        return JSONResponse(record)
    chain = await asyncio.to_thread(web.signatures.chain, uid)
    _list_signed(web.view, uid, chain)
    head = chain[-1] if chain else None
    record = web.drafts.load(user, uid)
    if head is not None and (record is None or record.get("amends") != head["sop"]):
        record = {"sections": {k: head["sections"].get(k, "") for k, _, _ in SECTIONS}, "saved": None,
                  "signed": head["time"], "amends": None}  # the report in force, as signed
    elif record is None:
        view = web.view
        with view.lock:
            series = view.study(uid).summary()["series"]
        record = {"sections": {k: "" for k, _, _ in SECTIONS}, "saved": None, "signed": None, "amends": None}
        record["sections"]["protocol"] = protocol_text(series)
    record["report"] = public(head)
    return JSONResponse(record)


@_with_errors
def protocol(request: Request):
    view = _web(request).view
    with view.lock:
        series = view.study(_uid(request)).summary()["series"]
    return JSONResponse({"text": protocol_text(series)})


@_with_errors
async def sign(request: Request):
    """Sign the study's report: refused once it is signed (409, with the signed report)."""
    return await _sign(request, amend=False)


@_with_errors
async def amend(request: Request):
    """Sign an amendment of the study's report in force (``predecessor``: its SOP Instance UID, and the sections)."""
    return await _sign(request, amend=True)


async def _sign(request: Request, amend: bool):
    web = _web(request)
    uid = _uid(request)
    person = auth.current_person(request)
    why_not = auth.why_cannot_sign(person)
    if why_not:
        raise SignatureRefused(f"not signed: {why_not}", status=403)
    data = await _json(request)
    predecessor = None
    if amend:
        predecessor = str(data.pop("predecessor", "") or "")
        if not UID_RE.match(predecessor) or len(predecessor) > 64:
            raise ReportError("say which signed report this amends (predecessor: its SOP Instance UID)")
    ai_uid = _ai_sr(data)
    sections = sections_from(data)
    ai_sr = None
    if ai_uid is not None:
        ai_sr = web.ai.dataset(uid, ai_uid)
        if ai_sr is None:
            raise ReportError(f"the AI result {ai_uid} accepted into this report is not known to this node for this "
                              "study (a restart forgets them until the study is opened again); reopen the study, "
                              "or sign without it")
    view = web.view
    with view.lock:
        evidence = view.study(uid).evidence
    if evidence is None:
        raise ReportError("no image of this study has arrived yet; open the study and wait for its series "
                          "before signing")
    with web.signatures.reserve(uid, predecessor) as amended:
        if amended is not None and all(sections[k].strip() == amended["sections"].get(k, "").strip()
                                       for k, _, _ in SECTIONS):
            raise ReportError("the amendment changes nothing in the signed report; edit it first")
        try:
            previous = await asyncio.to_thread(read_report, amended) if amended is not None else None
            sr = await asyncio.to_thread(build_sr, evidence, sections, person, predecessor=previous, ai_sr=ai_sr)
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
               "state": "sent", "detail": "sent to the pacs node", "user": person.user,
               "signed_by": person.full_name, "organisation": person.organisation, "amends": predecessor,
               "superseded_by": None, "time": iso(), "updated": iso(), "ai_sr": ai_uid}
        reports = view.study(uid).reports
        reports.append(rep)
        for old in reports:
            if predecessor and old["sop"] == predecessor:
                old["superseded_by"] = rep["sop"]
        rep = dict(rep)  # the answer says what this request did; later states come from the study
    web.drafts.save(person.user, uid, sections, signed=rep["time"], ai_sr=ai_uid)
    view.hub.emit("study", uid)
    log.info("report %s for study %s signed by %s%s%s and sent for upload", sr.SOPInstanceUID, uid, person.user,
             f" (amends {predecessor})" if predecessor else "", f" (AI result {ai_uid} accepted)" if ai_uid else "")
    return JSONResponse(rep)


def _list_signed(view: MeshView, uid: str, chain: list[dict]) -> None:
    """The study's signed reports on disk in its report list too (signed before this node's restart), with the
    amendments' links both ways."""
    with view.lock:
        reports = view.study(uid).reports
        known = {r["sop"] for r in reports}
        for signed in chain:
            if signed["sop"] not in known:
                reports.append({"request": None, "sop": signed["sop"], "series": signed["series"], "state": "signed",
                                "detail": "signed before this node restarted (the PACS has its upload state)",
                                "user": None, "signed_by": signed["signed_by"], "organisation": signed["organisation"],
                                "amends": signed["amends"], "superseded_by": None, "time": signed["time"],
                                "updated": signed["time"]})
        by_sop = {r["sop"]: r for r in reports}
        for r in list(reports):
            if r.get("amends") in by_sop:
                by_sop[r["amends"]]["superseded_by"] = r["sop"]


def _ai_sr(data: dict) -> str | None:
    """``ai_sr`` of a request (taken out of it): the SOP Instance UID of the AI result the radiologist accepted."""
    value = data.pop("ai_sr", None)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or not UID_RE.match(value) or len(value) > 64:
        raise ReportError("ai_sr names the accepted AI result by its SOP Instance UID")
    return value


def _save_whole(ds, path: Path) -> None:
    """A signed report written under a temporary name and renamed: the pacs node never uploads half of one."""
    with replacing(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
