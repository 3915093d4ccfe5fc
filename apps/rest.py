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
    DELETE /v2/deployments/{id}    200 deploymentResult of the rollback; ?force: 202
    GET    /v2/groups[/{id}]       ?embed=group.apps|group.groups|group.apps.tasks …
    POST   /v2/groups[/{id}]       201 deploymentResult; 409 when it exists
    PUT    /v2/groups[/{id}]       ?force; {"scaleBy": f} scales every app under it
    DELETE /v2/groups[/{id}]       ?force
    GET    /v2/tasks               ?status=running|staging   {"tasks": [...]}
    POST   /v2/tasks/delete        {"ids": [...]} ?scale ?wipe
    GET    /v2/queue               ?embed=lastUnusedOffers   {"queue": [...]}
    DELETE /v2/queue/{id}/delay    204
    GET    /v2/info  /v2/leader  /ping  /metrics  /v2/events (server-sent events)

"deploymentResult" is {"deploymentId", "version"} with the header
Marathon-Deployment-Id. Booleans in the query are Marathon's: "true" in any
case is true, anything else false.

App ids and the suffixes: an app's last segment may not be "tasks",
"versions" or "restart" (definition.RESERVED_NAMES, Marathon's rule), so a
path ending in one of them, or with "tasks"/"versions" second to last, is
that sub-resource of the app before it — the same reading Marathon's
routing gives it (JAX-RS prefers the template with more literal text).

Standbys (`backend.leading` False) answer /ping, /v2/leader, /v2/info and
/metrics themselves and proxy every other request to the leader (same
method, path, query and body; the leader's status, body and Location /
Marathon-Deployment-Id headers back; /v2/events streamed through), as
Marathon's standbys do; 503 {"message": "no leader"} when there is none. A
request that already went through a proxy (X-Marathon-Via) is not proxied
again. The leader marks its answers with X-Marathon-Leader.

/v2/events needs `Accept: text/event-stream` (405 otherwise, as Marathon).
The stream starts with `event_stream_attached`, then every event of the
backend's bus (`?event_type=` filters, repeatable), a comment line every
`heartbeat_seconds`; a client that does not read is dropped (the bus drops
its queue, events.py; a write that stalls for WRITE_TIMEOUT ends it).

Requests are not serialised here: a PUT reads the current definition, then
the backend deploys under its lock, so two concurrent PUTs of one app may
each patch the same base; the second is refused with 409 while the first's
deployment runs (unless forced), as in Marathon.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import replace
from importlib import metadata
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from juggler.apps.commands import AppsError
from juggler.apps.definition import (
    RESERVED_NAMES,
    AppDefinition,
    GroupDefinition,
    InvalidDefinition,
    normalize_id,
    parse_app,
    parse_group,
    patch_app,
    render_app,
)
from juggler.apps.events import DROPPED_TYPE, frame
from juggler.apps.instances import Instance
from juggler.apps.plan import D, Deployment
from juggler.apps.state import REFUSE_IDLE, App, AppsState, iso
from juggler.apps.views import app_json, deployment_json, queue_json, task_json
from juggler.common import logs
from juggler.v1 import common_pb2

log = logs.get("apps.rest")

DEPLOYMENT_HEADER = "Marathon-Deployment-Id"
LEADER_HEADER = "X-Marathon-Leader"
VIA_HEADER = "X-Marathon-Via"
# Paths a standby answers itself.
LOCAL_PATHS = frozenset({"/ping", "/v2/leader", "/v2/info", "/metrics"})
HEARTBEAT_SECONDS = 15.0
WRITE_TIMEOUT = 30.0     # an event stream write stalled this long drops the client
PROXY_TIMEOUT = 60.0     # a proxied request (not /v2/events) waits this long for the leader
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
# Headers of a proxied answer that are passed back.
PASSED_BACK = ("Content-Type", "Location", DEPLOYMENT_HEADER, LEADER_HEADER, "Cache-Control")
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive",
    "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer", "Upgrade"))


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
SESSION = web.AppKey("proxy_session", aiohttp.ClientSession)
STREAMS = web.AppKey("event_streams", set)
HEARTBEAT = web.AppKey("heartbeat_seconds", float)


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


