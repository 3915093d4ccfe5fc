"""Marathon's placement constraints, checked against an offer. Pure, no I/O.

A constraint is `[field, operator]` or `[field, operator, value]` (Marathon's
JSON; the object form `{"fieldName", "operator", "value"}` is accepted too).
`field` is `hostname` (or `@hostname`) or the name of an agent attribute
(`juggler agent --attributes "rack:r1;zone:a"`). Operators, as Marathon
documents them ("Constraints" in Marathon's docs):

    UNIQUE            no two instances of the app share the field's value
    CLUSTER  [v]      only where the field equals v (without v: where the
                      first instance went)
    GROUP_BY [n]      spread evenly over the field's values (n: how many
                      values to expect; the app may only take an offer whose
                      value has the fewest instances)
    LIKE     regex    only where the field matches the regex (whole value)
    UNLIKE   regex    only where it does not match
    MAX_PER  n        at most n instances per value of the field
    IS       v        only where the field equals v (Marathon 1.5)

Sources, all in mesosphere/marathon: the user's rules are from
`docs/docs/constraints.md`; the matcher's from
`src/main/scala/mesosphere/mesos/Constraints.scala` (`ConstraintsChecker`);
which instances count from `src/main/scala/mesosphere/mesos/ResourceMatcher.scala`;
validation from `src/main/scala/mesosphere/marathon/api/v2/validation/
SchedulingValidation.scala` and the JSON forms from
`docs/docs/rest-api/public/api/v2/types/constraint.raml` and
`src/main/scala/mesosphere/marathon/raml/ConstraintConversion.scala`.
The rules, one by one (written from those files, no code taken):

- Field. `hostname` and `@hostname` read the agent's hostname, which every
  offer has; any other name reads the agent attribute of that name
  (`Constraints.readerForField`). juggler agents have no fault domain, so
  Marathon's `@region` and `@zone` are plain attribute names here.
- Missing attribute. An offer from an agent without the attribute matches
  only UNLIKE, whatever the operator (docs: "only the UNLIKE operator will
  (and always will) accept this offer"; `checkConstraint`, case None).
- UNIQUE. Refused when any counted instance has the offer's value.
  Instances on agents without the attribute never conflict.
- CLUSTER with a value: the offer's value equals it (existing instances are
  not looked at). Without a value (or with ""): any offer while the app has
  no instance; afterwards only offers whose value equals that of the *first*
  counted instance (`checkCluster` looks at the head only; when that
  instance's agent lacks the attribute, nothing matches).
- IS. The offer's value equals the constraint's. Marathon formats scalar
  attributes (`0.80` and `0.8` are equal there); juggler's attributes are
  plain strings, so IS, CLUSTER and the regexes compare the strings as the
  agent reported them.
- LIKE / UNLIKE. Java's `String.matches`: the regex must match the whole
  value (here `re.fullmatch`). The regex is Python's `re` dialect, which
  agrees with Java's on the usual subset (classes, groups, alternation,
  quantifiers, lookaround); Java-only syntax such as `\\p{Alpha}` or
  `(?<name>...)` is refused when the app is submitted.
- MAX_PER n. Refused when the offer's value already has n instances
  (`checkMaxPer`).
- GROUP_BY [n]. An offer whose value has no instance yet is always
  acceptable. Otherwise it is acceptable when at least n distinct values
  (n = 0 without a value) already have instances, and the offer's value has
  the fewest of them (`checkGroupBy` before Marathon PR #7206 of October
  2020; see below). So with n given, values not seen yet count as having
  none: a seen value is refused until n values have instances. As in
  Marathon, instances on agents without the attribute form a group of their
  own in this count.
  Marathon PR #7206 ("Allow GROUP_BY to preemptively scale up", on master
  and the 1.11 branch, backported to the 1.10 branch) replaced this with a per-value quota
  computed from the app's target instance count; juggler keeps the rule
  every Marathon user has known (counts stay within one of each other),
  which needs no target count.
- Which instances count (the caller's job): Marathon passes the app's
  instances of the current configuration only (`ResourceMatcher`: those
  whose version is not older than the last config change), so that during a
  rolling upgrade a new instance may land beside an old one under UNIQUE.

Validation (`parse_constraints`) follows `SchedulingValidation`: 2 or 3
items, a non-empty field, a known operator (upper case: Marathon's validator
upper-cases before checking, but its converter then accepts only the exact
enum names, so a lower-case operator is refused either way; juggler says so
plainly), UNIQUE takes no value, CLUSTER any, GROUP_BY none or an integer,
MAX_PER an integer, LIKE/UNLIKE a non-empty regex that compiles, IS a Mesos
text/scalar literal (`[a-zA-Z0-9_/.-]`). Stricter than Marathon, on purpose:
MAX_PER must be positive and GROUP_BY not negative (Marathon accepts any
32-bit integer, where 0 or less makes no sense), and IS needs a value (the
docs say "required"; Marathon's check lets an empty one through, which then
matches nothing).

Cost: `unmatched` counts `placed` once per call (one pass per counted
field). A placement loop that tries many offers for one app builds a
`Tally` once and passes it instead of the list, adding each instance it
places with `Tally.add`: every check is then O(1) (a regex match for
LIKE/UNLIKE).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OPERATORS = ("UNIQUE", "CLUSTER", "GROUP_BY", "LIKE", "UNLIKE", "MAX_PER", "IS")
HOSTNAME_FIELDS = ("hostname", "@hostname")

# Java's Integer.parseInt, which Marathon's validation uses: ASCII digits, an
# optional sign, 32 bits.
_JAVA_INT = re.compile(r"[+-]?[0-9]+")
_JAVA_INT_MAX = 2**31 - 1
# Marathon's MesosLiteralOrFloatValue (SchedulingValidation.scala).
_IS_VALUE = re.compile(r"[a-zA-Z0-9_/.-]+")
_COUNTED = frozenset({"UNIQUE", "GROUP_BY", "MAX_PER"})


@dataclass(frozen=True)
class Constraint:
    field: str
    operator: str
    value: str | None = None

    def render(self) -> list[str]:
        """Marathon's JSON form: [field, operator] or [field, operator, value]."""
        return [self.field, self.operator] + ([self.value] if self.value is not None else [])

    def __str__(self) -> str:
        return ":".join(self.render())


