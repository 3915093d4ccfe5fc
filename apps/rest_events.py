"""The REST API's event stream (route in rest.py), Marathon's server-sent
events.

/v2/events needs `Accept: text/event-stream` (405 otherwise, as Marathon).
The stream starts with `event_stream_attached`, then every event of the
backend's bus (`?event_type=` filters, repeatable), a comment line every
`heartbeat_seconds`; a client that does not read is dropped (the bus drops
its queue, events.py; a write that stalls for WRITE_TIMEOUT ends it).

The streams still open when the server shuts down are ended (`_end_streams`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from juggler.apps.events import DROPPED_TYPE, frame
from juggler.apps.rest_backend import Reply, _backend
from juggler.apps.views import iso
from juggler.common import logs

log = logs.get("apps.rest")

WRITE_TIMEOUT = 30.0     # an event stream write stalled this long drops the client
STREAMS = web.AppKey("event_streams", set)
HEARTBEAT = web.AppKey("heartbeat_seconds", float)


def _accepts_event_stream(request: web.Request) -> bool:
    for value in request.headers.getall("Accept", []):
        for media in value.split(","):
            if media.split(";", 1)[0].strip().lower() == "text/event-stream":
                return True
    return False


async def event_stream(request: web.Request) -> web.StreamResponse:
    """GET /v2/events: server-sent events (module docstring). Ends when the
    client goes, stops reading, or the bus drops it."""
    if not _accepts_event_stream(request):
        raise Reply(405, {"message": "HTTP method GET is not supported by this URL without "
                          "Accept: text/event-stream"})
    backend = _backend(request)
    wanted = set(request.query.getall("event_type", []))
    streams = request.app[STREAMS]
    me = asyncio.current_task()
    q = backend.subscribe()
    if me is not None:
        streams.add(me)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache, no-store, must-revalidate"})
    try:
        await resp.prepare(request)
        attached = {"remoteAddress": request.remote or "", "eventType": "event_stream_attached",
                    "timestamp": iso(backend.state.clock.time())}
        pending: list[dict[str, Any]] = [attached]
        heartbeat = request.app[HEARTBEAT]
        while True:
            for event in pending:
                if not wanted or event.get("eventType") in wanted:
                    await asyncio.wait_for(resp.write(frame(event)), WRITE_TIMEOUT)
            try:
                event = await asyncio.wait_for(q.get(), heartbeat)
            except TimeoutError:
                await asyncio.wait_for(resp.write(b": heartbeat\n\n"), WRITE_TIMEOUT)
                pending = []
                continue
            if event.get("eventType") == DROPPED_TYPE:
                log.warning("event stream dropped: the client is too slow",
                            client=request.remote)
                break
            pending = [event]
    except ConnectionError:
        log.info("event stream ended: the client went", client=request.remote)
    except TimeoutError:
        log.warning("event stream dropped: the client stopped reading", client=request.remote)
        if request.transport is not None:
            request.transport.abort()
    finally:
        backend.unsubscribe(q)
        if me is not None:
            streams.discard(me)
    return resp


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end the event streams (they would hold the server open)."""
    for task in list(app[STREAMS]):
        task.cancel()