def _backend(request: web.Request) -> Backend:
    return request.app[BACKEND]


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


def _parent(path_id: str) -> str:
    return path_id.rsplit("/", 1)[0] or "/"


def _deployment_result(d: Deployment, status: int = 200,
                       headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"deploymentId": d.id, "version": d.version}, status=status,
                             headers={DEPLOYMENT_HEADER: d.id, **(headers or {})})


def _no_app(app_id: str, version: str | None = None) -> Reply:
    return Reply(404, {"message": f"App '{app_id}' does not exist"
                       + (f" in version {version}" if version else "")})


def _no_group(group_id: str) -> Reply:
    return Reply(404, {"message": f"Group '{group_id}' does not exist"})


def _emit_api_post(request: web.Request, app: AppDefinition) -> None:
    """Marathon's api_post_event: who changed which app through which URI.
    (Skipped for a backend without `emit`: the change is made, only the
    event is missing.)"""
    emit = getattr(_backend(request), "emit", None)
    if emit is not None:
        emit("api_post_event", {"clientIp": request.remote or "", "uri": request.path,
                                "appDefinition": render_app(app)})


def _host_port(url: str | None) -> str | None:
    """"http://host:port" → "host:port" (Marathon's leader form)."""
    if not url:
        return None
    parts = urlsplit(url if "//" in url else "//" + url)
    return parts.netloc or None


def _tasks(instances: Iterable[Instance], state: AppsState) -> list[dict[str, Any]]:
    out = []
    for inst in sorted(instances, key=lambda i: (i.app_id, i.staged_at, i.id)):
        a = state.apps.get(inst.app_id)
        out.append(task_json(inst, a.has_checks if a is not None else False))
    return out


# -- label selectors (Marathon's ?label=, api/v2/LabelSelector.scala) -------------------------

_TERM = r"(?:\\.|[-A-Za-z0-9_.])+"
_SELECTOR = re.compile(
    rf"\s*(?P<key>{_TERM})\s*(?:(?P<set_op>notin|in)\s*\((?P<set>[^)]*)\)"
    rf"|(?P<eq_op>==|!=)\s*(?P<value>{_TERM}))?\s*(?:,|$)")


def _unescape(term: str) -> str:
    return re.sub(r"\\(.)", r"\1", term.strip())


def label_selector(query: str) -> Callable[[dict[str, str]], bool]:
    """Marathon's label selector: comma-separated `key`, `key==v`, `key!=v`,
    `key in (a, b)`, `key notin (a, b)`, every one to hold (characters other
    than letters, digits, '-', '_', '.' escaped with a backslash). Any
    selector needs the label to exist. Raises AppsError 422 when it does not
    parse, as Marathon."""
    selectors: list[Callable[[dict[str, str]], bool]] = []
    pos = 0
    while pos < len(query):
        m = _SELECTOR.match(query, pos)
        if m is None or m.end() == pos:
            raise AppsError(422, f"Can not parse label selector {query}. Reason: unexpected "
                            f"text at {pos}: {query[pos:]!r}")
        key = _unescape(m["key"])
        if m["set_op"]:
            values = {_unescape(v) for v in re.split(r"(?<!\\),", m["set"]) if v.strip()}
            inside = m["set_op"] == "in"
            selectors.append(lambda ls, k=key, vs=values, i=inside: k in ls and (ls[k] in vs) == i)
        elif m["eq_op"]:
            value, equal = _unescape(m["value"]), m["eq_op"] == "=="
            selectors.append(lambda ls, k=key, v=value, e=equal: k in ls and (ls[k] == v) == e)
        else:
            selectors.append(lambda ls, k=key: k in ls)
        pos = m.end()
    return lambda labels: all(s(labels) for s in selectors)


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


# -- apps ---------------------------------------------------------------------------------------


def _app_info(state: AppsState, a: App, tasks: bool, failures: bool) -> dict[str, Any]:
    return app_json(state, a, embed_tasks=tasks, embed_failures=failures)


