"""Reading a definition's JSON objects, collecting every error: `_Obj` reads
one object's fields by type; a bad field is recorded in `_Errors` and read as
its default, so that reading goes on and one InvalidDefinition (Marathon's
422) names every bad field. Pure: no I/O. Shared by the app and group
parsers (definition_parse.py, groups.py), not with the rest of juggler.
"""

from __future__ import annotations

import math
import re
from typing import Any

from juggler.apps.definition_model import _INT32_MAX, InvalidDefinition, _BadId, _canonical

_PORT_NAME = re.compile(r"[a-z0-9-]+")  # Marathon's PortAssignment.PortNamePattern


class _Errors:
    """Marathon's 422 details, one entry per path, in the order found."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}
        self.count = 0

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path or "/", []).append(message)
        self.count += 1

    def raise_any(self) -> None:
        if self.by_path:
            raise InvalidDefinition([{"path": p, "errors": e} for p, e in self.by_path.items()])


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class _Obj:
    """One JSON object at `path`: typed reads of its fields. A bad field is
    recorded in `errors` and read as its default, so that reading goes on and
    every bad field is reported. A null field is a field left out."""

    def __init__(self, obj: dict[str, Any], path: str, errors: _Errors) -> None:
        self.obj, self.path, self.errors = obj, path, errors

    def at(self, key: str) -> str:
        return f"{self.path}/{key}"

    def bad(self, key: str, message: str) -> None:
        self.errors.add(self.at(key), message)

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def child(self, key: str, what: str) -> _Obj | None:
        """The object at `key` (None when left out or not an object)."""
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.bad(key, f"must be an object {what}")
            return None
        return _Obj(value, self.at(key), self.errors)

    def string(self, key: str, default: str | None = None, *,
               nonempty: bool = False) -> str | None:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or (nonempty and not value):
            self.bad(key, "must be a non-empty string" if nonempty else "must be a string")
            return default
        return value

    def port_name(self, key: str = "name") -> str | None:
        """A port's name: Marathon's PortAssignment.PortNamePattern, ^[a-z0-9-]+$
        (it becomes $PORT_<NAME> and a DNS-style service name); None when
        absent or bad (recorded)."""
        value = self.string(key, nonempty=True)
        if value is not None and not _PORT_NAME.fullmatch(value):
            self.bad(key, 'must match "^[a-z0-9-]+$" (lower-case letters, digits and dashes)')
            return None
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str | None:
        """The value, one of `choices`; None (recorded) when it is not."""
        value = self.obj.get(key)
        if value is None:
            return default
        if value not in choices:
            self.bad(key, "must be one of " + ", ".join(choices))
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.bad(key, "must be true or false")
            return default
        return value

    def number(self, key: str, default: Any, lo: float, hi: float | None = None, *,
               above: bool = False, integer: bool = False) -> Any:
        """A finite number ≥ lo (> lo when `above`) and ≤ hi, at most 2^31-1
        (Marathon's int32; no count, MiB or seconds of an app comes near it);
        an int when `integer` (2.0 reads as 2, as in Marathon)."""
        value = self.obj.get(key)
        if value is None:
            return default
        kind = "an integer" if integer else "a number"
        if hi is not None:
            rule = f"must be {kind} between {_fmt(lo)} and {_fmt(hi)}"
        else:
            rule = f"must be {kind} {'>' if above else '≥'} {_fmt(lo)}"
        # An int is compared as an int: JSON's integers have no size limit,
        # and float(10**400) raises.
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and (isinstance(value, int) or math.isfinite(value))
              and (value > lo if above else value >= lo)
              and (hi is None or value <= hi)
              and (not integer or isinstance(value, int) or value.is_integer()))
        if not ok:
            self.bad(key, rule)
            return default
        if value > _INT32_MAX:
            self.bad(key, f"must be at most {_INT32_MAX}")
            return default
        return int(value) if integer else float(value)

    def strings(self, key: str) -> list[str] | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            self.bad(key, "must be an array of strings")
            return None
        return value

    def string_map(self, key: str, *, env: bool = False) -> tuple[tuple[str, str], ...]:
        """A {name: string} object as a sorted tuple of pairs."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.bad(key, "must be an object of string values")
            return ()
        pairs = []
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                self.bad(key, "names must be non-empty strings")
            elif isinstance(item, str):
                pairs.append((name, item))
            elif env and isinstance(item, dict) and "secret" in item:
                self.errors.add(f"{self.at(key)}/{name}", "secrets are not supported by "
                                "juggler: give the variable's value as a string")
            else:
                self.errors.add(f"{self.at(key)}/{name}", "must be a string")
        return tuple(sorted(pairs))

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The elements of the array at `key` with their paths ("/key(0)")."""
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(key, "must be an array")
            return []
        return [(f"{self.at(key)}({i})", item) for i, item in enumerate(value)]

    def id_list(self, key: str, base: str) -> tuple[str, ...]:
        """An array of ids resolved under `base`, sorted and without repeats
        (Marathon keeps dependencies as a set)."""
        out = set()
        for path, raw in self.items(key):
            try:
                out.add(_canonical(raw, base))
            except _BadId as e:
                self.errors.add(path, str(e))
        return tuple(sorted(out))
