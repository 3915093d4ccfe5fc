"""Ranges: a set of non-negative integers (host ports) held as inclusive ranges.

The value of Mesos's range resources (Value.Ranges; the agent flag syntax
"ports:[31000-32000,40000-40100]"). A Ranges value is immutable, hashable and
normalized: its ranges are (begin, end) tuples, inclusive, sorted, with no two
overlapping or adjacent ([1-2,3-4] is held as [1-4]), so equal sets compare
equal. Every operation returns a new value.

Errors are ValueErrors whose message quotes the input.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Iterator

from juggler.v1 import common_pb2 as pb

MAX = 2**64 - 1  # Range.begin/end are uint64 in the proto, as in Mesos


def _normalize(pairs: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[list[int]] = []
    for b, e in sorted(pairs):
        if out and b <= out[-1][1] + 1:
            if e > out[-1][1]:
                out[-1][1] = e
        else:
            out.append([b, e])
    return tuple((b, e) for b, e in out)


def _check(b: object, e: object) -> tuple[int, int]:
    for v in (b, e):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"range {b!r}-{e!r}: {v!r} is not an integer")
        if v < 0 or v > MAX:
            raise ValueError(f"range {b}-{e}: {v} is out of 0..{MAX}")
    if b > e:  # type: ignore[operator]
        raise ValueError(f"range {b}-{e}: begin is after end")
    return b, e  # type: ignore[return-value]


class Ranges:
    """An immutable set of integers as normalized inclusive ranges.

    Build with parse("[31000-32000,40000-40100]"), of([(31000, 32000)]) or
    single(8080, 8081); combine with | (union), - (difference) and & (intersection);
    contains(other) is the subset test. Falsy when empty."""

    __slots__ = ("_hash", "_r")

    def __init__(self, _normalized: tuple[tuple[int, int], ...] = ()) -> None:
        """Internal: already-normalized ranges. Use of(), parse() or single()."""
        self._r = _normalized
        self._hash: int | None = None

    # -- construction -----------------------------------------------------
    @classmethod
    def of(cls, pairs: Iterable[tuple[int, int]]) -> Ranges:
        """From (begin, end) pairs, inclusive, in any order, overlapping or not.

        Raises ValueError for a bound that is not an int (a bool is not), is
        negative or above 2**64-1, or a begin after its end."""
        return cls(_normalize(_check(b, e) for b, e in pairs))

    @classmethod
    def single(cls, *values: int) -> Ranges:
        """The set of the given numbers (duplicates allowed): single(80, 443).

        Raises ValueError as of() does."""
        return cls.of((v, v) for v in values)

    @classmethod
    def parse(cls, text: str) -> Ranges:
        """Mesos's syntax: "[31000-32000,40000-40100]"; "[8080]" is one number,
        "[]" is empty. Blanks anywhere between the tokens are ignored.

        Raises ValueError for text not in brackets, an item that is not N or
        N-M with decimal integers, or one of()'s errors."""
        t = text.strip()
        if len(t) < 2 or t[0] != "[" or t[-1] != "]":
            raise ValueError(f"{text!r} is not ranges like [31000-32000,40000-40100]")
        pairs: list[tuple[int, int]] = []
        for item in t[1:-1].split(","):
            item = item.strip()
            if not item:
                if t[1:-1].strip():
                    raise ValueError(f"{text!r}: an empty item between commas")
                continue
            begin, sep, end = item.partition("-")
            try:
                b = int(begin.strip(), 10)
                e = int(end.strip(), 10) if sep else b
            except ValueError:
                raise ValueError(f"{text!r}: {item!r} is not N or N-M") from None
            try:
                pairs.append(_check(b, e))
            except ValueError as err:
                raise ValueError(f"{text!r}: {err}") from None
        return cls(_normalize(pairs))

    @classmethod
    def from_proto(cls, ranges: pb.Ranges) -> Ranges:
        """From a Ranges message (uint64 bounds, so never negative).

        Raises ValueError for a range whose begin is after its end."""
        return cls.of((r.begin, r.end) for r in ranges.range)

    def to_proto(self) -> pb.Ranges:
        """A Ranges message with the normalized ranges, in order."""
        return pb.Ranges(range=[pb.Range(begin=b, end=e) for b, e in self._r])

    # -- queries ----------------------------------------------------------
    @property
    def ranges(self) -> tuple[tuple[int, int], ...]:
        """The normalized (begin, end) pairs, inclusive, ascending."""
        return self._r

    def count(self) -> int:
        """How many numbers are held."""
        return sum(e - b + 1 for b, e in self._r)

    def ports(self) -> Iterator[int]:
        """Every number held, ascending (lazily: [0-2**64-1] is fine to start)."""
        for b, e in self._r:
            yield from range(b, e + 1)

    def __contains__(self, value: object) -> bool:
        """`8080 in ranges`: one number held."""
        if not isinstance(value, int):
            return False
        i = bisect.bisect_right(self._r, (value, MAX + 1)) - 1
        return i >= 0 and self._r[i][0] <= value <= self._r[i][1]

    def contains(self, other: Ranges) -> bool:
        """True when every number of `other` is held here (other ⊆ self); an
        empty `other` is contained in anything."""
        mine = self._r
        if not other._r:
            return True
        if not mine:
            return False
        i = 0
        n = len(mine)
        for b, e in other._r:
            while i < n and mine[i][1] < b:
                i += 1
            if i == n or mine[i][0] > b or mine[i][1] < e:
                return False
        return True

    def pick(self, n: int, rng: random.Random) -> list[int]:
        """`n` distinct numbers chosen uniformly at random among those held, in
        the order drawn (Marathon picks random offered ports for hostPort 0).

        Raises ValueError when fewer than `n` are held or `n` is negative."""
        total = self.count()
        if n < 0 or n > total:
            raise ValueError(f"cannot pick {n} of the {total} numbers in {self}")
        starts: list[int] = []
        acc = 0
        for b, e in self._r:
            starts.append(acc)
            acc += e - b + 1
        out = []
        for index in rng.sample(range(total), n):
            i = bisect.bisect_right(starts, index) - 1
            out.append(self._r[i][0] + index - starts[i])
        return out

    # -- set operations -----------------------------------------------------
    def __or__(self, other: Ranges) -> Ranges:
        """The union."""
        if not other._r:
            return self
        if not self._r:
            return other
        return Ranges(_normalize(self._r + other._r))

    def __sub__(self, other: Ranges) -> Ranges:
        """What is held here and not in `other` (never fails)."""
        if not other._r or not self._r:
            return self
        out: list[tuple[int, int]] = []
        theirs = other._r
        j = 0
        m = len(theirs)
        for b, e in self._r:
            while j < m and theirs[j][1] < b:
                j += 1
            k = j
            while k < m and theirs[k][0] <= e:
                tb, te = theirs[k]
                if tb > b:
                    out.append((b, tb - 1))
                b = te + 1
                if b > e:
                    break
                k += 1
            if b <= e:
                out.append((b, e))
        return Ranges(tuple(out))

    def __and__(self, other: Ranges) -> Ranges:
        """The intersection."""
        return self - (self - other)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Ranges) and self._r == other._r

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self._r)
        return self._hash

    def __bool__(self) -> bool:
        return bool(self._r)

    def __repr__(self) -> str:
        return f"Ranges({self})"

    def __str__(self) -> str:
        """parse()'s syntax: "[31000-32000,40000-40100]", "[8080]", "[]"."""
        return "[" + ",".join(f"{b}-{e}" if b != e else f"{b}" for b, e in self._r) + "]"


EMPTY = Ranges()
