"""What every handler of the REST API (rest.py) shares: the `Backend` it
serves (the service shell, service.AppsService) and the `BACKEND` key that
holds it; `Reply`, to answer at once with a status and a JSON body; the
helpers that read a request (query flags, a JSON body, an id from the path)
and answer in Marathon's shapes (deploymentResult, an unknown group's 404,
an app with its ?embed=s). The underscored helpers are for the rest_*
modules only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiohttp import web

from juggler.apps.definition import AppDefinition, InvalidDefinition, normalize_id
from juggler.apps.instances import Instance
from juggler.apps.plan import Deployment
from juggler.apps.state import App, AppsState
from juggler.apps.views import app_json
from juggler.store.interface import NotRecorded

DEPLOYMENT_HEADER = "Marathon-Deployment-Id"


class Backend(Protocol):
    """What the REST layer needs of the service shell (service.AppsService).

    `state` is read for every GET and must not be mutated by the caller; the
    coroutines below change it, each under the shell's lock, and raise the
    core's AppsError (status + Marathon body) or InvalidDefinition (422)
    when a request is refused, having changed nothing."""

    state: AppsState
    leading: bool          # this instance leads: it acts and answers requests
    url: str               # this instance's base URL, "http://host:port"
    framework_id: str

    def leader_url(self) -> str | None:
        """The leader's base URL ("http://host:port"; `url` when leading),
        None when no instance leads."""
        ...

    def info(self) -> dict[str, Any]:
        """Facts for /v2/info. Read: "name", "version", "master" (the master's
        address), "store" ("etcd" | "embedded"), "frameworkName", "role",
        "failoverTimeout" (seconds); other keys are ignored."""
        ...

    async def deploy(self, targets: dict[str, AppDefinition | None], force: bool = False,
                     restart: Iterable[str] = ()) -> Deployment:
        """Take each app of `targets` to its definition (None: remove it);
        `restart`: apps to restart although unchanged. AppsError 404 (removing
        an unknown app), 409 (locked by a deployment, not `force`);
        InvalidDefinition (dependencies)."""
        ...

    async def cancel(self, deployment_id: str, force: bool) -> Deployment | None:
        """Cancel a running deployment; without `force` the rollback
        deployment started (None when there was nothing to roll back).
        AppsError 404 for an unknown or finished deployment."""
        ...

    async def kill_instances(self, ids: list[str], scale: bool,
                             wipe: bool) -> tuple[list[Instance], Deployment | None]:
        """Kill these instances (unknown ids skipped): the killed ones, and
        with `scale` the deployment that lowers their apps' counts."""
        ...

    async def reset_delay(self, app_id: str) -> None:
        """End the app's launch backoff. AppsError 404 for an unknown app."""
        ...

    async def get_version(self, app_id: str, version: str) -> dict[str, Any] | None:
        """A stored version of an app as Marathon's JSON (render_app), None
        when there is no such version."""
        ...

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        """A queue of every event from now on: dicts with "eventType",
        "timestamp" and the event's fields. An item whose eventType is
        events.DROPPED_TYPE ends the subscription (the subscriber fell too far
        behind)."""
        ...

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        ...

    def emit(self, event_type: str, body: dict[str, Any]) -> None:
        """Publish an event to every subscriber (timestamp added): the REST
        layer's own events, `api_post_event`."""
        ...

    def metrics(self) -> bytes:
        """Prometheus' text exposition format."""
        ...


BACKEND = web.AppKey("backend", Backend)


