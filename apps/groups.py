"""Group definitions (POST/PUT /v2/groups): `GroupDefinition`, a group's
apps, subgroups and dependencies, and `parse_group`, which reads Marathon's
group object, each app by the app parser's rules (definition_parse.py).
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from juggler.apps.definition_fields import _Errors, _Obj
from juggler.apps.definition_model import (
    AppDefinition,
    _BadId,
    _canonical,
    _parent,
    normalize_id,
)
from juggler.apps.definition_parse import _app


@dataclass(frozen=True)
class GroupDefinition:
    """A group of POST/PUT /v2/groups: its absolute id, its apps, its
    subgroups and its dependencies."""

    id: str
    apps: tuple[AppDefinition, ...] = ()
    groups: tuple[GroupDefinition, ...] = ()
    dependencies: tuple[str, ...] = ()

    def all_apps(self) -> list[AppDefinition]:
        out = list(self.apps)
        for g in self.groups:
            out.extend(g.all_apps())
        return out


def parse_group(obj: Any, *, base: str = "/") -> GroupDefinition:
    """A Marathon group object → GroupDefinition; apps' relative ids and
    dependencies are resolved against their group. Raises InvalidDefinition.

    `{"id", "apps": [...], "groups": [...], "dependencies": [...]}`: the id is
    taken under `base` ("/" when the body has none: the group is `base`
    itself, as for PUT /v2/groups/{id}); a subgroup's id is taken under its
    parent and must be a direct child of it; an app's id likewise (error path
    "/apps(0)/id", "/groups(1)/apps(0)/cpus", …). The group's dependencies
    are resolved under the group's id, as Marathon does. An app and a group
    with the same id, or two of either, are refused."""
    errors = _Errors()
    group = _group(obj, normalize_id(base), errors, "", parent=None)
    errors.raise_any()
    assert group is not None
    return group


def _group(obj: Any, base: str, errors: _Errors, prefix: str,
           parent: str | None) -> GroupDefinition | None:
    if not isinstance(obj, dict):
        errors.add(prefix, "must be a JSON object (a group)")
        return None
    before = errors.count
    o = _Obj(obj, prefix, errors)
    gid: str | None = base
    if o.raw("id") is None:
        if parent is not None:
            o.bad("id", "is required")
            gid = None
    else:
        try:
            gid = _canonical(o.raw("id"), parent or base)
        except _BadId as e:
            o.bad("id", str(e))
            gid = None
        if gid is not None and parent is not None and (gid == "/" or _parent(gid) != parent):
            o.bad("id", f"Identifier {gid} is not child of '{parent}'. Hint: use relative "
                  "paths.")
            gid = None
    if o.raw("pods"):
        o.bad("pods", "pods are not supported by juggler")
    home = gid or parent or base
    apps = [(path, _app(item, home, errors, path, group=home))
            for path, item in o.items("apps")]
    groups = [(path, _group(item, home, errors, path, parent=home))
              for path, item in o.items("groups")]
    seen: set[str] = set()
    for path, member in [*apps, *groups]:
        if member is None:
            continue
        if member.id in seen:
            errors.add(path + "/id", f"{member.id} is given twice: groups and apps may not "
                       "have the same identifier")
        seen.add(member.id)
    dependencies = o.id_list("dependencies", home)
    if errors.count != before or gid is None:
        return None
    return GroupDefinition(
        id=gid,
        apps=tuple(a for _, a in apps if a is not None),
        groups=tuple(g for _, g in groups if g is not None),
        dependencies=dependencies,
    )
