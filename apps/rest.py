"""The apps service's REST API: Marathon's v2 API (aiohttp) over the service
shell (service.py), so that Marathon's clients — its web of scripts, the
`marathon` Python client, marathon-lb — work unchanged.

Reads (GET) render the core's state (`backend.state`, never mutated here)
with views.py; changes go through the backend's coroutines, which run the
core and carry its commands out. Refusals are the core's `AppsError` (404,
409 with the locking deployments) and `InvalidDefinition` (422), answered in
Marathon's shapes; a body that is not JSON is 400 {"message": "Invalid
JSON", "details"}; an unknown route 404 {"message": "URI not found"}; a wrong
method 405 {"message"}.

Routes (Marathon's; `{id}` is an app or group id with its slashes,
/v2/apps/prod/web is the app "/prod/web"):

    GET    /v2/apps                ?id= ?cmd= ?label= ?embed=apps.tasks|…  {"apps": [...]}
    POST   /v2/apps                ?force                 201 the app + "deployments"
    PUT    /v2/apps                ?force ?partialUpdate  bulk: [AppUpdate, ...]
    PATCH  /v2/apps                ?force                 bulk, existing apps only
    GET    /v2/apps/{id}           {"app": {...}}; /v2/apps/{group}/* → {"*": [...]}
    PUT    /v2/apps/{id}           ?force ?partialUpdate  200 (201 created) deploymentResult
    PATCH  /v2/apps/{id}           ?force                 existing apps only
    DELETE /v2/apps/{id}           ?force (default true, as Marathon)
    POST   /v2/apps/{id}/restart   ?force
    GET    /v2/apps/{id}/tasks     {"tasks": [...]}  ({group}/*/tasks: every app under it)
    DELETE /v2/apps/{id}/tasks     ?host ?scale ?wipe   {"tasks": [killed]} | deploymentResult
    DELETE /v2/apps/{id}/tasks/{task}  ?scale ?wipe     {"task": {...}} | deploymentResult
    GET    /v2/apps/{id}/versions  {"versions": [newest first]};  …/versions/{v}: the app
    GET    /v2/deployments         [deployment, ...]
    GET    /v2/deployments/{id}    juggler's: the deployment, running or lately ended, + "state"
    DELETE /v2/deployments/{id}    200 deploymentResult of the rollback; ?force: 202
    GET    /v2/groups[/{id}]       ?embed=group.apps|group.groups|group.apps.tasks …
    POST   /v2/groups[/{id}]       201 deploymentResult; 409 when it exists
    PUT    /v2/groups[/{id}]       ?force; {"scaleBy": f} scales every app under it
    DELETE /v2/groups[/{id}]       ?force
    GET    /v2/tasks               ?status=running|staging   {"tasks": [...]}
                                   (Accept: text/plain: Marathon's load-balancer lines,
                                    also on /v2/apps/{id}/tasks)
    POST   /v2/tasks/delete        {"ids": [...]} ?scale ?wipe
    GET    /v2/queue               ?embed=lastUnusedOffers   {"queue": [...]}
    DELETE /v2/queue/{id}/delay    204
    GET    /v2/info  /v2/leader  /ping  /metrics  /v2/events (server-sent events)

"deploymentResult" is {"deploymentId", "version"} with the header
Marathon-Deployment-Id. Booleans in the query are Marathon's: "true" in any
case is true, anything else false.

The handlers live by what they serve; this module routes to them, answers
refusals and failures in Marathon's shapes (middleware) and serves the API:

    rest_backend.py      the Backend the API serves, Reply, the helpers every handler uses
    rest_apps.py         /v2/apps and /v2/tasks
    rest_groups.py       /v2/groups
    rest_deployments.py  /v2/deployments and /v2/queue
    rest_instance.py     /v2/info, /v2/leader, /ping, /metrics: about this instance
    rest_events.py       /v2/events (server-sent events)
    rest_proxy.py        standbys: every other request proxied to the leader
    rest_access.py       principals and access rules (--acls, --tokens), before all else
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from juggler.apps.commands import AppsError
from juggler.apps.definition import InvalidDefinition
from juggler.apps.rest_access import ACCESS, HttpAccess, access_middleware
from juggler.apps.rest_apps import (
    app_routes,
    create_app,
    delete_tasks,
    label_selector,
    list_apps,
    list_tasks,
    update_apps,
)
from juggler.apps.rest_backend import BACKEND, Backend, Handler, Reply, store_failed
from juggler.apps.rest_deployments import (
    cancel_deployment,
    get_deployment,
    get_queue,
    list_deployments,
    reset_delay,
)
from juggler.apps.rest_events import HEARTBEAT, STREAMS, _end_streams, event_stream
from juggler.apps.rest_groups import create_group, delete_group, get_group, update_group
from juggler.apps.rest_instance import get_info, get_leader, get_metrics, ping
from juggler.apps.rest_proxy import (
    HOLD,
    LEADER_HOLD,
    _leader_only,
    _mark_leader,
    _proxy_session,
)
from juggler.common import logs, tls
from juggler.store.interface import StoreError

# What the service and the tests use from here.
__all__ = ["HEARTBEAT_SECONDS", "Backend", "label_selector", "make_app", "serve"]

log = logs.get("apps.rest")

HEARTBEAT_SECONDS = 15.0


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refusals and failures as Marathon's JSON bodies."""
    try:
        return await handler(request)
    except Reply as r:
        return web.json_response(r.body, status=r.status, headers=r.headers)
    except AppsError as e:
        return web.json_response(e.body(), status=e.status)
    except InvalidDefinition as e:
        return web.json_response(e.body(), status=422)
    except StoreError as e:
        return web.json_response({"message": store_failed(e)}, status=503)
    except web.HTTPException as e:
        if e.status == 404:
            return web.json_response({"message": "URI not found"}, status=404)
        if e.status == 405:
            allow = e.headers.get("Allow", "")
            return web.json_response(
                {"message": f"HTTP method {request.method} is not supported by this URL"},
                status=405, headers={"Allow": allow} if allow else None)
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception as e:
        log.exception("request failed", method=request.method, path=request.path)
        return web.json_response({"message": f"{type(e).__name__}: {e}"}, status=500)


