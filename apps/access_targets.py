"""What a request to the apps service's HTTP APIs needs of the access rules
(common/access.py): pure, from the method, the path and the query; the shell
(apps/rest_access.py) resolves what only the state or the body can tell
(an app id in a POSTed definition, a container's name behind its id) and
filters lists.

Objects (the contract of issue 18): `apps_read` (GET, HEAD) / `apps_write`
(every other method) on app ids ("/team-a/web") and group paths; a group
path is written with a trailing "/" ("/team-a/", the root "/"), so that the
rule value "/team-a/*" covers the group /team-a and everything under it, and
"/*" the whole tree. `containers_read` / `containers_write` on container
names without Docker's leading "/" ("team-a-web"); `docker_api` (no object)
on every Docker call first. What a write launches (run_tasks, run_host_*):
apps/launch_access.py.

Marathon's paths:

    /ping  /metrics  /v2/leader        open (health checks, Prometheus, finding the leader)
    /v2/info                            any authenticated principal
    GET  /v2/apps /v2/tasks /v2/deployments /v2/queue
                                        lists, filtered to what the caller may read
    GET  /v2/tasks (text/plain)         apps_read on "/" (the load-balancer lines of every app)
    /v2/events                          apps_read on "/" (the stream carries every app)
    /v2/apps/{id}…                      the app id; {group}/*: the group path
    POST /v2/apps, PUT|PATCH /v2/apps   the ids in the body
    /v2/groups[/{id}]                   the group path (writes: the body's group and its apps)
    POST /v2/tasks/delete               the apps of the task ids
    /v2/deployments/{id}                the deployment's affected apps
    DELETE /v2/queue/{id}/delay         the app id

Docker's paths (after `docker_api`): /containers/{id}/… the container's
name (GET: read, else write; attach is a POST: write); /exec/{id}/… its
container's; create: the ?name= ("" when none: only a rule of any name
allows a nameless create, whose name is generated); rename: the old and new
names; prune: every container's name; GET /containers/json: filtered to
what the caller may read (Docker's authorization plugins can only allow or
refuse a whole request; juggler filters, as Marathon's authorizer filters
/v2/apps). Images, networks, /info, /version, /_ping, /events: docker_api only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from juggler.apps.definition import InvalidDefinition
from juggler.apps.definition_model import normalize_id
from juggler.apps.rest_apps import _split_app_path
from juggler.apps.rest_backend import _path_id

__all__ = ["Check", "Target", "docker_target", "filter_list", "group_object", "rest_target"]

READ_METHODS = frozenset({"GET", "HEAD"})
OPEN_PATHS = frozenset({"/ping", "/metrics", "/v2/leader"})


@dataclass(frozen=True)
class Check:
    action: str
    obj: str | None = None


@dataclass(frozen=True)
class Target:
    """What one request needs.

    checks: required as they stand; resolve: what the shell must still
    find ("app_body", "apps_body", "group_body", "task_ids", "deployment",
    "container", "exec", "prune", "create_body" (what a Docker create
    launches: apps/launch_access.py), or ""), with `ref` (the group base, the
    deployment, container or exec id) and `action` (the action the resolved
    objects are checked for); filter: the list to filter after the handler
    ("apps", "tasks", "deployments", "queue", "containers", or "");
    open: no principal needed at all."""

    checks: tuple[Check, ...] = ()
    resolve: str = ""
    ref: str = ""
    action: str = ""
    filter: str = ""
    open: bool = False


def group_object(group_id: str) -> str:
    """A group path as an object: "/team-a" → "/team-a/"; "/" stays."""
    return group_id.rstrip("/") + "/"


def _apps_action(method: str) -> str:
    return "apps_read" if method.upper() in READ_METHODS else "apps_write"


def rest_target(method: str, path: str, wants_text: bool = False) -> Target:
    """What a Marathon-API request needs (the module's table). An unknown
    path needs a principal only (the handler answers 404)."""
    method = method.upper()
    action = _apps_action(method)
    if path in OPEN_PATHS:
        return Target(open=True)
    if path == "/v2/info":
        return Target()
    if path == "/v2/events":
        return Target((Check("apps_read", "/"),))
    if path == "/v2/apps":
        if method in READ_METHODS:
            return Target(filter="apps")
        kind = "app_body" if method == "POST" else "apps_body"
        return Target(resolve=kind, action=action)
    if path.startswith("/v2/apps/"):
        raw = path[len("/v2/apps/"):]
        if "*" in raw and (raw == "*" or raw.endswith("/*") or raw.endswith("/*/tasks")):
            group_tail = raw.removesuffix("/tasks")
            group = "/" if group_tail == "*" else _path_id(group_tail[:-2])
            return Target((Check(action, group_object(group)),))
        app_id, kind, _ = _split_app_path(raw)
        if kind == "restart" and method == "DELETE":
            app_id = _path_id(raw)
        if app_id.endswith("/*"):     # "*/tasks": every app's tasks, as the handler reads it
            return Target((Check(action, group_object(app_id[:-2] or "/")),))
        return Target((Check(action, app_id),))
    if path == "/v2/groups" or path.startswith("/v2/groups/"):
        base = _path_id(path[len("/v2/groups"):])
        if method in ("POST", "PUT"):
            return Target(resolve="group_body", ref=base, action=action)
        return Target((Check(action, group_object(base)),))
    if path == "/v2/tasks":
        if method in READ_METHODS:
            return Target((Check("apps_read", "/"),)) if wants_text else Target(filter="tasks")
        return Target((Check(action, "/"),))
    if path == "/v2/tasks/delete":
        return Target(resolve="task_ids", action="apps_write")
    if path == "/v2/deployments":
        return Target(filter="deployments")
    if path.startswith("/v2/deployments/"):
        return Target(resolve="deployment", ref=path[len("/v2/deployments/"):], action=action)
    if path == "/v2/queue":
        return Target(filter="queue")
    if path.startswith("/v2/queue/") and path.endswith("/delay"):
        return Target((Check(action, _path_id(path[len("/v2/queue/"):-len("/delay")])),))
    return Target()


def docker_target(method: str, rest: str, query: dict[str, str]) -> Target:
    """What a Docker-API request needs; `rest` is the path without its
    /v1.NN prefix (the module's table)."""
    method = method.upper()
    api = Check("docker_api")
    action = "containers_read" if method in READ_METHODS else "containers_write"
    parts = [p for p in rest.split("/") if p]
    if parts[:1] == ["containers"] and len(parts) >= 2:
        if parts[1] == "json" and len(parts) == 2:
            return Target((api,), filter="containers")
        if parts[1] == "create" and len(parts) == 2:
            return Target((api, Check("containers_write", query.get("name", "").lstrip("/"))),
                          resolve="create_body")
        if parts[1] == "prune" and len(parts) == 2:
            return Target((api,), resolve="prune", action="containers_write")
        checks: tuple[Check, ...] = (api,)
        if len(parts) == 3 and parts[2] == "rename" and query.get("name"):
            checks += (Check("containers_write", query["name"].lstrip("/")),)
        return Target(checks, resolve="container", ref=parts[1], action=action)
    if parts[:1] == ["exec"] and len(parts) >= 2:
        return Target((api,), resolve="exec", ref=parts[1], action=action)
    return Target((api,))


# -- what the body or the state tells --------------------------------------------------------


def body_app_ids(kind: str, body: Any, base: str = "/") -> list[str]:
    """The app ids (and group paths) a write's body names: "app_body" (one
    app), "apps_body" (a list of updates), "group_body" (a group under
    `base`: its path, then its apps). A body that does not parse names what
    can be told (the handler refuses it: 400/422); nothing at all for a
    group body gives the group `base`."""
    out: list[str] = []

    def norm(raw: Any, under: str = "/") -> str | None:
        try:
            return normalize_id(str(raw), under)
        except InvalidDefinition:
            return None

    if kind == "app_body":
        one = norm(body.get("id")) if isinstance(body, dict) and body.get("id") else None
        return [one] if one else []
    if kind == "apps_body":
        for item in body if isinstance(body, list) else []:
            if isinstance(item, dict) and item.get("id"):
                one = norm(item["id"])
                if one:
                    out.append(one)
        return out
    if kind == "group_body":
        from juggler.apps.groups import parse_group

        group_id = base
        if isinstance(body, dict) and body.get("id") is not None:
            group_id = norm(body["id"], base) or base
        out.append(group_object(group_id))
        try:
            group = parse_group(body, base=base)
        except (InvalidDefinition, TypeError, ValueError, AttributeError, KeyError):
            return out
        if group_object(group.id) not in out:
            out.append(group_object(group.id))
        out.extend(a.id for a in group.all_apps())
        return out
    raise ValueError(f"unknown body kind {kind!r}")


def filter_list(kind: str, body: Any, may_read: Any) -> Any:
    """`body` (a list answer's JSON) with only what `may_read(obj) -> bool`
    allows: "apps" {"apps": [{"id"}]}, "tasks" {"tasks": [{"appId"}]},
    "deployments" [{"affectedApps": [...]}] (kept when every affected app
    may be read), "queue" {"queue": [{"app": {"id"}}]}, "containers"
    [{"Names": ["/x"]}]. A body of another shape is returned as it is."""
    if kind == "apps" and isinstance(body, dict) and isinstance(body.get("apps"), list):
        return {**body, "apps": [a for a in body["apps"] if may_read(a.get("id", ""))]}
    if kind == "tasks" and isinstance(body, dict) and isinstance(body.get("tasks"), list):
        return {**body, "tasks": [t for t in body["tasks"] if may_read(t.get("appId", ""))]}
    if kind == "deployments" and isinstance(body, list):
        return [d for d in body
                if all(may_read(a) for a in (d.get("affectedApps") or []))]
    if kind == "queue" and isinstance(body, dict) and isinstance(body.get("queue"), list):
        return {**body, "queue": [q for q in body["queue"]
                                  if may_read((q.get("app") or {}).get("id", ""))]}
    if kind == "containers" and isinstance(body, list):
        return [c for c in body
                if may_read(((c.get("Names") or [""])[0]).lstrip("/"))]
    return body