class Reply(Exception):
    """Answer at once with this status and JSON body (404 for a task,
    400 for a bad query, …)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = headers or {}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# -- helpers ------------------------------------------------------------------------------


def store_failed(error: Exception) -> str:
    """What a request is told (HTTP 503) when the apps service's store failed
    it: a decision not recorded for certain (NotRecorded: the service stops
    acting and starts over from the store), or a read that failed."""
    if isinstance(error, NotRecorded):
        return (f"the apps service could not record this in its store for certain ({error}); "
                "it starts over from what the store holds: check, then try again in a moment")
    return f"the apps service cannot read its store now ({error}); try again in a moment"


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


# Set on a request by apps/rest_access.py when rules are on: called with the
# definitions a deployment would launch; raises Reply 403 when the caller may
# not launch them (apps/launch_access.py).
_GUARD_KEY: Any = getattr(web, "RequestKey", None)
LAUNCH_GUARD: Any = (_GUARD_KEY("juggler_launch_guard", object) if _GUARD_KEY
                     else "juggler.launch_guard")


async def _deploy(request: web.Request, targets: dict[str, AppDefinition | None], *,
                  force: bool, restart: Iterable[str] = ()) -> Deployment:
    """Backend.deploy, after the caller's launch checks (LAUNCH_GUARD) of
    every definition in `targets`: a refusal applies nothing. Raises what
    Backend.deploy raises, and Reply 403."""
    guard = request.get(LAUNCH_GUARD)
    if guard is not None:
        guard([t for t in targets.values() if t is not None])
    return await _backend(request).deploy(targets, force=force, restart=restart)


def _state(request: web.Request) -> AppsState:
    return request.app[BACKEND].state


def _flag(request: web.Request, name: str, default: bool = False) -> bool:
    """A boolean query parameter as Marathon (Java's Boolean.valueOf) reads it."""
    value = request.query.get(name)
    return default if value is None else value.strip().lower() == "true"


async def _json_body(request: web.Request) -> Any:
    """The request's JSON. Reply 400 {"message": "Invalid JSON", "details"}."""
    raw = await request.read()
    if not raw.strip():
        raise Reply(400, {"message": "Invalid JSON", "details": "the request has no body"})
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise Reply(400, {"message": "Invalid JSON", "details": str(e)}) from None


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidDefinition([{"path": "/", "errors": [f"must be a JSON object ({what})"]}])
    return body


def _path_id(raw: str) -> str:
    """An id from a URL as an absolute id; an id that is not valid stays as
    given (it names nothing, so the lookup answers 404)."""
    try:
        return normalize_id("/" + raw.strip("/"))
    except InvalidDefinition:
        return "/" + raw.strip("/")


def _under(app_id: str, group_id: str) -> bool:
    return group_id == "/" or app_id.startswith(group_id.rstrip("/") + "/")


def _deployment_result(d: Deployment, status: int = 200,
                       headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"deploymentId": d.id, "version": d.version}, status=status,
                             headers={DEPLOYMENT_HEADER: d.id, **(headers or {})})


def _no_group(group_id: str) -> Reply:
    return Reply(404, {"message": f"Group '{group_id}' does not exist"})


# -- embeds (api/v2/InfoEmbedResolver.scala) --------------------------------------------------

_EMBED_PREFIXES = ("group.apps.", "apps.", "app.")


def _app_embeds(values: Iterable[str]) -> tuple[bool, bool]:
    """(embed tasks, embed lastTaskFailure) from ?embed= values, with or
    without their "apps." / "app." / "group.apps." prefix. Counts and
    deployments are always embedded (Marathon's deprecated defaults);
    readiness and taskStats have nothing to show."""
    tasks = failures = False
    for v in values:
        name = next((v[len(p):] for p in _EMBED_PREFIXES if v.startswith(p)), v)
        tasks |= name in ("tasks", "failures")
        failures |= name in ("lastTaskFailure", "failures")
    return tasks, failures


# -- apps, for /v2/apps and /v2/groups -------------------------------------------------------


def _app_info(state: AppsState, a: App, tasks: bool, failures: bool) -> dict[str, Any]:
    return app_json(state, a, embed_tasks=tasks, embed_failures=failures)


def _group_apps(state: AppsState, group_id: str) -> list[App]:
    return sorted((a for a in state.apps.values() if _under(a.id, group_id)),
                  key=lambda a: a.id)
