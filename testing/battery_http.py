"""The access battery's HTTP requests: for every route of the apps
service's aiohttp application (Marathon's REST API and Docker's Engine API),
the requests that exercise it (tests/integration/test_access_battery.py
asserts that ROUTES covers every route `routes()` lists).

A builder takes the battery and the caller and returns the requests
(method, path, body, headers). As for gRPC (testing/battery_grpc.py), the
refused callers name the live objects (the running app /battery/app, the
never-ending deployment of /battery/waiting, the container battery-idle);
the allowed caller acts on harmless ones where the real act would disturb
the battery (a made-up id, an app with no instances, a container made for
it): its case shows authorization let it through, whatever comes next.

Where rules are not meant to refuse a valid principal (apps/access_targets.py):
OPEN paths need no principal at all; LISTS are filtered to what the caller
may read (Marathon's authorizer does the same); /v2/info needs a principal
only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

from juggler.testing.access_battery import Battery

Request = tuple[str, str, Any, dict[str, str]]
Builder = Callable[[Battery, str], list[Request]]

OPEN = frozenset({"GET /ping", "GET /metrics", "GET /v2/leader"})
# Lists: a principal without the rule gets them empty (key of the items).
LISTS = {"GET /v2/apps": "apps", "GET /v2/deployments": None, "GET /v2/queue": "queue",
         "GET /v2/tasks": "tasks"}
PRINCIPAL_ONLY = frozenset({"GET /v2/info"})


def routes() -> set[str]:
    """"METHOD path" of every route of the apps service's application (the
    Docker routes once, without their /v{version} copies; HEAD with GET)."""
    from juggler.apps.rest import make_app

    backend = SimpleNamespace(config=SimpleNamespace(master="127.0.0.1:1"))
    app = make_app(backend, docker=True)  # type: ignore[arg-type]
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if route.method == "HEAD" or path.startswith("/v{version"):
            continue
        out.add(f"{route.method} {path}")
    return out


def one(method: str, path: str, body: Any = None, **headers: str) -> list[Request]:
    return [(method, path, body, headers)]


def _app(app_id: str, instances: int = 0, **more: Any) -> dict[str, Any]:
    return {"id": app_id, "cmd": "sleep 3600", "cpus": 0.1, "mem": 16,
            "instances": instances, **more}


def _pick(who: str, refused: str, allowed: str) -> str:
    return allowed if who == "allowed" else refused


def _fresh_container(b: Battery) -> str:
    name = b.fresh("made")
    b.ok("POST", f"/containers/create?name={name}", {"Image": str(b.rootfs), "Cmd": ["true"]})
    return name


def _app_task(b: Battery) -> str:
    return b.ok("GET", "/v2/apps/battery/app/tasks")["tasks"][0]["id"]


def _app_version(b: Battery) -> str:
    return b.ok("GET", "/v2/apps/battery/app")["app"]["version"]


def _waiting_deployment(b: Battery) -> str:
    return next(d["id"] for d in b.ok("GET", "/v2/deployments")
                if d.get("affectedApps") == ["/battery/waiting"])


MARATHON: dict[str, Builder] = {
    "GET /ping": lambda b, w: one("GET", "/ping"),
    "GET /metrics": lambda b, w: one("GET", "/metrics"),
    "GET /v2/leader": lambda b, w: one("GET", "/v2/leader"),
    "GET /v2/info": lambda b, w: one("GET", "/v2/info"),
    "GET /v2/events": lambda b, w: one("GET", "/v2/events", Accept="text/event-stream"),
    "GET /v2/apps": lambda b, w: one("GET", "/v2/apps"),
    "POST /v2/apps": lambda b, w: one("POST", "/v2/apps", _app(
        _pick(w, "/battery/app", f"/battery/{b.fresh('app')}"))),
    "PUT /v2/apps": lambda b, w: one("PUT", "/v2/apps", [_app(
        _pick(w, "/battery/app", "/battery/scratch"))]),
    "PATCH /v2/apps": lambda b, w: one("PATCH", "/v2/apps", [{
        "id": _pick(w, "/battery/app", "/battery/scratch"), "instances": 0}]),
    "* /v2/apps/{tail}": lambda b, w: [
        ("GET", "/v2/apps/battery/app", None, {}),
        ("PUT", _pick(w, "/v2/apps/battery/app", "/v2/apps/battery/scratch"),
         _app(_pick(w, "/battery/app", "/battery/scratch")), {}),
        ("PATCH", _pick(w, "/v2/apps/battery/app", "/v2/apps/battery/scratch"),
         {"instances": 0}, {}),
        ("DELETE", _pick(w, "/v2/apps/battery/app", "/v2/apps/battery/none"), None, {}),
        ("GET", "/v2/apps/battery/app/tasks", None, {}),
        ("DELETE", _pick(w, "/v2/apps/battery/app/tasks", "/v2/apps/battery/scratch/tasks"),
         None, {}),
        ("DELETE", _pick(w, f"/v2/apps/battery/app/tasks/{_app_task(b)}",
                         "/v2/apps/battery/scratch/tasks/battery.none"), None, {}),
        ("GET", "/v2/apps/battery/app/versions", None, {}),
        ("GET", f"/v2/apps/battery/app/versions/{_app_version(b)}", None, {}),
        ("POST", _pick(w, "/v2/apps/battery/app/restart", "/v2/apps/battery/scratch/restart"),
         None, {}),
        ("GET", "/v2/apps/battery/*", None, {}),
        ("GET", "/v2/apps/*/tasks", None, {}),
    ],
    "GET /v2/deployments": lambda b, w: one("GET", "/v2/deployments"),
    "GET /v2/deployments/{id}": lambda b, w: one(
        "GET", f"/v2/deployments/{_waiting_deployment(b)}"),
    "DELETE /v2/deployments/{id}": lambda b, w: one("DELETE", "/v2/deployments/" + _pick(
        w, _waiting_deployment(b), "battery-none")),
    "GET /v2/groups": lambda b, w: one("GET", "/v2/groups"),
    "POST /v2/groups": lambda b, w: one("POST", "/v2/groups", {
        "id": _pick(w, "/battery", f"/battery/{b.fresh('group')}"), "apps": []}),
    "PUT /v2/groups": lambda b, w: one("PUT", "/v2/groups", {
        "id": _pick(w, "/battery", "/battery/scratch-group"), "apps": []}),
    # The allowed caller deletes the whole tree: the battery's last request.
    "DELETE /v2/groups": lambda b, w: one("DELETE", "/v2/groups?force=true"),
    "GET /v2/groups/{id}": lambda b, w: one("GET", "/v2/groups/battery"),
    "POST /v2/groups/{id}": lambda b, w: one("POST", "/v2/groups/battery", {
        "id": _pick(w, "app-group", b.fresh("group")), "apps": []}),
    "PUT /v2/groups/{id}": lambda b, w: one(
        "PUT", _pick(w, "/v2/groups/battery", "/v2/groups/battery/scratch-group"),
        {"apps": []}),
    "DELETE /v2/groups/{id}": lambda b, w: one(
        "DELETE", _pick(w, "/v2/groups/battery", "/v2/groups/battery/none-group")),
    "GET /v2/tasks": lambda b, w: [("GET", "/v2/tasks", None, {}),
                                   ("GET", "/v2/tasks", None, {"Accept": "text/plain"})],
    "POST /v2/tasks/delete": lambda b, w: one("POST", "/v2/tasks/delete", {
        "ids": [_pick(w, _app_task(b), "battery.none")]}),
    "GET /v2/queue": lambda b, w: one("GET", "/v2/queue"),
    "DELETE /v2/queue/{id}/delay": lambda b, w: one("DELETE", "/v2/queue/battery/app/delay"),
}
LAST = "DELETE /v2/groups"

IDLE = "battery-idle"        # created, never started
NONE = "battery-none"        # no such container or exec


def _c(method: str, tail: str, body: Any = None, refused: str = IDLE,
       allowed: str = IDLE) -> Builder:
    return lambda b, w: one(method, f"/containers/{_pick(w, refused, allowed)}{tail}", body)


def _fresh(method: str, tail: str) -> Builder:
    """On battery-idle for the refused callers, on a container made for it
    for the allowed one."""
    def build(b: Battery, w: str) -> list[Request]:
        target = _fresh_container(b) if w == "allowed" else IDLE
        return one(method, f"/containers/{target}{tail.format(new=b.fresh('renamed'))}")
    return build


def _unimplemented(method: str, path: str) -> Builder:
    return lambda b, w: one(method, path)


DOCKER: dict[str, Builder] = {
    "GET /_ping": lambda b, w: one("GET", "/_ping"),
    "GET /version": lambda b, w: one("GET", "/version"),
    "GET /info": lambda b, w: one("GET", "/info"),
    "GET /events": lambda b, w: one("GET", "/events"),
    "POST /containers/create": lambda b, w: one(
        "POST", f"/containers/create?name={b.fresh('new')}",
        {"Image": str(b.rootfs), "Cmd": ["true"]}),
    "POST /containers/prune": lambda b, w: one(
        "POST", "/containers/prune?filters=" + quote(json.dumps({"label": ["battery-none"]}))),
    "GET /containers/json": lambda b, w: one("GET", "/containers/json?all=1"),
    "GET /containers/{id}/json": _c("GET", "/json"),
    "POST /containers/{id}/start": _c("POST", "/start", allowed=NONE),
    "POST /containers/{id}/stop": _c("POST", "/stop"),
    "POST /containers/{id}/restart": _c("POST", "/restart", allowed=NONE),
    "POST /containers/{id}/kill": _c("POST", "/kill"),
    "DELETE /containers/{id}": _fresh("DELETE", ""),
    "POST /containers/{id}/rename": _fresh("POST", "/rename?name={new}"),
    "POST /containers/{id}/wait": _c("POST", "/wait?condition=not-running"),
    "GET /containers/{id}/top": _c("GET", "/top"),
    "GET /containers/{id}/stats": _c("GET", "/stats?stream=false"),
    "GET /containers/{id}/logs": _c("GET", "/logs?stdout=1&stderr=1"),
    "POST /containers/{id}/attach": _c("POST", "/attach?stream=1&stdout=1"),
    "POST /containers/{id}/resize": _c("POST", "/resize?h=20&w=80"),
    "POST /containers/{id}/exec": _c("POST", "/exec", {"Cmd": ["true"]}),
    "POST /exec/{id}/start": lambda b, w: one("POST", f"/exec/{NONE}/start", {"Detach": True}),
    "POST /exec/{id}/resize": lambda b, w: one("POST", f"/exec/{NONE}/resize?h=20&w=80"),
    "GET /exec/{id}/json": lambda b, w: one("GET", f"/exec/{NONE}/json"),
    "* /containers/{id}/{action}": lambda b, w: [
        ("POST", f"/containers/{IDLE}/pause", None, {}),
        ("GET", f"/containers/{IDLE}/export", None, {})],
    "POST /commit": _unimplemented("POST", f"/commit?container={IDLE}"),
    "POST /build": _unimplemented("POST", "/build"),
    "GET /images/json": lambda b, w: one("GET", "/images/json"),
    "POST /images/create": lambda b, w: one(
        "POST", "/images/create?fromImage=127.0.0.1:9/battery/none&tag=1"),
    "GET /images/{name}/json": lambda b, w: one("GET", "/images/battery/none:1/json"),
    "DELETE /images/{name}": lambda b, w: one("DELETE", "/images/battery/none:1"),
    "GET /images/{name}/history": _unimplemented("GET", "/images/battery/none:1/history"),
    "POST /images/{name}/push": _unimplemented("POST", "/images/battery/none:1/push"),
    "POST /images/{name}/tag": _unimplemented("POST", "/images/battery/none:1/tag?repo=x"),
    "GET /images/search": _unimplemented("GET", "/images/search?term=battery"),
    "POST /images/load": _unimplemented("POST", "/images/load"),
    "GET /images/get": _unimplemented("GET", "/images/get?names=battery/none:1"),
    "POST /images/prune": _unimplemented("POST", "/images/prune"),
}

ROUTES: dict[str, Builder] = {**DOCKER, **MARATHON}
