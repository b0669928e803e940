"""Finding studies and opening one: the search, a study's state, its timeline and measurements, and opening it in a
viewer."""

from __future__ import annotations

from pydicom.dataset import Dataset
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..common import _bad, _json, _text, _uid, _web, _with_errors
from ..report import UID_RE, ReportError
from ..view import SERIES_KEYS


@_with_errors
async def search(request: Request):
    data = await _json(request)
    ds = Dataset()
    for key in ("PatientName", "PatientID", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyDescription",
                "AccessionNumber", "ModalitiesInStudy", "PatientBirthDate", "PatientSex",
                "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
        setattr(ds, key, "")
    name = _text(data, "patient", 64, "the patient name")
    if name:
        ds.PatientName = name if any(c in name for c in "*?") else name + "*"
    ds.PatientID = _text(data, "patient_id", 64, "the patient ID")
    ds.AccessionNumber = _text(data, "accession", 16, "the accession number")
    ds.ModalitiesInStudy = _text(data, "modality", 16, "the modality").upper()
    start, end = (_text(data, k, 10, "a date").replace("-", "") for k in ("date_from", "date_to"))
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
    """The study as the page shows it, with the AI results proposed for its report (``ai``)."""
    web, uid = _web(request), _uid(request)
    with web.view.lock:
        summary = web.view.study(uid).summary()
    return JSONResponse({**summary, "ai": web.ai.of(uid)})


@_with_errors
def study_timeline(request: Request):
    return JSONResponse({"events": _web(request).view.timeline(_uid(request))})


@_with_errors
def measurements(request: Request):
    return JSONResponse({"measurements": _web(request).view.measurements(_uid(request))})


@_with_errors
async def open_in_viewer(request: Request):
    data = await _json(request)
    uid = _text(data, "study", 64, "the study UID")
    if not UID_RE.match(uid):
        raise ReportError("name the study to open")
    body = Dataset()
    body.StudyInstanceUID = uid
    viewer = _text(data, "viewer", 64, "the viewer's name")
    meta = {"viewer": viewer} if viewer else None
    msg = _web(request).view.publish("open.study", body, meta=meta)
    return JSONResponse({"request": msg.id})