async def list_apps(request: web.Request) -> web.Response:
    """GET /v2/apps: {"apps": [...]} sorted by id. ?id= and ?cmd= keep apps
    whose id / cmd contains the text (any case); ?label= is a selector."""
    state = _state(request)
    q = request.query
    id_part, cmd_part = q.get("id", "").lower(), q.get("cmd", "").lower()
    selector = label_selector(q["label"]) if q.get("label") else None
    tasks, failures = _app_embeds(q.getall("embed", []))
    out = []
    for a in sorted(state.apps.values(), key=lambda a: a.id):
        d = a.current.app
        if id_part and id_part not in a.id.lower():
            continue
        if cmd_part and cmd_part not in (d.cmd or "").lower():
            continue
        if selector is not None and not selector(dict(d.labels)):
            continue
        out.append(_app_info(state, a, tasks, failures))
    return web.json_response({"apps": out})


async def create_app(request: web.Request) -> web.Response:
    """POST /v2/apps: 201, Location, the app with "deployments": [{"id"}].
    409 {"message": "An app with id [/x] already exists."}; 422 for a bad
    definition."""
    backend, state = _backend(request), _state(request)
    body = _object(await _json_body(request), "an app definition")
    app = parse_app(body)
    if state.known(app.id):
        raise Reply(409, {"message": f"An app with id [{app.id}] already exists."})
    d = await backend.deploy({app.id: app}, force=_flag(request, "force"))
    _emit_api_post(request, app)
    a = state.apps.get(app.id)
    out = _app_info(state, a, False, False) if a is not None else render_app(app)
    out["deployments"] = [{"id": d.id}]
    return web.json_response(out, status=201, headers={
        "Location": f"{request.url.origin()}/v2/apps{app.id}", DEPLOYMENT_HEADER: d.id})


async def _updated(request: web.Request, app_id: str, body: Any, *, partial: bool,
                   allow_create: bool) -> AppDefinition:
    """The definition an AppUpdate `body` gives the app (Marathon's
    AppHelpers.updateOrCreate): {"version": v} of an existing app is a
    rollback to that stored version; otherwise the body's fields replace the
    current ones (`partial`) or the body is the whole new definition. The
    id is the URL's. Reply 404 for an unknown app (not `allow_create`) or
    version."""
    backend, state = _backend(request), _state(request)
    body = dict(_object(body, "an app update"))
    a = state.apps.get(app_id)
    if a is None and not allow_create:
        raise _no_app(app_id)
    version = body.pop("version", None)
    if a is not None and version is not None:
        stored = await backend.get_version(app_id, str(version))
        if stored is None:
            raise _no_app(app_id, str(version))
        return parse_app({**stored, "id": app_id})
    if a is not None and partial:
        body = patch_app(render_app(a.current.app), body)
    body["id"] = app_id
    return parse_app(body)


async def update_app(request: web.Request, app_id: str) -> web.Response:
    """PUT /v2/apps/{id} (?partialUpdate, default true) and PATCH (partial,
    existing apps only): 200 deploymentResult, 201 with Location when PUT
    created the app."""
    backend, state = _backend(request), _state(request)
    is_patch = request.method == "PATCH"
    existed = state.known(app_id)
    target = await _updated(request, app_id, await _json_body(request),
                            partial=is_patch or _flag(request, "partialUpdate", True),
                            allow_create=not is_patch)
    d = await backend.deploy({app_id: target}, force=_flag(request, "force"))
    _emit_api_post(request, target)
    if existed:
        return _deployment_result(d)
    return _deployment_result(d, 201, {"Location": f"{request.url.origin()}/v2/apps{app_id}"})


async def update_apps(request: web.Request) -> web.Response:
    """PUT /v2/apps (a list of AppUpdates, each with its id; created when
    new) and PATCH /v2/apps (existing apps only): one deployment of them
    all. 422 for an update without an id."""
    backend = _backend(request)
    body = await _json_body(request)
    if not isinstance(body, list):
        raise InvalidDefinition([{"path": "/", "errors": ["must be a JSON array of apps"]}])
    is_patch = request.method == "PATCH"
    partial = is_patch or _flag(request, "partialUpdate", True)
    targets: dict[str, AppDefinition | None] = {}
    for i, item in enumerate(body):
        if not isinstance(item, dict) or not item.get("id"):
            raise InvalidDefinition([{"path": f"/({i})/id",
                                      "errors": ["App Update must have app id set"]}])
        app_id = normalize_id(str(item["id"]))
        targets[app_id] = await _updated(request, app_id, item, partial=partial,
                                         allow_create=not is_patch)
    d = await backend.deploy(targets, force=_flag(request, "force"))
    for t in targets.values():
        if t is not None:
            _emit_api_post(request, t)
    return _deployment_result(d)


