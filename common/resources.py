"""Resources arithmetic: named scalars (cpus, mem, disk) and host ports, pure and exact.

Units, as in Mesos: `cpus` in cores (fractions allowed: 0.5 is half a core),
`mem` and `disk` in MiB; `ports` is a range resource (a set of host port
numbers 1..65535, juggler.common.ranges.Ranges), as Mesos's "ports". The
scalar names are KNOWN; NAMES adds "ports". No other name is known.

Ports add as a union, subtract as a set difference that must find every port,
and fit (contains) as a subset. milli_vector() and from_milli_vector() carry
the scalars only: the allocator's DRF shares and quotas are over scalars, as
Mesos's DRF sorter and quota count scalar resources only.

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

from juggler.common.ranges import EMPTY, Ranges
from juggler.v1 import common_pb2 as pb

KNOWN = ("cpus", "mem", "disk")   # the scalars, in milli_vector order
PORTS = "ports"                   # the one range resource
NAMES = (*KNOWN, PORTS)
UNITS = {"cpus": "", "mem": " MiB", "disk": " MiB"}
MAX_PORT = 65535


class ResourceError(ValueError):
    """Malformed resources (an unknown or empty name, an amount that is not a
    number, NaN, infinite or negative, text that is not NAME:AMOUNT, ports that
    are not ranges of 1..65535), or a subtraction that does not fit."""


def _unknown(name: str) -> ResourceError:
    return ResourceError(f"unknown resource {name!r} (known: {', '.join(NAMES)})")


def _ports(value: object) -> Ranges:
    """Ranges, or text in Ranges.parse syntax, checked to be ports 1..65535."""
    if isinstance(value, str):
        try:
            value = Ranges.parse(value)
        except ValueError as err:
            raise ResourceError(f"ports: {err}") from None
    if not isinstance(value, Ranges):
        raise ResourceError(f"ports: {value!r} is not ranges like [31000-32000]")
    if value and (value.ranges[0][0] < 1 or value.ranges[-1][1] > MAX_PORT):
        raise ResourceError(f"ports: {value} is not within 1-{MAX_PORT}")
    return value


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
_PARSED: dict[tuple, Resources] = {}


class Resources:
    """A set of named amounts: cpus (cores), mem and disk (MiB), exact to the
    thousandth, zero amounts never held; and ports (Ranges of host ports).
    Compare with ==, add with + (ports: union), subtract with -
    (ResourceError when it does not fit)."""

    __slots__ = ("_m", "_p")

    def __init__(self, amounts: Mapping[str, float] | None = None, *,
                 ports: Ranges | str | None = None, _milli_map=None) -> None:
        """From {name: amount} (cpus in cores, mem and disk in MiB) and `ports`
        (Ranges, or text such as "[31000-32000]"); None or {} is empty. Amounts
        are rounded to thousandths; zeros are dropped.

        Raises ResourceError for a name not in KNOWN ("ports" goes in `ports=`),
        an amount that is not an int or float (a bool is not a number here),
        NaN, infinite or negative, or ports that are not ranges of 1..65535.
        (`_milli_map` is internal: already-checked thousandths, taken as is.)"""
        self._p: Ranges = EMPTY if ports is None else _ports(ports)
        if _milli_map is not None:
            self._m: dict[str, int] = _milli_map
            return
        m: dict[str, int] = {}
        for name, value in (amounts or {}).items():
            if name not in KNOWN:
                if name == PORTS:
                    raise ResourceError("ports is a range resource (ports=Ranges), not an amount")
                raise _unknown(name)
            v = _milli(name, value)
            if v:
                m[name] = m.get(name, 0) + v
        self._m = m

    # -- construction -----------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Resources:
        """Mesos's flag syntax: "cpus:2;mem:1024;disk:4096;ports:[31000-32000]"
        (cpus in cores, mem and disk in MiB, no unit suffixes; ports as
        Ranges.parse reads them). Blanks around names, amounts and entries are
        ignored, as are empty entries; "" is empty; a name given twice is
        summed (ports: united); zero amounts are dropped.

        Raises ResourceError for an entry without ':', an amount float() does
        not read, ports that are not [N-M,...] of 1..65535, and everything the
        constructor refuses (unknown name, NaN, infinite, negative)."""
        amounts: dict[str, float] = {}
        ports = EMPTY
        for part in filter(None, (p.strip() for p in text.split(";"))):
            name, sep, value = part.partition(":")
            if not sep:
                raise ResourceError(f"{part!r} is not NAME:AMOUNT")
            if name.strip() == PORTS:
                ports = ports | _ports(value)
                continue
            try:
                number = float(value)
            except ValueError:
                raise ResourceError(f"{name.strip()}: {value.strip()!r} is not a number") from None
            amounts[name.strip()] = amounts.get(name.strip(), 0.0) + number
        return cls(amounts, ports=ports)

    @classmethod
    def from_proto(cls, resources: Iterable[pb.Resource]) -> Resources:
        """From Resource messages (`name`, `scalar` in the name's unit, or
        `ranges` for "ports"; `role` is ignored). Entries of one name are summed
        (ports: united); zero sums are dropped.

        Raises ResourceError for an entry without a name, an unknown name, a
        scalar that is NaN, infinite or negative, ranges on a scalar, a scalar
        on ports, or ports that are not ranges of 1..65535.

        Parsed values are remembered by the entries' (name, scalar, ranges)
        (Resources are immutable): ten thousand agents and tasks of a few
        shapes re-registering after a failover parse a few lists, not 20,000."""
        resources = list(resources)
        try:
            key = tuple((r.name, r.scalar, tuple((x.begin, x.end) for x in r.ranges.range))
                        if r.name == PORTS or r.HasField("ranges") else (r.name, r.scalar)
                        for r in resources)
        except (TypeError, AttributeError):
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
        ports = EMPTY
        for r in resources:
            name = r.name
            if not name:
                raise ResourceError("a resource has no name")
            if name == PORTS:
                if r.scalar:
                    raise ResourceError(f"ports: a scalar ({r.scalar:g}) where ranges belong")
                try:
                    ports = ports | _ports(Ranges.from_proto(r.ranges))
                except ValueError as err:
                    raise ResourceError(f"ports: {err}") from None
                continue
            if name not in KNOWN:
                raise _unknown(name)
            if r.HasField("ranges") and r.ranges.range:
                raise ResourceError(f"{name}: ranges given, but {name} is a scalar")
            _milli(name, r.scalar)
            amounts[name] = amounts.get(name, 0.0) + r.scalar
        # The sums in thousandths, as Resources(amounts) makes them; the names are checked.
        m = {n: v for n, v in ((n, _milli(n, a)) for n, a in amounts.items()) if v}
        return cls(_milli_map=m, ports=ports or None)

    def to_proto(self, role: str = "") -> list[pb.Resource]:
        """One Resource message per name held, by name, each with `role`;
        scalars are the amounts (cores, MiB); ports have `ranges` (scalar 0).
        Empty list when empty."""
        out = [pb.Resource(name=n, scalar=v / 1000, role=role) for n, v in sorted(self._m.items())]
        if self._p:
            out.append(pb.Resource(name=PORTS, ranges=self._p.to_proto(), role=role))
            out.sort(key=lambda r: r.name)
        return out

    # -- queries ----------------------------------------------------------
    def get(self, name: str) -> float:
        """The scalar amount of `name` in its unit (cores, MiB); 0.0 when
        absent, whatever the name (no error for an unknown one; "ports" reads
        0.0: see `ports`)."""
        return self._m.get(name, 0) / 1000

    @property
    def ports(self) -> Ranges:
        """The host ports held (an empty Ranges when none)."""
        return self._p

    def scalars(self) -> Resources:
        """The same without ports."""
        return self if not self._p else Resources(_milli_map=self._m)

    def names(self) -> list[str]:
        """The names held (each scalar with an amount > 0; "ports" when any
        port is held), sorted."""
        return sorted([*self._m, PORTS] if self._p else self._m)

    def as_dict(self) -> dict[str, float]:
        """{name: amount} of the scalars held (cores, MiB; no zeros; never
        "ports"); a new dict."""
        return {n: v / 1000 for n, v in self._m.items()}

    def is_empty(self) -> bool:
        """True when no amount and no port is held (same as `not self`)."""
        return not self._m and not self._p

    def contains(self, other: Resources) -> bool:
        """True when every amount of `other` fits in this (other ≤ self, name
        by name) and its ports are a subset of these; an empty `other` fits
        in anything."""
        return (all(self._m.get(n, 0) >= v for n, v in other._m.items())
                and self._p.contains(other._p))

    def milli_vector(self, names: tuple[str, ...] = KNOWN) -> tuple[int, ...]:
        """Amounts in integer thousandths (1 core = 1000, 1 MiB = 1000), one per
        name, in `names` order; 0 for a name not held (no error for an
        unknown one). For hot loops (the allocator)."""
        m = self._m
        return tuple(m.get(n, 0) for n in names)

    @classmethod
    def from_milli_vector(cls, values: Iterable[int], names: tuple[str, ...] = KNOWN, *,
                          ports: Ranges | None = None) -> Resources:
        """The inverse of milli_vector: integer thousandths, one per name of
        `names` (not checked against KNOWN), zeros dropped; with `ports` (None:
        none).

        Raises ResourceError for a negative value or ports not in 1..65535,
        ValueError when `values` and `names` differ in length."""
        m = {n: v for n, v in zip(names, values, strict=True) if v}
        if any(v < 0 for v in m.values()):
            raise ResourceError(f"negative amount in {m}")
        return cls(_milli_map=m, ports=ports or None)

    # -- arithmetic -------------------------------------------------------
    def __add__(self, other: Resources) -> Resources:
        """The sum, name by name, and the union of ports (never fails)."""
        m = dict(self._m)
        for n, v in other._m.items():
            m[n] = m.get(n, 0) + v
        out = Resources(_milli_map=m)
        out._p = self._p | other._p
        return out

    def __sub__(self, other: Resources) -> Resources:
        """The difference, name by name, and of ports as sets; names that
        reach 0 are dropped.

        Raises ResourceError, naming a name of which `other` holds more than
        this and both amounts, or the ports of `other` not held here (and
        those held), when `other` does not fit."""
        ports = self._p
        if other._p:
            missing = other._p - self._p
            if missing:
                raise ResourceError(f"ports: {missing} not available (available: {self._p})")
            ports = self._p - other._p
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
        out = Resources(_milli_map=m)
        out._p = ports
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resources) and self._m == other._m and self._p == other._p

    def __hash__(self) -> int:
        return hash((tuple(sorted(self._m.items())), self._p))

    def __bool__(self) -> bool:
        return bool(self._m) or bool(self._p)

    def __repr__(self) -> str:
        return f"Resources({self})"

    def __str__(self) -> str:
        """parse()'s syntax, by name: "cpus:0.5;mem:128;ports:[31000-31009]"
        (amounts in cores and MiB, as %g: six significant digits); "{}" when
        empty."""
        if not self._m and not self._p:
            return "{}"
        parts = [f"{n}:{v / 1000:g}" for n, v in sorted(self._m.items())]
        if self._p:
            parts.append(f"{PORTS}:{self._p}")
        return ";".join(parts)

    def describe(self) -> str:
        """For people, by name: "cpus 0.5, mem 128 MiB, ports [8080]" (cpus
        without a unit, mem and disk with MiB); "" when empty."""
        parts = [f"{n} {v / 1000:g}{UNITS.get(n, '')}" for n, v in sorted(self._m.items())]
        if self._p:
            parts.append(f"{PORTS} {self._p}")
        return ", ".join(parts)


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
