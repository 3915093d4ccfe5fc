"""The REST API on standbys: proxy to the leader (a middleware, installed
by rest.py), and the leader's mark on its answers.

Standbys (`backend.leading` False) answer /ping, /v2/leader, /v2/info and
/metrics themselves and proxy every other request to the leader (same
method, path, query and body; the leader's status, body and Location /
Marathon-Deployment-Id headers back; /v2/events streamed through), as
Marathon's standbys do. A request that already went through a proxy
(X-Marathon-Via) is not proxied again. The leader marks its answers with
X-Marathon-Leader.

While no instance leads (an election under way, a leader still taking over,
a leader that lost its lease and answered a proxied request unmarked), a
request is held for up to `LEADER_HOLD` seconds, re-checking, and then
answered 503 {"message": "no leader"}: an election of a second or two is a
pause, not a failure, to clients that do not retry (the docker SDK,
Marathon's clients), as Nomad and Consul hold RPCs while they elect
(`rpc_hold_timeout`, 5 s in Nomad and 7 s in Consul). Only what no leader
can have acted on is sent again: a request whose connection was never made,
or refused by an instance that does not lead (503 with X-Juggler-Not-Led).
A held request goes to the leader through its front door even when this
instance is the one elected meanwhile: the access rules a standby leaves to
the leader are applied there.

Under access rules (apps/rest_access.py), a standby with TLS presents its
own `apps` certificate and names the caller it has authenticated in
X-Juggler-Principal (a caller's own such header is never passed on); a list
the rules filter (GET /containers/json, /v2/apps, …) is read whole, so that
the standby filters it too, while Docker's other calls and /v2/events stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from juggler.apps.docker_api import is_docker_path
from juggler.apps.rest_access import PRINCIPAL, PRINCIPAL_HEADER, VIA_HEADER, WHOLE
from juggler.apps.rest_backend import BACKEND, DEPLOYMENT_HEADER, Handler, Reply, _backend
from juggler.common import tls

LEADER_HEADER = "X-Marathon-Leader"
# On a 503 of an instance that refused a proxied request because it does not
# lead: it did nothing with it, so the sender may send it on to another.
NOT_LED_HEADER = "X-Juggler-Not-Led"
# Paths a standby answers itself.
LOCAL_PATHS = frozenset({"/ping", "/v2/leader", "/v2/info", "/metrics"})
PROXY_TIMEOUT = 60.0     # a proxied request (not /v2/events) waits this long for the leader
LEADER_HOLD = 5.0        # seconds a request waits for a leader (Nomad's rpc_hold_timeout)
HOLD_POLL = (0.02, 0.25)  # first and longest pause between looks for a leader (seconds)
# Headers of a proxied answer that are passed back.
PASSED_BACK = ("Content-Type", "Location", DEPLOYMENT_HEADER, LEADER_HEADER, "Cache-Control",
               "WWW-Authenticate")
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
    "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Upgrade"))
SESSION = web.AppKey("proxy_session", aiohttp.ClientSession)
HOLD = web.AppKey("leader_hold", float)


class _NotLed(Exception):
    """The request reached no leader and was not acted on: send it again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


async def _proxy(request: web.Request, leader: str) -> web.StreamResponse:
    """The request, sent to the leader; its answer, sent back (streamed for
    /v2/events). Raises _NotLed when the leader cannot have acted on it (no
    connection made; a 503 from an instance not leading), Reply 503 when the
    leader was reached and then failed to answer."""
    backend = _backend(request)
    session = request.app[SESSION]
    whole = bool(request.get(WHOLE))
    dropped = HOP_BY_HOP | {PRINCIPAL_HEADER.lower(),
                            *(["accept-encoding"] if whole else [])}
    headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
    headers[VIA_HEADER] = backend.url or "standby"
    principal = request.get(PRINCIPAL)
    if principal is not None and tls.current() is not None:
        # The leader takes it from this service's certificate only (rest_access.caller).
        headers[PRINCIPAL_HEADER] = urllib.parse.quote(principal, safe="")
    url = leader.rstrip("/") + request.raw_path
    # Streams go through as they come: the event stream, and Docker's calls (wait,
    # logs -f and stats answer their headers long before their body ends); not a
    # list the rules filter, which is read whole.
    streaming = (request.path == "/v2/events" or is_docker_path(request.path)) and not whole
    timeout = aiohttp.ClientTimeout(total=None if streaming else PROXY_TIMEOUT, sock_connect=10)
    body = await request.read()
    try:
        async with session.request(request.method, url, headers=headers, data=body or None,
                                   timeout=timeout, allow_redirects=False) as up:
            if up.status == 503 and up.headers.get(NOT_LED_HEADER):
                raise _NotLed(f"the instance at {leader} does not lead now")
            back = {k: up.headers[k] for k in PASSED_BACK if k in up.headers}
            if up.headers.get("Content-Encoding"):
                back["Content-Encoding"] = up.headers["Content-Encoding"]
            if not streaming:
                return web.Response(status=up.status, body=await up.read(), headers=back)
            resp = web.StreamResponse(status=up.status, headers=back)
            await resp.prepare(request)
            with contextlib.suppress(ConnectionError):
                async for chunk in up.content.iter_any():
                    await resp.write(chunk)
            return resp
    except aiohttp.ClientConnectorError as e:   # never sent
        raise _NotLed(f"the leader at {leader} cannot be reached "
                      f"({type(e).__name__}: {e})") from None
    except (aiohttp.ClientError, TimeoutError) as e:
        raise Reply(503, {"message": f"no leader: the leader at {leader} cannot be reached "
                          f"({type(e).__name__}: {e})"}) from None


@web.middleware
async def _leader_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    backend = _backend(request)
    if backend.leading or request.path in LOCAL_PATHS:
        return await handler(request)
    if VIA_HEADER in request.headers:   # its sender holds it and looks again
        raise Reply(503, {"message": "no leader"}, headers={NOT_LED_HEADER: "1"})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + request.app.get(HOLD, LEADER_HOLD)
    pause, reason = HOLD_POLL[0], ""
    while True:
        # Never handled here, even once this instance leads: the access rules
        # left to the leader (rest_access.py) were not applied on the way in.
        # A leader it became meanwhile gets it as any leader does, through
        # its own front door; an instance never proxies to itself otherwise.
        leader = backend.leader_url()
        if leader and (backend.leading or
                       leader.rstrip("/") != (backend.url or "").rstrip("/")):
            try:
                return await _proxy(request, leader)
            except _NotLed as e:
                reason = e.reason
        if loop.time() + pause > deadline:
            body = {"message": "no leader"}
            if reason:
                body["message"] = f"no leader: {reason}"
            raise Reply(503, body)
        await asyncio.sleep(pause)
        pause = min(pause * 2, HOLD_POLL[1])


async def _mark_leader(request: web.Request, response: web.StreamResponse) -> None:
    backend = request.app[BACKEND]
    if backend.leading and backend.url and LEADER_HEADER not in response.headers:
        response.headers[LEADER_HEADER] = backend.url


async def _proxy_session(app: web.Application) -> AsyncIterator[None]:
    """The client session standbys proxy with, for the app's lifetime."""
    app[SESSION] = aiohttp.ClientSession(
        auto_decompress=False, connector=aiohttp.TCPConnector(ssl=tls.client_ssl()))
    yield
    await app[SESSION].close()