async def delete_app(request: web.Request, app_id: str) -> web.Response:
    """DELETE /v2/apps/{id}: deploymentResult. ?force defaults to true, as in
    Marathon (a running deployment of the app is cancelled)."""
    d = await _backend(request).deploy({app_id: None}, force=_flag(request, "force", True))
    _emit_api_post(request, AppDefinition(id=app_id))
    return _deployment_result(d)


async def restart_app(request: web.Request, app_id: str) -> web.Response:
    """POST /v2/apps/{id}/restart: a rolling restart to the same definition."""
    a = _state(request).app(app_id)
    d = await _backend(request).deploy({app_id: a.current.app}, force=_flag(request, "force"),
                                       restart=[app_id])
    return _deployment_result(d)


def _group_apps(state: AppsState, group_id: str) -> list[App]:
    return sorted((a for a in state.apps.values() if _under(a.id, group_id)),
                  key=lambda a: a.id)


async def get_app(request: web.Request, app_id: str) -> web.Response:
    """GET /v2/apps/{id}: {"app": {...}} with its tasks and last failure
    (Marathon always embeds them here). /v2/apps/{group}/*: {"*": [...]},
    every app under the group."""
    state = _state(request)
    if app_id == "/*" or app_id.endswith("/*"):
        return web.json_response({"*": [_app_info(state, a, True, True)
                                        for a in _apps_named(state, app_id)]})
    return web.json_response({"app": _app_info(state, state.app(app_id), True, True)})


def _apps_named(state: AppsState, app_id: str) -> list[App]:
    """The app `app_id`, or every app under the group of "/group/*".
    Raises AppsError 404 for an unknown app, and for an unknown group."""
    if not (app_id == "/*" or app_id.endswith("/*")):
        return [state.app(app_id)]
    group_id = app_id[:-2] or "/"
    apps = _group_apps(state, group_id)
    if not apps and group_id != "/":
        raise _no_group(group_id)
    return apps


async def app_tasks(request: web.Request, app_id: str) -> web.Response:
    """GET /v2/apps/{id}/tasks: {"tasks": [...]}; {group}/*/tasks: the tasks of
    every app under the group."""
    state = _state(request)
    apps = _apps_named(state, app_id)
    return web.json_response(
        {"tasks": _tasks((i for a in apps for i in a.instances.values()), state)})


def _scale_and_wipe(request: web.Request) -> tuple[bool, bool]:
    scale, wipe = _flag(request, "scale"), _flag(request, "wipe")
    if scale and wipe:
        raise Reply(400, {"message": "You cannot use scale and wipe at the same time."})
    return scale, wipe


async def kill_app_tasks(request: web.Request, app_id: str,
                         task_id: str | None) -> web.Response:
    """DELETE /v2/apps/{id}/tasks (?host: on that host only, "*" any) and
    …/tasks/{task}: without ?scale {"tasks": [killed]} / {"task": {...}}
    (404 "Task 'x' does not exist"); with ?scale the deploymentResult of the
    scale-down."""
    backend, state = _backend(request), _state(request)
    scale, wipe = _scale_and_wipe(request)
    a = state.app(app_id)
    if task_id is not None:
        chosen = [i for i in a.instances.values() if i.id == task_id]
        if not chosen:
            raise Reply(404, {"message": f"Task '{task_id}' does not exist"})
    else:
        host = request.query.get("host")
        chosen = [i for i in a.instances.values()
                  if host is None or host in ("*", i.hostname)]
    killed, d = await backend.kill_instances([i.id for i in chosen], scale=scale, wipe=wipe)
    if d is not None:
        return _deployment_result(d)
    if task_id is not None:
        return web.json_response({"task": task_json(killed[0], a.has_checks) if killed
                                  else task_json(chosen[0], a.has_checks)})
    return web.json_response({"tasks": _tasks(killed, state)})


