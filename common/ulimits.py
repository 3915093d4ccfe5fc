"""Resource limits (setrlimit(2)) as Docker's `--ulimit name=soft[:hard]`. Pure.

Names and rules are go-units' ParseUlimit (what the docker CLI and dockerd
use): a name from `NUMBERS`, a soft and an optional hard value (the hard one
defaults to the soft one), decimal integers, -1 for unlimited (RLIM_INFINITY),
soft ≤ hard unless hard is unlimited. Docker's `as` is left out as go-units
leaves it out. One intended difference: a negative value other than -1 is
refused (go-units takes it and the kernel reads it as a huge number).

A task carries its limits in the label `juggler.ulimits`, comma-separated
(`nofile=1024:2048,core=0`); a name given twice keeps the last (as the
docker CLI's --ulimit does). The executor's child sets them just before it
drops its privileges and execs (container/rlimits.py); a task that sets none
keeps the agent's own limits (Docker: containerd's, unless the daemon has
--default-ulimit).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

UNLIMITED = -1

# asm-generic/resource.h numbering (x86_64 and arm64 alike), go-units' table.
NUMBERS: dict[str, int] = {
    "cpu": 0, "fsize": 1, "data": 2, "stack": 3, "core": 4, "rss": 5, "nproc": 6,
    "nofile": 7, "memlock": 8, "locks": 10, "sigpending": 11, "msgqueue": 12, "nice": 13,
    "rtprio": 14, "rttime": 15,
}
_INT64_MAX = 2**63 - 1
_VALUE = re.compile(r"^[+-]?[0-9]+$")


class UlimitError(ValueError):
    """A --ulimit that cannot be set; str(): go-units' message where it has one."""


@dataclass(frozen=True)
class Ulimit:
    """One limit: Docker's name, soft and hard values (-1: unlimited)."""

    name: str
    soft: int
    hard: int

    def text(self) -> str:
        """Docker's form, "nofile=1024:2048" (go-units Ulimit.String)."""
        return f"{self.name}={self.soft}:{self.hard}"

    def docker(self) -> dict[str, int | str]:
        """HostConfig.Ulimits's item."""
        return {"Name": self.name, "Hard": self.hard, "Soft": self.soft}


def _value(text: str, whole: str) -> int:
    if not _VALUE.match(text):
        raise UlimitError(f"invalid ulimit value {text!r} in {whole!r}: give a whole number "
                          "or -1 for unlimited")
    value = int(text)
    if value < UNLIMITED or value > _INT64_MAX:
        raise UlimitError(f"invalid ulimit value {text!r} in {whole!r}: give a number from "
                          f"0 to {_INT64_MAX}, or -1 for unlimited")
    return value


def check(name: str, soft: int, hard: int) -> Ulimit:
    """A Ulimit from its parts (HostConfig.Ulimits's Name, Soft, Hard), checked
    as `parse` checks text. Raises UlimitError."""
    whole = f"{name}={soft}:{hard}"
    if name not in NUMBERS:
        raise UlimitError(f"invalid ulimit type: {name} (known: {', '.join(sorted(NUMBERS))})")
    soft, hard = _value(str(soft), whole), _value(str(hard), whole)
    if hard != UNLIMITED:
        if soft == UNLIMITED:
            raise UlimitError("ulimit soft limit must be less than or equal to hard limit: "
                              f"soft: -1 (unlimited), hard: {hard}")
        if soft > hard:
            raise UlimitError("ulimit soft limit must be less than or equal to hard limit: "
                              f"{soft} > {hard}")
    return Ulimit(name, soft, hard)


def parse(text: str) -> Ulimit:
    """`name=soft[:hard]` (go-units ParseUlimit). Raises UlimitError."""
    name, sep, values = text.partition("=")
    if not sep:
        raise UlimitError(f"invalid ulimit argument: {text}")
    if name not in NUMBERS:
        raise UlimitError(f"invalid ulimit type: {name} (known: {', '.join(sorted(NUMBERS))})")
    parts = values.split(":")
    if len(parts) > 2:
        raise UlimitError(f"too many limit value arguments - {values}, can only have up to "
                          "two, `soft[:hard]`")
    soft = _value(parts[0], text)
    hard = _value(parts[1], text) if len(parts) == 2 else soft
    return check(name, soft, hard)


def merge(limits: Iterable[Ulimit]) -> tuple[Ulimit, ...]:
    """One limit per name, the last given winning, in the order names first came."""
    by_name: dict[str, Ulimit] = {}
    for limit in limits:
        by_name[limit.name] = limit
    return tuple(by_name.values())


def parse_list(text: str) -> tuple[Ulimit, ...]:
    """The label's comma-separated list ("" → ()). Raises UlimitError."""
    return merge(parse(item.strip()) for item in text.split(",") if item.strip())


def label_value(limits: Iterable[Ulimit]) -> str:
    """The label's value for `limits` ("nofile=1024:2048,core=0:0")."""
    return ",".join(limit.text() for limit in merge(limits))