@dataclass(frozen=True)
class Placement:
    """Where something is or could be: an agent's hostname and attributes."""

    hostname: str
    attributes: Mapping[str, str]

    def value(self, name: str) -> str | None:
        """The field's value here: the hostname for `hostname`/`@hostname`,
        else the attribute's value, None when the agent lacks it."""
        return self.hostname if name in HOSTNAME_FIELDS else self.attributes.get(name)


# ---------------------------------------------------------------- parsing


def parse_constraints(raw: Any) -> tuple[tuple[Constraint, ...], list[dict[str, Any]]]:
    """Marathon's `constraints` value → (constraints, errors).

    `raw` is what the app's JSON holds: None (no constraints) or a list whose
    items are `[field, operator]`, `[field, operator, value]` (all strings;
    numbers as strings, e.g. `["rack", "MAX_PER", "2"]`) or
    `{"fieldName": ..., "operator": ..., "value": ...}` (value optional).

    `constraints` holds the valid ones, in order. `errors` is a list of
    Marathon 422 details, one per invalid constraint, all of them at once:
    `{"path": "/constraints(0)", "errors": ["MAX_PER requires a positive
    integer value, not 'two'"]}` (path `/constraints` when `raw` is not a
    list). Empty when every constraint is valid: a known operator, a value
    where the operator needs one and none where it takes none, a regex that
    compiles, an integer for MAX_PER and GROUP_BY, a literal for IS."""
    if raw is None:
        return (), []
    if not isinstance(raw, list | tuple):
        return (), [{"path": "/constraints", "errors": [
            "constraints must be a list of [field, operator] or [field, operator, value]"]}]
    constraints: list[Constraint] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        constraint, problems = _parse_one(item)
        if problems:
            errors.append({"path": f"/constraints({index})", "errors": problems})
        elif constraint is not None:
            constraints.append(constraint)
    return tuple(constraints), errors