async def app_versions(request: web.Request, app_id: str, version: str | None) -> web.Response:
    """GET /v2/apps/{id}/versions: {"versions": [...]} newest first;
    …/versions/{v}: that version's definition (404 "App '/x' does not exist
    in version v")."""
    a = _state(request).app(app_id)
    if version is None:
        return web.json_response({"versions": sorted(set(a.versions), reverse=True)})
    stored = await _backend(request).get_version(app_id, version)
    if stored is None:
        raise _no_app(app_id, version)
    return web.json_response(stored)


def _split_app_path(tail: str) -> tuple[str, str, str | None]:
    """"prod/web/tasks/t1" → ("/prod/web", "tasks", "t1"): the app id, the
    sub-resource ("" for the app itself) and its item (module docstring)."""
    segments = [s for s in tail.split("/") if s]
    if len(segments) >= 2 and segments[-1] in RESERVED_NAMES:
        return _path_id("/".join(segments[:-1])), segments[-1], None
    if len(segments) >= 3 and segments[-2] in ("tasks", "versions"):
        return _path_id("/".join(segments[:-2])), segments[-2], segments[-1]
    return _path_id("/".join(segments)) if segments else "/", "", None


def _wrong_method(request: web.Request, allowed: Iterable[str]) -> Reply:
    allowed = sorted(allowed)
    return Reply(405, {"message": f"HTTP method {request.method} is not supported by this "
                       f"URL ({', '.join(allowed)} are)"}, {"Allow": ", ".join(allowed)})


async def app_routes(request: web.Request) -> web.Response:
    """Every /v2/apps/{id}… route: the path is told apart here (ids contain
    slashes), then the method."""
    raw = request.match_info["tail"]
    if "*" in raw and (raw == "*" or raw.endswith("/*") or raw.endswith("/*/tasks")):
        group_tail = raw.removesuffix("/tasks")
        app_id = "/*" if group_tail == "*" else _path_id(group_tail[:-2]).rstrip("/") + "/*"
        kind, item = ("tasks" if raw.endswith("/tasks") else ""), None
    else:
        app_id, kind, item = _split_app_path(raw)
    m = request.method
    if kind == "":
        if m in ("GET", "HEAD"):
            return await get_app(request, app_id)
        if m in ("PUT", "PATCH"):
            return await update_app(request, app_id)
        if m == "DELETE":
            return await delete_app(request, app_id)
        raise _wrong_method(request, ("GET", "PUT", "PATCH", "DELETE"))
    if kind == "tasks":
        if m in ("GET", "HEAD") and item is None:
            return await app_tasks(request, app_id)
        if m == "DELETE":
            return await kill_app_tasks(request, app_id, item)
        raise _wrong_method(request, ("DELETE",) if item else ("GET", "DELETE"))
    if kind == "versions":
        if m in ("GET", "HEAD"):
            return await app_versions(request, app_id, item)
        raise _wrong_method(request, ("GET",))
    if m == "POST":       # restart
        return await restart_app(request, app_id)
    if m == "DELETE":     # Marathon: DELETE …/restart deletes an app named so (none can be)
        return await delete_app(request, _path_id(raw))
    raise _wrong_method(request, ("POST",))


# -- deployments --------------------------------------------------------------------------------


async def list_deployments(request: web.Request) -> web.Response:
    """GET /v2/deployments: the running deployments, oldest first."""
    running = [d for d in _state(request).deployments.values() if d.state == D.IN_PROGRESS]
    return web.json_response(
        [deployment_json(d) for d in sorted(running, key=lambda d: (d.started_at, d.id))])


async def cancel_deployment(request: web.Request) -> web.Response:
    """DELETE /v2/deployments/{id}: cancel and roll back (200, the rollback's
    deploymentResult; 202 without a body when there was nothing to roll
    back); ?force=true: stop it where it is (202). 404 "DeploymentPlan x does
    not exist"."""
    force = _flag(request, "force")
    rollback = await _backend(request).cancel(request.match_info["id"], force)
    if force or rollback is None:
        return web.Response(status=202)
    return _deployment_result(rollback)


# -- groups -------------------------------------------------------------------------------------


def _child_groups(state: AppsState, group_id: str) -> list[str]:
    """The ids of the groups directly under `group_id` that hold apps."""
    prefix = group_id.rstrip("/") + "/"
    out = set()
    for a in state.apps.values():
        if a.id.startswith(prefix):
            rest = a.id[len(prefix):]
            if "/" in rest:
                out.add(prefix + rest.split("/", 1)[0])
    return sorted(out)


