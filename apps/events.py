"""The apps service's event bus: what GET /v2/events streams (Marathon's
event stream, docs "Event Bus").

Events are dicts as Marathon's JSON has them: `eventType`, `timestamp` (ISO,
set here from the injected clock) and the fields of the core's `Emit`.
`publish` never blocks and never fails: every subscriber owns a bounded
queue, and a subscriber whose queue is full (a client that stopped reading)
is dropped, not waited for — its queue is emptied and left holding only
`DROPPED`, so that its reader learns it is gone (Marathon closes the
connection of a slow consumer the same way, HttpEventStreamHandleActor).

    publish ─▶ queue per subscriber (≤ maxsize) ─▶ /v2/events handler ─▶ client
                      │ full
                      └─▶ emptied, DROPPED put, subscriber forgotten

`frame()` is the server-sent-events framing of one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

# The marker a dropped subscriber finds on its queue (also what the shell
# put there before this module existed; readers stop at it).
DROPPED_TYPE = "subscriber_dropped"
DROPPED: dict[str, Any] = {"eventType": DROPPED_TYPE}
# Events a subscriber may fall behind by before it is dropped.
QUEUE_SIZE = 10_000


def frame(event: dict[str, Any]) -> bytes:
    """One event as server-sent events: `event: <eventType>` then `data:
    <the whole event as JSON, on one line>` and a blank line (Marathon's
    framing; its clients read the `data:` lines only)."""
    data = json.dumps(event, separators=(",", ":"))
    return f"event: {event.get('eventType', 'message')}\ndata: {data}\n\n".encode()


class EventBus:
    """Subscribers' queues and the fan-out to them. Use from one asyncio loop.

    `now_iso()` gives the timestamp Marathon puts on every event
    ("2026-11-30T15:20:01.123Z")."""

    def __init__(self, now_iso: Callable[[], str], maxsize: int = QUEUE_SIZE) -> None:
        self.now_iso = now_iso
        self.maxsize = maxsize
        self._queues: list[asyncio.Queue[dict[str, Any]]] = []
        self.dropped = 0      # subscribers dropped for being slow, since start

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A new subscriber's queue: every event published from now on, until
        `unsubscribe` or until it falls `maxsize` events behind (then its
        last item is `DROPPED`)."""
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.maxsize)
        self._queues.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        """Forget a subscriber (idempotent)."""
        with contextlib.suppress(ValueError):
            self._queues.remove(q)

    def publish(self, event_type: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """Give every subscriber the event {"eventType", "timestamp", **body};
        returns it. Never blocks."""
        event = {"eventType": event_type, "timestamp": self.now_iso(), **(body or {})}
        self.put(event)
        return event

    def put(self, event: dict[str, Any]) -> None:
        """Give every subscriber an event that already has its eventType and
        timestamp. Never blocks: a full queue's subscriber is dropped."""
        for q in list(self._queues):
            try:
                q.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(q)

    def _drop(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.unsubscribe(q)
        self.dropped += 1
        # Room for the marker: what it had not read is lost anyway, the
        # connection ends at the marker.
        while not q.empty():
            q.get_nowait()
        q.put_nowait(DROPPED)
