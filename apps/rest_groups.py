"""The /v2/groups handlers of the REST API (routes in rest.py). Groups are
not stored: a group exists while it holds apps, and is built from the ids of
the apps under it (the root always exists). POST creates a group and deploys
its apps, PUT changes its apps (Marathon's GroupUpdate, or scaleBy), DELETE
removes every app under it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from aiohttp import web

from juggler.apps.commands import AppsError
from juggler.apps.definition import (
    AppDefinition,
    GroupDefinition,
    InvalidDefinition,
    normalize_id,
    parse_group,
)
from juggler.apps.rest_backend import (
    Reply,
    _app_embeds,
    _app_info,
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
from juggler.apps.state import AppsState


def _parent(path_id: str) -> str:
    return path_id.rsplit("/", 1)[0] or "/"


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
    state = _state(request)
    base = _path_id(request.match_info.get("id", ""))
    raw = _object(await _json_body(request), "a group")
    group = parse_group(raw, base=base)
    if group.id == "/" or _group_apps(state, group.id):
        raise Reply(409, {"message": f"Group {group.id} is already created. Use PUT to "
                          "change this group."})
    if state.known(group.id):
        raise Reply(409, {"message": f"An app with the path {group.id} already exists."})
    targets: dict[str, AppDefinition | None] = {a.id: a for a in group.all_apps()}
    d = await _deploy(request, targets, force=_flag(request, "force"))
    return _deployment_result(d, 201,
                              {"Location": f"{request.url.origin()}/v2/groups{group.id}"})


async def update_group(request: web.Request) -> web.Response:
    """PUT /v2/groups[/{id}]: {"scaleBy": f} multiplies the instances of every
    app under the group (rounded up); {"version": v} is refused (group
    versions are not kept); otherwise the structural update of
    `_group_changes`. The group is created when it does not exist. 200
    deploymentResult."""
    state = _state(request)
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
    d = await _deploy(request, targets, force=_flag(request, "force"))
    return _deployment_result(d)


async def delete_group(request: web.Request) -> web.Response:
    """DELETE /v2/groups[/{id}]: remove every app under the group
    (deploymentResult). 404 for a group that holds no app (the root always
    exists: deleting it removes every app)."""
    state = _state(request)
    group_id = _path_id(request.match_info.get("id", ""))
    apps = _group_apps(state, group_id)
    if not apps and group_id != "/":
        raise _no_group(group_id)
    d = await _deploy(request, {a.id: None for a in apps}, force=_flag(request, "force"))
    return _deployment_result(d)
