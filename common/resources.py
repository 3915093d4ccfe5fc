"""Resources arithmetic: named scalars (cpus, mem, disk), pure and exact.

Amounts are held as integer thousandths so that adding and subtracting never
drifts (Mesos keeps three decimal places the same way). A Resources value is
immutable; every operation returns a new one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from juggler.v1 import common_pb2 as pb

KNOWN = ("cpus", "mem", "disk")
UNITS = {"cpus": "", "mem": " MiB", "disk": " MiB"}


class ResourceError(ValueError):
    """Malformed resources: NaN, negative, infinite or unknown names."""


def _milli(name: str, value: float) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ResourceError(f"{name}: {value!r} is not a number")
    if math.isnan(value) or math.isinf(value):
        raise ResourceError(f"{name}: {value} is not a finite number")
    if value < 0:
        raise ResourceError(f"{name}: {value} is negative")
    return round(value * 1000)


class Resources:
    __slots__ = ("_m",)

    def __init__(self, amounts: Mapping[str, float] | None = None, *, _milli_map=None) -> None:
        if _milli_map is not None:
            self._m: dict[str, int] = _milli_map
            return
        m: dict[str, int] = {}
        for name, value in (amounts or {}).items():
            if name not in KNOWN:
                raise ResourceError(f"unknown resource {name!r} (known: {', '.join(KNOWN)})")
            v = _milli(name, value)
            if v:
                m[name] = m.get(name, 0) + v
        self._m = m

    # -- construction -----------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Resources:
        """Mesos's flag syntax: "cpus:2;mem:1024;disk:4096"."""
        amounts: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, value = part.partition(":")
            if not sep:
                raise ResourceError(f"{part!r} is not NAME:AMOUNT")
            try:
                number = float(value)
            except ValueError:
                raise ResourceError(f"{name.strip()}: {value.strip()!r} is not a number") from None
            amounts[name.strip()] = amounts.get(name.strip(), 0.0) + number
        return cls(amounts)

    @classmethod
    def from_proto(cls, resources: Iterable[pb.Resource]) -> Resources:
        amounts: dict[str, float] = {}
        for r in resources:
            name = r.name
            if not name:
                raise ResourceError("a resource has no name")
            if name not in KNOWN:
                raise ResourceError(f"unknown resource {name!r} (known: {', '.join(KNOWN)})")
            _milli(name, r.scalar)
            amounts[name] = amounts.get(name, 0.0) + r.scalar
        # The sums in thousandths, as Resources(amounts) makes them; the names are checked.
        m = {n: v for n, v in ((n, _milli(n, a)) for n, a in amounts.items()) if v}
        return cls(_milli_map=m)

    def to_proto(self, role: str = "") -> list[pb.Resource]:
        return [pb.Resource(name=n, scalar=v / 1000, role=role) for n, v in sorted(self._m.items())]

    # -- queries ----------------------------------------------------------
    def get(self, name: str) -> float:
        return self._m.get(name, 0) / 1000

    def names(self) -> list[str]:
        return sorted(self._m)

    def as_dict(self) -> dict[str, float]:
        return {n: v / 1000 for n, v in self._m.items()}

    def is_empty(self) -> bool:
        return not self._m

    def contains(self, other: Resources) -> bool:
        """True when every amount of `other` fits in this."""
        return all(self._m.get(n, 0) >= v for n, v in other._m.items())

    def milli_vector(self, names: tuple[str, ...] = KNOWN) -> tuple[int, ...]:
        """Amounts in thousandths, one per name, in `names` order (for hot loops)."""
        m = self._m
        return tuple(m.get(n, 0) for n in names)

    @classmethod
    def from_milli_vector(cls, values: Iterable[int], names: tuple[str, ...] = KNOWN) -> Resources:
        """The inverse of milli_vector: non-negative integer thousandths, zeros dropped."""
        m = {n: v for n, v in zip(names, values, strict=True) if v}
        if any(v < 0 for v in m.values()):
            raise ResourceError(f"negative amount in {m}")
        return cls(_milli_map=m)

    # -- arithmetic -------------------------------------------------------
    def __add__(self, other: Resources) -> Resources:
        m = dict(self._m)
        for n, v in other._m.items():
            m[n] = m.get(n, 0) + v
        return Resources(_milli_map=m)

    def __sub__(self, other: Resources) -> Resources:
        """Subtract; raises ResourceError when `other` does not fit."""
        m = dict(self._m)
        for n, v in other._m.items():
            left = m.get(n, 0) - v
            if left < 0:
                have = m.get(n, 0) / 1000
                raise ResourceError(f"{n}: {v / 1000:g} is more than the {have:g} available")
            if left:
                m[n] = left
            else:
                m.pop(n, None)
        return Resources(_milli_map=m)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self._m == other._m

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._m.items())))

    def __bool__(self) -> bool:
        return bool(self._m)

    def __repr__(self) -> str:
        return f"Resources({self})"

    def __str__(self) -> str:
        if not self._m:
            return "{}"
        return ";".join(f"{n}:{v / 1000:g}" for n, v in sorted(self._m.items()))

    def describe(self) -> str:
        """For people: "cpus 0.5, mem 128 MiB"."""
        return ", ".join(f"{n} {v / 1000:g}{UNITS.get(n, '')}" for n, v in sorted(self._m.items()))


def parse_size_mib(text: str) -> float:
    """A memory size for people ("512M", "2G", "1.5g", "268435456b", "128") in MiB.

    A bare number is MiB, as in Mesos's resource flags.
    """
    t = text.strip().lower()
    if not t:
        raise ResourceError("empty size")
    factors = {"b": 1 / 2**20, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0**2}
    unit = "m"
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and len(t) > len(suffix) and t[-len(suffix) - 1].isalpha():
            t = t[: -len(suffix)]
            break
    if t[-1] in factors:
        unit, t = t[-1], t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise ResourceError(f"{text!r} is not a size (examples: 512M, 2G, 128)") from None
    _milli("mem", value)
    return value * factors[unit]