def make_app(backend: Backend, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
             client_max_size: int = 16 * 1024 * 1024, docker: bool = False,
             access: HttpAccess | None = None,
             leader_hold: float = LEADER_HOLD) -> web.Application:
    """The REST API as an aiohttp application over `backend`; with `docker`,
    the Docker Engine API too (the backend is then an AppsService); with
    `access`, principals and access rules on both (apps/rest_access.py).
    `leader_hold`: seconds a request waits for a leader while none is known
    (rest_proxy.py)."""
    app = web.Application(middlewares=[access_middleware, _errors, _leader_only],
                          client_max_size=client_max_size)
    app[BACKEND] = backend
    if access is not None:
        app[ACCESS] = access
    app[STREAMS] = set()
    app[HEARTBEAT] = float(heartbeat_seconds)
    app[HOLD] = float(leader_hold)
    r = app.router
    r.add_get("/ping", ping)
    r.add_get("/metrics", get_metrics)
    r.add_get("/v2/info", get_info)
    r.add_get("/v2/leader", get_leader)
    r.add_get("/v2/events", event_stream)
    r.add_get("/v2/apps", list_apps)
    r.add_post("/v2/apps", create_app)
    r.add_put("/v2/apps", update_apps)
    r.add_patch("/v2/apps", update_apps)
    r.add_route("*", "/v2/apps/{tail:.+}", app_routes)
    r.add_get("/v2/deployments", list_deployments)
    r.add_get("/v2/deployments/{id}", get_deployment)
    r.add_delete("/v2/deployments/{id}", cancel_deployment)
    for path in ("/v2/groups", "/v2/groups/{id:.+}"):
        r.add_get(path, get_group)
        r.add_post(path, create_group)
        r.add_put(path, update_group)
        r.add_delete(path, delete_group)
    r.add_get("/v2/tasks", list_tasks)
    r.add_post("/v2/tasks/delete", delete_tasks)
    r.add_get("/v2/queue", get_queue)
    r.add_delete("/v2/queue/{id:.+}/delay", reset_delay)
    app.on_response_prepare.append(_mark_leader)
    app.on_shutdown.append(_end_streams)
    app.cleanup_ctx.append(_proxy_session)
    if docker:
        # Docker's Engine API beside Marathon's: its paths (/_ping, /containers/…,
        # /v1.47/…) do not meet Marathon's /v2/…
        from juggler.apps.docker_api import add_docker_routes

        add_docker_routes(app, backend)  # type: ignore[arg-type]
    return app


async def serve(backend: Backend, host: str, port: int, *,
                heartbeat_seconds: float = HEARTBEAT_SECONDS,
                docker: bool = False,
                access: HttpAccess | None = None,
                leader_hold: float = LEADER_HOLD) -> tuple[web.AppRunner, int]:
    """Serve the API on host:port (0: any free port). Returns the runner (stop
    it with `await runner.cleanup()`) and the port bound. Raises OSError when
    the port is taken."""
    runner = web.AppRunner(make_app(backend, heartbeat_seconds=heartbeat_seconds,
                                    docker=docker, access=access, leader_hold=leader_hold),
                           access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    # HTTPS when the service has TLS (client certificates verified when
    # presented, else a bearer token: common/principals.py).
    cfg = tls.current()
    site = web.TCPSite(runner, host, port,
                       ssl_context=tls.server_ssl_context(cfg) if cfg else None)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
            break
    log.info("REST API listening", host=host, port=bound)
    return runner, bound
