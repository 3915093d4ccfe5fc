"""Agent attributes: operator-given names and values (`rack:r1;zone:a`), passed
on in offers and matched by placement constraints (Mesos's agent attributes,
though text only: a number is kept as the text it was written as).

Names are 1 to 128 characters of [A-Za-z0-9_.-] (not starting with '.' or '-');
values 1 to 256 printable characters without ';' (the separator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
MAX_VALUE = 256


class InvalidAttribute(ValueError):
    """An attribute that breaks the rules above; the message names it."""


def check(attributes: Mapping[str, str]) -> None:
    """Raises InvalidAttribute for the first bad name or value (in name order)."""
    for name in sorted(attributes):
        value = attributes[name]
        if not _NAME.match(name):
            raise InvalidAttribute(
                f"attribute name {name!r} is not valid: use 1 to 128 letters, digits, "
                "'_', '.' and '-', not starting with '.' or '-'")
        if not value or len(value) > MAX_VALUE or ";" in value or not value.isprintable():
            raise InvalidAttribute(
                f"attribute {name}: value {value!r} is not valid: use 1 to {MAX_VALUE} "
                "printable characters without ';'")


def parse(text: str) -> dict[str, str]:
    """`"rack:r1;zone:a"` → {"rack": "r1", "zone": "a"}; empty text → {}.

    Raises InvalidAttribute for an entry without ':', a name given twice, or a
    name or value that breaks the rules."""
    out: dict[str, str] = {}
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not sep:
            raise InvalidAttribute(f"attribute {part!r} is not NAME:VALUE")
        if name in out:
            raise InvalidAttribute(f"attribute {name!r} is given twice")
        out[name] = value
    check(out)
    return out


def render(attributes: Mapping[str, str]) -> str:
    """The inverse of parse: names in order, `name:value` joined by ';'."""
    return ";".join(f"{k}:{attributes[k]}" for k in sorted(attributes))