def _group_json(state: AppsState, group_id: str, embeds: set[str]) -> dict[str, Any] | None:
    """A group as Marathon's GroupInfo, built from the app ids under it
    (groups exist while they hold apps); None when it holds none (the root
    always exists)."""
    apps = _group_apps(state, group_id)
    if not apps and group_id != "/":
        return None
    out: dict[str, Any] = {"id": group_id}
    if "group.apps" in embeds:
        tasks, failures = _app_embeds(e for e in embeds if e.startswith("group.apps."))
        out["apps"] = [_app_info(state, a, tasks, failures) for a in apps
                       if _parent(a.id) == group_id]
    if "group.groups" in embeds:
        out["groups"] = [g for g in (_group_json(state, c, embeds)
                                     for c in _child_groups(state, group_id)) if g is not None]
    if "group.pods" in embeds:
        out["pods"] = []
    out["dependencies"] = []
    versions = [a.current.version for a in apps]
    if versions:
        out["version"] = max(versions)
    return out


async def get_group(request: web.Request) -> web.Response:
    """GET /v2/groups[/{id}]: the group with its apps and subgroups (?embed=
    group.apps, group.groups, group.pods, group.apps.tasks, …; all three
    first ones when none is given). 404 "Group '/x' does not exist"."""
    group_id = _path_id(request.match_info.get("id", ""))
    embeds = set(request.query.getall("embed", [])) or {"group.apps", "group.groups",
                                                       "group.pods"}
    out = _group_json(_state(request), group_id, embeds)
    if out is None:
        raise _no_group(group_id)
    return web.json_response(out)


def _group_changes(state: AppsState, raw: dict[str, Any], group: GroupDefinition,
                   targets: dict[str, AppDefinition | None]) -> None:
    """What a GroupUpdate does to the apps (Marathon's
    UpdateGroupStructureOp): with "apps", the group's own apps become those
    (the others are removed); with "groups", its subgroups become those
    (the apps of the others are removed) and each is updated the same way;
    a key left out leaves that part as it is."""
    if "apps" in raw:
        given = {a.id for a in group.apps}
        for a in state.apps.values():
            if _parent(a.id) == group.id and a.id not in given:
                targets[a.id] = None
        for app in group.apps:
            targets[app.id] = app
    if "groups" in raw:
        given = {g.id for g in group.groups}
        for child in _child_groups(state, group.id):
            if child not in given:
                for a in _group_apps(state, child):
                    targets[a.id] = None
        for raw_sub, sub in zip(raw.get("groups") or [], group.groups, strict=False):
            _group_changes(state, raw_sub, sub, targets)


async def create_group(request: web.Request) -> web.Response:
    """POST /v2/groups[/{id}]: create the group (its id from the body, taken
    under the URL's) and deploy its apps: 201, Location, deploymentResult.
    409 when the group or an app with its id exists."""
    backend, state = _backend(request), _state(request)
    base = _path_id(request.match_info.get("id", ""))
    raw = _object(await _json_body(request), "a group")
    group = parse_group(raw, base=base)
    if group.id == "/" or _group_apps(state, group.id):
        raise Reply(409, {"message": f"Group {group.id} is already created. Use PUT to "
                          "change this group."})
    if state.known(group.id):
        raise Reply(409, {"message": f"An app with the path {group.id} already exists."})
    targets: dict[str, AppDefinition | None] = {a.id: a for a in group.all_apps()}
    d = await backend.deploy(targets, force=_flag(request, "force"))
    return _deployment_result(d, 201,
                              {"Location": f"{request.url.origin()}/v2/groups{group.id}"})


