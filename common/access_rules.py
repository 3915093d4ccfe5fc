"""Access rules in Mesos's ACL style: parse a rules file's dict and decide.

Pure: no I/O (common/access.py reads the file, logs and counts refusals).

Shape (JSON or YAML once loaded; Mesos's ACLs, see mesos.apache.org
"Authorization", with juggler's actions)::

    {"permissive": false,
     "run_tasks": [
       {"principals": {"values": ["alice"]}, "users": {"values": ["alice", "nobody"]}},
       {"principals": {"type": "ANY"}, "users": {"type": "NONE"}}]}

Semantics (the contract of issue 18):
- The entries of an action are tried in order. The first entry whose
  `principals` match the caller decides: allowed when its object matches the
  call's object, denied when its object is `{"type": "NONE"}`. An entry whose
  principals match but whose object values do not is skipped.
- Nothing decided: allowed when `permissive` is true, else denied (default).
- An entity is `{"values": [..]}` (strings: exact, or a prefix when ending in
  "*": "/team-a/*" matches "/team-a/web"), `{"type": "ANY"}` or
  `{"type": "NONE"}`. As principals, ANY matches every caller (with or
  without a principal) and NONE matches only a caller without a principal (no
  client certificate or token); values never match a caller without one.
- Principal-only actions (view_cluster, manage_images, docker_api) take
  entries with `principals` alone; the others need their object key.
- Rule names: `run_tasks[1]` is the second entry of run_tasks (0-based, as
  the file's list index); a default refusal names `permissive: false`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# action → its object key (None: principal-only), and the object's name in messages.
ACTIONS: dict[str, str | None] = {
    "register_agents": "agents",
    "register_frameworks": "roles",
    "run_tasks": "users",
    "run_host_network": "roles",
    "run_host_filesystem": "roles",
    "write_host_filesystem": "roles",
    "teardown_frameworks": "framework_principals",
    "kill_tasks": "framework_principals",
    "view_cluster": None,
    "drain_agents": "agents",
    "update_quotas": "roles",
    "update_weights": "roles",
    "access_sandboxes": "framework_principals",
    "launch_nested_container_sessions": "framework_principals",
    "manage_images": None,
    "apps_read": "app_ids",
    "apps_write": "app_ids",
    "containers_read": "names",
    "containers_write": "names",
    "docker_api": None,
}

_NOUNS = {"agents": "agent", "roles": "role", "users": "user",
          "framework_principals": "framework principal", "app_ids": "app",
          "names": "container"}

ANY, NONE, SOME = "ANY", "NONE", "SOME"


class RulesError(ValueError):
    """A rules file that does not parse; the message names the bad key or entry."""


@dataclass(frozen=True)
class Entity:
    """ANY, NONE, or SOME of `values` (exact strings or "prefix*")."""

    kind: str
    values: tuple[str, ...] = ()

    def matches(self, value: str | None) -> bool:
        """Whether `value` (None: no principal) is one this entity names."""
        if self.kind == ANY:
            return True
        if self.kind == NONE:
            return value is None
        if value is None:
            return False
        return any(value.startswith(v[:-1]) if v.endswith("*") else value == v
                   for v in self.values)


@dataclass(frozen=True)
class Entry:
    principals: Entity
    object: Entity | None  # None: a principal-only action


@dataclass(frozen=True)
class Decision:
    """allowed; rule: the entry that decided ("run_tasks[1]") or
    "permissive: true/false"; message: "" when allowed, else the refusal
    ("permission denied: … (rule …)")."""

    allowed: bool
    rule: str
    message: str = ""


@dataclass(frozen=True)
class Rules:
    """Parsed rules: `entries[action]` in file order; `permissive` when nothing decides."""

    permissive: bool
    entries: Mapping[str, tuple[Entry, ...]]

    def check(self, action: str, principal: str | None, obj: str | None = None) -> Decision:
        """The decision on `principal` (None: the caller has none) doing
        `action` on `obj` (required for actions with an object key, ignored
        by principal-only ones). Raises KeyError for an unknown action and
        ValueError for a missing object: both are bugs of the caller."""
        if action not in ACTIONS:
            raise KeyError(f"unknown access action {action!r}")
        key = ACTIONS[action]
        if key is not None and obj is None:
            raise ValueError(f"access action {action!r} needs its object ({key})")
        for i, entry in enumerate(self.entries.get(action, ())):
            if not entry.principals.matches(principal):
                continue
            rule = f"{action}[{i}]"
            if entry.object is None or entry.object.kind == ANY:
                return Decision(True, rule)
            if entry.object.kind == NONE:
                return Decision(False, rule, refusal(action, principal, obj, rule))
            if entry.object.matches(obj):
                return Decision(True, rule)
        rule = f"permissive: {str(self.permissive).lower()}"
        if self.permissive:
            return Decision(True, rule)
        return Decision(False, rule, refusal(action, principal, obj, rule, default=True))


def describe(action: str, principal: str | None, obj: str | None) -> str:
    """"principal 'bob' for user 'root'" — the caller and object of a check."""
    who = f"principal {principal!r}" if principal is not None else "a caller without a principal"
    key = ACTIONS.get(action)
    if key is None or obj is None:
        return who
    return f"{who} for {_NOUNS[key]} {obj!r}"


def refusal(action: str, principal: str | None, obj: str | None, rule: str,
            *, default: bool = False) -> str:
    """The refusal message: "permission denied: <what> (rule <rule>)"."""
    what = describe(action, principal, obj)
    if default:
        return f"permission denied: no {action} rule allows {what} (rule {rule})"
    return f"permission denied: {action} refused to {what} (rule {rule})"


def parse(data: Any) -> Rules:
    """Rules from a rules file's loaded JSON/YAML (a mapping; None or {} is
    "no entries, not permissive": everything denied). Raises RulesError naming
    the bad key or entry: not a mapping, an unknown action, `permissive` not a
    boolean, an action's value not a list of mappings, an entry without
    `principals` or without its action's object key, an unknown key in an
    entry, an entity that is not {"values": [strings]} or {"type": ANY/NONE}."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise RulesError(f"the rules must be a mapping of actions, not {_kind(data)}")
    permissive = data.get("permissive", False)
    if not isinstance(permissive, bool):
        raise RulesError(f"permissive must be true or false, not {permissive!r}")
    entries: dict[str, tuple[Entry, ...]] = {}
    for action, listed in data.items():
        if action == "permissive":
            continue
        if action not in ACTIONS:
            raise RulesError(f"unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
        if not isinstance(listed, list):
            raise RulesError(f"{action} must be a list of entries, not {_kind(listed)}")
        entries[action] = tuple(_entry(action, i, e) for i, e in enumerate(listed))
    return Rules(permissive=permissive, entries=entries)


def _entry(action: str, i: int, raw: Any) -> Entry:
    where = f"{action}[{i}]"
    if not isinstance(raw, Mapping):
        raise RulesError(f"{where} must be a mapping, not {_kind(raw)}")
    key = ACTIONS[action]
    allowed = {"principals"} | ({key} if key else set())
    for k in raw:
        if k not in allowed:
            takes = " and ".join(repr(a) for a in sorted(allowed))
            raise RulesError(f"{where}: unknown key {k!r} ({action} entries take {takes})")
    if "principals" not in raw:
        raise RulesError(f"{where}: 'principals' is missing")
    if key is not None and key not in raw:
        raise RulesError(f"{where}: {key!r} is missing (use {{\"type\": \"ANY\"}} for any)")
    return Entry(principals=_entity(f"{where}.principals", raw["principals"]),
                 object=_entity(f"{where}.{key}", raw[key]) if key is not None else None)


def _entity(where: str, raw: Any) -> Entity:
    if not isinstance(raw, Mapping):
        raise RulesError(f"{where} must be {{\"values\": [...]}} or {{\"type\": \"ANY\"|\"NONE\"}},"
                         f" not {_kind(raw)}")
    extra = set(raw) - {"values", "type"}
    if extra:
        raise RulesError(f"{where}: unknown key {sorted(extra)[0]!r} (an entity takes 'values' "
                         "or 'type')")
    if "values" in raw and "type" in raw:
        raise RulesError(f"{where}: give 'values' or 'type', not both")
    if "type" in raw:
        if raw["type"] not in (ANY, NONE):
            raise RulesError(f"{where}.type must be \"ANY\" or \"NONE\", not {raw['type']!r}")
        return Entity(raw["type"])
    values = raw.get("values")
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, str) and v for v in values)):
        raise RulesError(f"{where}.values must be a non-empty list of non-empty strings, "
                         f"not {values!r}")
    return Entity(SOME, tuple(values))


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
