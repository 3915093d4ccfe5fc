"""The /v2/apps and /v2/tasks handlers of the REST API (routes in rest.py):
apps listed (with Marathon's ?label= selectors), created, updated (PUT,
PATCH, in bulk), deleted and restarted; their versions and tasks; tasks
killed.

App ids and the suffixes: an app's last segment may not be "tasks",
"versions" or "restart" (definition.RESERVED_NAMES, Marathon's rule), so a
path ending in one of them, or with "tasks"/"versions" second to last, is
that sub-resource of the app before it — the same reading Marathon's
routing gives it (JAX-RS prefers the template with more literal text).

Requests are not serialised here: a PUT reads the current definition, then
the backend deploys under its lock, so two concurrent PUTs of one app may
each patch the same base; the second is refused with 409 while the first's
deployment runs (unless forced), as in Marathon.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from juggler.apps.commands import AppsError
from juggler.apps.definition import (
    RESERVED_NAMES,
    AppDefinition,
    InvalidDefinition,
    normalize_id,
    parse_app,
    patch_app,
    render_app,
)
from juggler.apps.instances import Instance
from juggler.apps.rest_backend import (
    DEPLOYMENT_HEADER,
    Reply,
    _app_embeds,
    _app_info,
    _backend,
    _deploy,
    _deployment_result,
    _flag,
    _group_apps,
    _json_body,
    _no_group,
    _object,
    _path_id,
    _state,
)
from juggler.apps.state import App, AppsState
from juggler.apps.views import endpoints_text, task_json
from juggler.v1 import common_pb2

# -- helpers ------------------------------------------------------------------------------------


def _no_app(app_id: str, version: str | None = None) -> Reply:
    return Reply(404, {"message": f"App '{app_id}' does not exist"
                       + (f" in version {version}" if version else "")})


def _emit_api_post(request: web.Request, app: AppDefinition) -> None:
    """Marathon's api_post_event: who changed which app through which URI.
    (Skipped for a backend without `emit`: the change is made, only the
    event is missing.)"""
    emit = getattr(_backend(request), "emit", None)
    if emit is not None:
        emit("api_post_event", {"clientIp": request.remote or "", "uri": request.path,
                                "appDefinition": render_app(app)})


def _tasks(instances: Iterable[Instance]) -> list[dict[str, Any]]:
    return [task_json(inst)
            for inst in sorted(instances, key=lambda i: (i.app_id, i.staged_at, i.id))]


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


# -- apps ---------------------------------------------------------------------------------------


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
    state = _state(request)
    body = _object(await _json_body(request), "an app definition")
    app = parse_app(body)
    if state.known(app.id):
        raise Reply(409, {"message": f"An app with id [{app.id}] already exists."})
    d = await _deploy(request, {app.id: app}, force=_flag(request, "force"))
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
    state = _state(request)
    is_patch = request.method == "PATCH"
    existed = state.known(app_id)
    target = await _updated(request, app_id, await _json_body(request),
                            partial=is_patch or _flag(request, "partialUpdate", True),
                            allow_create=not is_patch)
    d = await _deploy(request, {app_id: target}, force=_flag(request, "force"))
    _emit_api_post(request, target)
    if existed:
        return _deployment_result(d)
    return _deployment_result(d, 201, {"Location": f"{request.url.origin()}/v2/apps{app_id}"})


async def update_apps(request: web.Request) -> web.Response:
    """PUT /v2/apps (a list of AppUpdates, each with its id; created when
    new) and PATCH /v2/apps (existing apps only): one deployment of them
    all. 422 for an update without an id."""
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
    d = await _deploy(request, targets, force=_flag(request, "force"))
    for t in targets.values():
        if t is not None:
            _emit_api_post(request, t)
    return _deployment_result(d)


async def delete_app(request: web.Request, app_id: str) -> web.Response:
    """DELETE /v2/apps/{id}: deploymentResult. ?force defaults to true, as in
    Marathon (a running deployment of the app is cancelled)."""
    d = await _deploy(request, {app_id: None}, force=_flag(request, "force", True))
    _emit_api_post(request, AppDefinition(id=app_id))
    return _deployment_result(d)


async def restart_app(request: web.Request, app_id: str) -> web.Response:
    """POST /v2/apps/{id}/restart: a rolling restart to the same definition."""
    a = _state(request).app(app_id)
    d = await _deploy(request, {app_id: a.current.app}, force=_flag(request, "force"),
                      restart=[app_id])
    return _deployment_result(d)


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
    if _wants_text(request):
        return web.Response(text=endpoints_text(apps), content_type="text/plain")
    return web.json_response(
        {"tasks": _tasks(i for a in apps for i in a.instances.values())})


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
        return web.json_response({"task": task_json(killed[0] if killed else chosen[0])})
    return web.json_response({"tasks": _tasks(killed)})


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


# -- tasks --------------------------------------------------------------------------------------

_STATUS_FILTER = {"running": {common_pb2.TASK_RUNNING},
                  "staging": {common_pb2.TASK_STAGING, common_pb2.TASK_STARTING}}


def _wants_text(request: web.Request) -> bool:
    """Accept names text/plain and not JSON: Marathon's load-balancer format."""
    accept = request.headers.get("Accept", "")
    return "text/plain" in accept and "json" not in accept


async def list_tasks(request: web.Request) -> web.Response:
    """GET /v2/tasks: every task of every app; ?status=running|staging (also
    status[]=, repeatable) keeps those states. With `Accept: text/plain`:
    every app's service ports and the host:port of its running tasks
    (views.endpoints_text, Marathon's format for load balancers)."""
    state = _state(request)
    if _wants_text(request):
        return web.Response(text=endpoints_text(list(state.apps.values())),
                            content_type="text/plain")
    wanted: set[int] = set()
    for s in (*request.query.getall("status", []), *request.query.getall("status[]", [])):
        wanted |= _STATUS_FILTER.get(s.lower(), set())
    instances = [i for i in state.instances.values() if not wanted or i.state in wanted]
    return web.json_response({"tasks": _tasks(instances)})


async def delete_tasks(request: web.Request) -> web.Response:
    """POST /v2/tasks/delete {"ids": [...]}: kill those tasks (unknown ids are
    skipped): {"tasks": [killed]}, or with ?scale the deploymentResult. 400
    for a body without "ids"."""
    backend = _backend(request)
    scale, wipe = _scale_and_wipe(request)
    body = await _json_body(request)
    ids = body.get("ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise Reply(400, {"message": 'expected {"ids": ["task id", ...]}'})
    killed, d = await backend.kill_instances(ids, scale=scale, wipe=wipe)
    if d is not None:
        return _deployment_result(d)
    return web.json_response({"tasks": _tasks(killed)})
