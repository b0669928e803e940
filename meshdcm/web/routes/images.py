"""A series for the image viewer: its pixel description, one slice's raw values, a thumbnail, the signal-time curve
of a voxel and the arterial input function of its perfusion maps."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..common import _uid, _web, _with_errors
from ..report import ReportError


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


def _int_param(request: Request, name: str) -> int:
    try:
        return int(request.query_params[name])
    except (KeyError, ValueError):
        raise ReportError(f"give {name} as a whole number (?slice=&row=&col=)") from None


@_with_errors
async def series_curve(request: Request):
    """The values of one voxel in every phase: the signal-time curve of a DSC series under the cursor."""
    images, uid = _web(request).images, _uid(request)
    where = [_int_param(request, k) for k in ("slice", "row", "col")]
    return JSONResponse(await asyncio.to_thread(images.curve, uid, *where))


@_with_errors
async def series_aif(request: Request):
    """The arterial input function the perfusion node used for this series' maps: its curve and voxels as the node
    published them, where the voxels lie in this series and their mean signal; ``{"aif": null}`` when no node
    published one."""
    web, uid = _web(request), _uid(request)
    aif = web.view.aif(uid)
    if aif is None:
        return JSONResponse({"aif": None})
    here = await asyncio.to_thread(web.images.aif_signal, uid, aif)
    return JSONResponse({"aif": {**aif, "here": here}})
