"""Resources arithmetic: named scalars (cpus, mem, disk), pure and exact.

Units, as in Mesos: `cpus` in cores (fractions allowed: 0.5 is half a core),
`mem` and `disk` in MiB. No other name is known (KNOWN).

Amounts are held as integer thousandths so that adding and subtracting never
drifts (Mesos keeps three decimal places the same way): an amount is rounded
to the nearest thousandth (Python's round(), half to even), and one that
rounds to 0 is absent — a Resources value never holds a zero amount, and
get() reads an absent name as 0. A Resources value is immutable and hashable;
every operation returns a new one.

Every error is a ResourceError (a ValueError) whose message names the resource.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from juggler.v1 import common_pb2 as pb

KNOWN = ("cpus", "mem", "disk")
UNITS = {"cpus": "", "mem": " MiB", "disk": " MiB"}


class ResourceError(ValueError):
    """Malformed resources (an unknown or empty name, an amount that is not a
    number, NaN, infinite or negative, text that is not NAME:AMOUNT), or a
    subtraction that does not fit."""


def _milli(name: str, value: float) -> int:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ResourceError(f"{name}: {value!r} is not a number")
    if math.isnan(value) or math.isinf(value):
        raise ResourceError(f"{name}: {value} is not a finite number")
    if value < 0:
        raise ResourceError(f"{name}: {value} is negative")
    return round(value * 1000)


# Resources.from_proto's memo (cleared when full: shapes are few in practice).
_PARSED_KEPT = 4096
_PARSED: dict[tuple[tuple[str, float], ...], Resources] = {}


class Resources:
    """A set of named amounts: cpus (cores), mem and disk (MiB), exact to the
    thousandth; zero amounts are never held. Compare with ==, add with +,
    subtract with - (ResourceError when it does not fit)."""

    __slots__ = ("_m",)

    def __init__(self, amounts: Mapping[str, float] | None = None, *, _milli_map=None) -> None:
        """From {name: amount} (cpus in cores, mem and disk in MiB); None or {}
        is empty. Amounts are rounded to thousandths; zeros are dropped.

        Raises ResourceError for a name not in KNOWN, an amount that is not an
        int or float (a bool is not a number here), NaN, infinite or negative.
        (`_milli_map` is internal: already-checked thousandths, taken as is.)"""
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
        """Mesos's flag syntax: "cpus:2;mem:1024;disk:4096" (cpus in cores, mem
        and disk in MiB; no unit suffixes). Blanks around names, amounts and
        entries are ignored, as are empty entries; "" is empty; a name given
        twice is summed; zero amounts are dropped.

        Raises ResourceError for an entry without ':', an amount float() does
        not read, and everything the constructor refuses (unknown name, NaN,
        infinite, negative)."""
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
        """From Resource messages (`name`, `scalar` in the name's unit; `role`
        is ignored). Entries of one name are summed; zero sums are dropped.

        Raises ResourceError for an entry without a name, an unknown name, or a
        scalar that is NaN, infinite or negative.

        Parsed values are remembered by the entries' (name, scalar) pairs
        (Resources are immutable): ten thousand agents and tasks of a few
        shapes re-registering after a failover parse a few lists, not 20,000."""
        resources = list(resources)
        try:
            key = tuple((r.name, r.scalar) for r in resources)
        except TypeError:
            key = None
        if key is not None:
            hit = _PARSED.get(key)
            if hit is not None:
                return hit
        value = cls._parse_proto(resources)
        if key is not None:
            if len(_PARSED) >= _PARSED_KEPT:
                _PARSED.clear()
            _PARSED[key] = value
        return value

    @classmethod
    def _parse_proto(cls, resources: list[pb.Resource]) -> Resources:
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
        """One Resource message per name held, by name, each with `role`;
        scalars are the amounts (cores, MiB). Empty list when empty."""
        return [pb.Resource(name=n, scalar=v / 1000, role=role) for n, v in sorted(self._m.items())]

    # -- queries ----------------------------------------------------------
    def get(self, name: str) -> float:
        """The amount of `name` in its unit (cores, MiB); 0.0 when absent,
        whatever the name (no error for an unknown one)."""
        return self._m.get(name, 0) / 1000

    def names(self) -> list[str]:
        """The names held (each with an amount > 0), sorted."""
        return sorted(self._m)

    def as_dict(self) -> dict[str, float]:
        """{name: amount} of the names held (cores, MiB; no zeros); a new dict."""
        return {n: v / 1000 for n, v in self._m.items()}

    def is_empty(self) -> bool:
        """True when no amount is held (same as `not self`)."""
        return not self._m

    def contains(self, other: Resources) -> bool:
        """True when every amount of `other` fits in this (other ≤ self, name
        by name); an empty `other` fits in anything."""
        return all(self._m.get(n, 0) >= v for n, v in other._m.items())

    def milli_vector(self, names: tuple[str, ...] = KNOWN) -> tuple[int, ...]:
        """Amounts in integer thousandths (1 core = 1000, 1 MiB = 1000), one per
        name, in `names` order; 0 for a name not held (no error for an
        unknown one). For hot loops (the allocator)."""
        m = self._m
        return tuple(m.get(n, 0) for n in names)

    @classmethod
    def from_milli_vector(cls, values: Iterable[int], names: tuple[str, ...] = KNOWN) -> Resources:
        """The inverse of milli_vector: integer thousandths, one per name of
        `names` (not checked against KNOWN), zeros dropped.

        Raises ResourceError for a negative value, ValueError when `values`
        and `names` differ in length."""
        m = {n: v for n, v in zip(names, values, strict=True) if v}
        if any(v < 0 for v in m.values()):
            raise ResourceError(f"negative amount in {m}")
        return cls(_milli_map=m)

    # -- arithmetic -------------------------------------------------------
    def __add__(self, other: Resources) -> Resources:
        """The sum, name by name (never fails)."""
        m = dict(self._m)
        for n, v in other._m.items():
            m[n] = m.get(n, 0) + v
        return Resources(_milli_map=m)

    def __sub__(self, other: Resources) -> Resources:
        """The difference, name by name; names that reach 0 are dropped.

        Raises ResourceError, naming a name of which `other` holds more than
        this and both amounts, when `other` does not fit."""
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
        """parse()'s syntax, by name: "cpus:0.5;mem:128" (amounts in cores and
        MiB, as %g: six significant digits); "{}" when empty."""
        if not self._m:
            return "{}"
        return ";".join(f"{n}:{v / 1000:g}" for n, v in sorted(self._m.items()))

    def describe(self) -> str:
        """For people, by name: "cpus 0.5, mem 128 MiB" (cpus without a unit,
        mem and disk with MiB); "" when empty."""
        return ", ".join(f"{n} {v / 1000:g}{UNITS.get(n, '')}" for n, v in sorted(self._m.items()))


def parse_size_mib(text: str) -> float:
    """A memory size for people ("512M", "2G", "1.5g", "268435456b", "128") in MiB.

    A bare number is MiB, as in Mesos's resource flags. Suffixes (any case, an
    optional "b" or "ib" after the letter): b bytes, k KiB, m MiB, g GiB, t
    TiB, all powers of 1024. The result is not rounded to thousandths.

    Raises ResourceError for empty text, a number float() does not read, or
    one that is NaN, infinite or negative.
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