def _parse_one(item: Any) -> tuple[Constraint | None, list[str]]:
    if isinstance(item, list | tuple):
        if not 2 <= len(item) <= 3:
            return None, [f"each constraint must have either 2 or 3 fields "
                          f"([field, operator] or [field, operator, value]), not {len(item)}"]
        bad = [f"the {name} must be a string, not {_json_repr(x)}"
               for name, x in zip(("field", "operator", "value"), item, strict=False)
               if not isinstance(x, str)]
        if bad:
            return None, bad
        field, operator = item[0], item[1]
        value = item[2] if len(item) == 3 else None
    elif isinstance(item, Mapping):
        field, operator, value = item.get("fieldName"), item.get("operator"), item.get("value")
        bad = [f"{key} must be a string, not {_json_repr(x)}"
               for key, x in (("fieldName", field), ("operator", operator), ("value", value))
               if not isinstance(x, str) and (x is not None or key != "value")]
        if bad:
            return None, bad
    else:
        return None, ["a constraint is [field, operator, value?] or "
                      f"{{\"fieldName\", \"operator\", \"value\"?}}, not {_json_repr(item)}"]
    problems = _problems(field, operator, value)
    return (None if problems else Constraint(field, operator, value)), problems


def _problems(field: str, operator: str, value: str | None) -> list[str]:
    # Marathon's SchedulingValidation rules (module docstring); [] when valid.
    problems = []
    if not field:
        problems.append("missing field: name hostname or an agent attribute")
    if operator not in OPERATORS:
        if operator.upper() in OPERATORS:
            problems.append(f"unknown operator {operator!r}: operators are upper case, "
                            f"use {operator.upper()}")
        else:
            problems.append(f"unknown operator {operator!r}: use one of {', '.join(OPERATORS)}")
        return problems
    if operator == "UNIQUE" and value is not None:
        problems.append(f"UNIQUE does not accept a value (got {value!r})")
    elif operator == "GROUP_BY" and value is not None and _java_int(value, minimum=0) is None:
        problems.append("GROUP_BY takes no value or a non-negative integer "
                        f"(how many values of {field or 'the field'} to expect), not {value!r}")
    elif operator == "MAX_PER" and _java_int(value, minimum=1) is None:
        problems.append("MAX_PER requires a positive integer value"
                        + ("" if value is None else f", not {value!r}"))
    elif operator in ("LIKE", "UNLIKE"):
        if not value:
            problems.append(f"{operator} requires a regular expression value "
                            "(to match any value: '.*')")
        else:
            try:
                _regex(value)
            except re.error as e:
                problems.append(f"{operator}: {value!r} is not a valid regular expression ({e})")
    elif operator == "IS" and (value is None or not _IS_VALUE.fullmatch(value)):
        problems.append(
            "IS requires a value" if value is None else
            f"IS only supports text and scalar values (letters, digits, _ / . -), not {value!r}")
    return problems


def _java_int(value: str | None, minimum: int) -> int | None:
    if value is None or not _JAVA_INT.fullmatch(value):
        return None
    number = int(value)
    return number if minimum <= number <= _JAVA_INT_MAX else None


def _json_repr(x: Any) -> str:
    if x is None:
        return "null"
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return repr(x)
    if isinstance(x, int | float):
        return f"the number {x} (write it as a string: \"{x}\")"
    if isinstance(x, list | tuple):
        return "an array"
    return "an object" if isinstance(x, Mapping) else type(x).__name__


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# ---------------------------------------------------------------- counting