async def update_group(request: web.Request) -> web.Response:
    """PUT /v2/groups[/{id}]: {"scaleBy": f} multiplies the instances of every
    app under the group (rounded up); {"version": v} is refused (group
    versions are not kept); otherwise the structural update of
    `_group_changes`. The group is created when it does not exist. 200
    deploymentResult."""
    backend, state = _backend(request), _state(request)
    base = _path_id(request.match_info.get("id", ""))
    raw = _object(await _json_body(request), "a group update")
    group_id = normalize_id(str(raw["id"]), base) if raw.get("id") is not None else base
    targets: dict[str, AppDefinition | None] = {}
    if raw.get("scaleBy") is not None:
        factor = raw["scaleBy"]
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 0:
            raise InvalidDefinition([{"path": "/scaleBy", "errors": ["must be a number ≥ 0"]}])
        for a in _group_apps(state, group_id):
            d = a.current.app
            targets[a.id] = replace(d, instances=math.ceil(d.instances * factor - 1e-9))
    elif raw.get("version") is not None:
        raise AppsError(422, f"Group {group_id} not available in version {raw['version']}: "
                        "juggler keeps versions of apps, not of groups (roll apps back with "
                        "PUT /v2/apps/{id} {\"version\": ...})")
    else:
        _group_changes(state, raw, parse_group(raw, base=base), targets)
    d = await backend.deploy(targets, force=_flag(request, "force"))
    return _deployment_result(d)


async def delete_group(request: web.Request) -> web.Response:
    """DELETE /v2/groups[/{id}]: remove every app under the group
    (deploymentResult). 404 for a group that holds no app (the root always
    exists: deleting it removes every app)."""
    backend, state = _backend(request), _state(request)
    group_id = _path_id(request.match_info.get("id", ""))
    apps = _group_apps(state, group_id)
    if not apps and group_id != "/":
        raise _no_group(group_id)
    d = await backend.deploy({a.id: None for a in apps}, force=_flag(request, "force"))
    return _deployment_result(d)


# -- tasks, queue -------------------------------------------------------------------------------

_STATUS_FILTER = {"running": {common_pb2.TASK_RUNNING},
                  "staging": {common_pb2.TASK_STAGING, common_pb2.TASK_STARTING}}


async def list_tasks(request: web.Request) -> web.Response:
    """GET /v2/tasks: every task of every app; ?status=running|staging (also
    status[]=, repeatable) keeps those states."""
    state = _state(request)
    wanted: set[int] = set()
    for s in (*request.query.getall("status", []), *request.query.getall("status[]", [])):
        wanted |= _STATUS_FILTER.get(s.lower(), set())
    instances = [i for i in state.instances.values() if not wanted or i.state in wanted]
    return web.json_response({"tasks": _tasks(instances, state)})


