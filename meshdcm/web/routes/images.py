"""A series for the image viewer: its pixel description, one slice's raw values, a thumbnail."""

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