class _Counts:
    """Instances per value of one field, and the smallest of those counts,
    kept up to date in O(1) per added instance. None is the value of
    instances whose agent lacks the attribute."""

    __slots__ = ("by_count", "fewest", "per_value")

    def __init__(self) -> None:
        self.per_value: dict[str | None, int] = {}
        self.by_count: Counter[int] = Counter()  # how many values have each count
        self.fewest = 0

    @classmethod
    def of(cls, values: Iterable[str | None]) -> _Counts:
        counts = cls()
        counts.per_value = dict(Counter(values))
        counts.by_count = Counter(counts.per_value.values())
        counts.fewest = min(counts.by_count, default=0)
        return counts

    def add(self, value: str | None) -> None:
        old = self.per_value.get(value, 0)
        self.per_value[value] = old + 1
        self.by_count[old + 1] += 1
        if old == 0:
            self.fewest = 1
            return
        self.by_count[old] -= 1
        if not self.by_count[old]:
            del self.by_count[old]
            # Every count was >= fewest; if this value was the last at fewest,
            # the smallest is now its new count.
            if old == self.fewest:
                self.fewest = old + 1


class Tally:
    """Where an app's counted instances are, for checking many offers.

    Built from `placed` (one Placement per instance, first placed first);
    counts per field are made on first use, in one pass, and kept current by
    `add`. Mutable: a placement loop adds each instance it places, so the
    next offer sees it. Pass it to `unmatched`, `allows` or `describe` in
    place of the list."""

    __slots__ = ("_counts", "_placed")

    def __init__(self, placed: Sequence[Placement] = ()) -> None:
        self._placed: list[Placement] = list(placed)
        self._counts: dict[str, _Counts] = {}

    def __len__(self) -> int:
        return len(self._placed)

    @property
    def first(self) -> Placement | None:
        """The first instance placed (CLUSTER without a value follows it)."""
        return self._placed[0] if self._placed else None

    def add(self, placement: Placement) -> None:
        """Count one more instance, placed at `placement`."""
        self._placed.append(placement)
        for field, counts in self._counts.items():
            counts.add(placement.value(field))

    def count(self, field: str, value: str | None) -> int:
        """How many instances have `value` for `field` (None: lack it)."""
        return self._field(field).per_value.get(value, 0)

    def groups(self, field: str) -> int:
        """How many distinct values of `field` have instances (instances
        without the attribute counting as one more value, as in Marathon)."""
        return len(self._field(field).per_value)

    def fewest(self, field: str) -> int:
        """The smallest count among those values (0 with no instances)."""
        return self._field(field).fewest

    def per_value(self, field: str) -> Mapping[str | None, int]:
        """Instances per value of `field`; a read-only view, do not keep."""
        return self._field(field).per_value

    def _field(self, field: str) -> _Counts:
        key = "hostname" if field in HOSTNAME_FIELDS else field
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = _Counts.of(p.value(key) for p in self._placed)
        return counts


# ---------------------------------------------------------------- matching


def allows(constraint: Constraint, offer: Placement, placed: Tally) -> bool:
    """Whether `constraint` lets one more instance go to `offer`, given the
    counted instances in `placed`. A constraint that did not come through
    `parse_constraints` and is malformed (a bad MAX_PER number, a regex that
    does not compile) allows nothing; it never raises."""
    op, want = constraint.operator, constraint.value
    have = offer.value(constraint.field)
    if have is None:
        return op == "UNLIKE"
    if op == "UNIQUE":
        return placed.count(constraint.field, have) == 0
    if op == "CLUSTER":
        if want:
            return have == want
        first = placed.first
        return first is None or first.value(constraint.field) == have
    if op == "IS":
        return have == want
    if op in ("LIKE", "UNLIKE"):
        matched = _fullmatch(want, have)
        return matched is not None and matched == (op == "LIKE")
    if op == "MAX_PER":
        most = _java_int(want, minimum=-_JAVA_INT_MAX)
        if most is None:
            return False
        count = placed.count(constraint.field, have)
        return count == 0 or count < most
    if op == "GROUP_BY":
        if placed.count(constraint.field, have) == 0:
            return True
        expected = _java_int(want, minimum=-_JAVA_INT_MAX) or 0
        return (placed.groups(constraint.field) >= expected
                and placed.count(constraint.field, have) == placed.fewest(constraint.field))
    return False


def _fullmatch(pattern: str | None, value: str) -> bool | None:
    """Whether the regex matches all of `value`; None when there is no usable
    regex (Marathon: LIKE and UNLIKE without a value match nothing)."""
    if not pattern:
        return None
    try:
        return _regex(pattern).fullmatch(value) is not None
    except re.error:
        return None