async def delete_tasks(request: web.Request) -> web.Response:
    """POST /v2/tasks/delete {"ids": [...]}: kill those tasks (unknown ids are
    skipped): {"tasks": [killed]}, or with ?scale the deploymentResult. 400
    for a body without "ids"."""
    backend, state = _backend(request), _state(request)
    scale, wipe = _scale_and_wipe(request)
    body = await _json_body(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise Reply(400, {"message": 'expected {"ids": ["task id", ...]}'})
    killed, d = await backend.kill_instances(ids, scale=scale, wipe=wipe)
    if d is not None:
        return _deployment_result(d)
    return web.json_response({"tasks": _tasks(killed, state)})


async def get_queue(request: web.Request) -> web.Response:
    """GET /v2/queue: apps with instances waiting to launch; the offers each
    could not use with ?embed=lastUnusedOffers."""
    offers = "lastUnusedOffers" in request.query.getall("embed", [])
    return web.json_response(queue_json(_state(request), embed_offers=offers))


async def reset_delay(request: web.Request) -> web.Response:
    """DELETE /v2/queue/{id}/delay: 204; 404 for an unknown app."""
    await _backend(request).reset_delay(_path_id(request.match_info["id"]))
    return web.Response(status=204)


# -- about this instance ------------------------------------------------------------------------


def _juggler_version() -> str:
    try:
        return metadata.version("juggler")
    except metadata.PackageNotFoundError:
        return "unknown"


async def get_info(request: web.Request) -> web.Response:
    """GET /v2/info: Marathon's shape (every key one marathon.models.MarathonInfo
    knows), with juggler's facts in Marathon's fields."""
    backend = _backend(request)
    facts = backend.info()
    url = urlsplit(backend.url or "")
    config: dict[str, Any] = {
        "master": facts.get("master"),
        "framework_name": facts.get("frameworkName"),
        "mesos_role": facts.get("role"),
        "failover_timeout": facts.get("failoverTimeout"),
        "ha": facts.get("store") == "etcd",
        "hostname": url.hostname,
        "webui_url": backend.url or None,
        "checkpoint": True,
        "decline_offer_duration": int(REFUSE_IDLE * 1000),
        "features": [],
    }
    return web.json_response({
        "name": facts.get("name") or "juggler",
        "version": facts.get("version") or _juggler_version(),
        "buildref": None,
        "elected": bool(backend.leading),
        "leader": _host_port(backend.leader_url()),
        "frameworkId": backend.framework_id or None,
        "marathon_config": config,
        "zookeeper_config": {},
        "http_config": {"http_port": url.port, "https_port": None},
        "event_subscriber": None,
    })


async def get_leader(request: web.Request) -> web.Response:
    """GET /v2/leader: {"leader": "host:port"}; 404 {"message": "There is no
    leader"}."""
    leader = _host_port(_backend(request).leader_url())
    if leader is None:
        raise Reply(404, {"message": "There is no leader"})
    return web.json_response({"leader": leader})


async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong")


async def get_metrics(request: web.Request) -> web.Response:
    return web.Response(body=_backend(request).metrics(),
                        headers={"Content-Type": PROMETHEUS_TEXT})


# -- /v2/events -----------------------------------------------------------------------------------


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


# -- standbys: proxy to the leader ----------------------------------------------------------------


async def _proxy(request: web.Request, leader: str) -> web.StreamResponse:
    """The request, sent to the leader; its answer, sent back (streamed for
    /v2/events)."""
    backend = _backend(request)
    session = request.app[SESSION]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    headers[VIA_HEADER] = backend.url or "standby"
    url = leader.rstrip("/") + request.raw_path
    streaming = request.path == "/v2/events"
    timeout = aiohttp.ClientTimeout(total=None if streaming else PROXY_TIMEOUT, sock_connect=10)
    body = await request.read()
    try:
        async with session.request(request.method, url, headers=headers, data=body or None,
                                   timeout=timeout, allow_redirects=False) as up:
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
    except (aiohttp.ClientError, TimeoutError) as e:
        raise Reply(503, {"message": f"no leader: the leader at {leader} cannot be reached "
                          f"({type(e).__name__}: {e})"}) from None


@web.middleware
async def _leader_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    backend = _backend(request)
    if backend.leading or request.path in LOCAL_PATHS:
        return await handler(request)
    leader = backend.leader_url()
    if not leader or leader.rstrip("/") == (backend.url or "").rstrip("/") or \
            VIA_HEADER in request.headers:
        raise Reply(503, {"message": "no leader"})
    return await _proxy(request, leader)


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


async def _mark_leader(request: web.Request, response: web.StreamResponse) -> None:
    backend = request.app[BACKEND]
    if backend.leading and backend.url and LEADER_HEADER not in response.headers:
        response.headers[LEADER_HEADER] = backend.url


async def _end_streams(app: web.Application) -> None:
    """On shutdown: end the event streams (they would hold the server open)."""
    for task in list(app[STREAMS]):
        task.cancel()


async def _proxy_session(app: web.Application) -> AsyncIterator[None]:
    """The client session standbys proxy with, for the app's lifetime."""
    app[SESSION] = aiohttp.ClientSession(auto_decompress=False)
    yield
    await app[SESSION].close()


def make_app(backend: Backend, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
             client_max_size: int = 16 * 1024 * 1024) -> web.Application:
    """The REST API as an aiohttp application over `backend`."""
    app = web.Application(middlewares=[_errors, _leader_only], client_max_size=client_max_size)
    app[BACKEND] = backend
    app[STREAMS] = set()
    app[HEARTBEAT] = float(heartbeat_seconds)
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
    return app


async def serve(backend: Backend, host: str, port: int, *,
                heartbeat_seconds: float = HEARTBEAT_SECONDS) -> tuple[web.AppRunner, int]:
    """Serve the API on host:port (0: any free port). Returns the runner (stop
    it with `await runner.cleanup()`) and the port bound. Raises OSError when
    the port is taken."""
    runner = web.AppRunner(make_app(backend, heartbeat_seconds=heartbeat_seconds),
                           access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
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
