"""The browsers' event stream (server-sent events): what changed, from the hub, with a keep-alive."""

from __future__ import annotations

import asyncio
import json

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ..common import _web


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