def unmatched(constraints: Sequence[Constraint], offer: Placement,
              placed: Sequence[Placement] | Tally) -> Constraint | None:
    """The first constraint that forbids placing one more instance on `offer`,
    given where the app's counted instances are; None when all allow it.

    `placed` is one Placement per instance, first placed first (or a `Tally`
    of them, to check many offers without recounting). Count the instances
    Marathon counts: those of the app's current configuration, not the old
    ones a rolling upgrade is replacing (see the module docstring)."""
    if not constraints:
        return None
    tally = placed if isinstance(placed, Tally) else _tally_for(constraints, placed)
    for constraint in constraints:
        if not allows(constraint, offer, tally):
            return constraint
    return None


def _tally_for(constraints: Sequence[Constraint],
               placed: Sequence[Placement]) -> Tally:
    # Without a counting operator there is nothing to count: skip the copy.
    if any(c.operator in _COUNTED or c.operator == "CLUSTER" for c in constraints):
        return Tally(placed)
    return Tally()


# ---------------------------------------------------------------- reasons


def describe(constraint: Constraint, offer: Placement,
             placed: Sequence[Placement] | Tally | None = None) -> str:
    """Why `constraint` forbids one more instance on `offer`, for a person:
    `"hostname:UNIQUE: an instance already runs on host-a"`,
    `"rack:LIKE:r[12]: agent's rack is r3"`,
    `"zone:CLUSTER:a: agent has no attribute zone"`. With `placed` (the same
    instances given to `unmatched`) the counting operators say how many
    instances are where; without it they say less. When the constraint
    allows the offer, says so: `"rack:LIKE:r.*: allows agent host-a"`."""
    field, op, want = constraint.field, constraint.operator, constraint.value
    have = offer.value(field)
    tally = None if placed is None else placed if isinstance(placed, Tally) else Tally(placed)
    if tally is not None and allows(constraint, offer, tally):
        return f"{constraint}: allows agent {offer.hostname}"
    if have is None:
        if op == "UNLIKE":
            return f"{constraint}: allows agent {offer.hostname}"
        return f"{constraint}: agent has no attribute {field}"
    is_host = field in HOSTNAME_FIELDS
    label = "hostname" if is_host else field
    where = have if is_host else f"{field} {have}"
    agents = f"agent's {label} is {have}"
    if op in ("LIKE", "UNLIKE"):
        if _fullmatch(want, have) is None:
            return f"{constraint}: {op} needs a regular expression that compiles"
        return f"{constraint}: {agents}"
    if op in ("CLUSTER", "IS") and want:
        return f"{constraint}: {agents}"
    if op == "CLUSTER":
        first = tally.first if tally is not None else None
        if first is None:
            return f"{constraint}: the app's instances are on another {label} than {have}"
        first_value = first.value(field)
        there = ("an agent without attribute " + field if first_value is None
                 else first_value if is_host else f"{field} {first_value}")
        return f"{constraint}: the app's first instance is on {there}, {agents}"
    if op == "UNIQUE":
        return f"{constraint}: an instance already runs on {where}"
    if op == "MAX_PER":
        if tally is None:
            return f"{constraint}: {where} already has {_instances(want)}, the most allowed"
        return f"{constraint}: {where} already has {_instances(tally.count(field, have))}"
    if op == "GROUP_BY":
        if tally is None:
            return f"{constraint}: {where} already has more instances than another {label}"
        count, groups = tally.count(field, have), tally.groups(field)
        expected = _java_int(want, minimum=-_JAVA_INT_MAX) or 0
        if groups < expected:
            return (f"{constraint}: {where} already has {_instances(count)} and only "
                    f"{groups} of the {expected} expected {label} values have any; "
                    f"waiting for an offer from another {label}")
        return (f"{constraint}: {where} has {_instances(count)}, more than the fewest "
                f"({tally.fewest(field)}) on another {label}")
    return f"{constraint}: unknown operator {op!r}"


def _instances(count: int | str | None) -> str:
    return f"{count} instance" + ("" if str(count) == "1" else "s")
