"""Identifiers: generation and validation."""

from __future__ import annotations

import re
import uuid

# Task ids are chosen by frameworks and end up in paths and hostnames.
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")


class InvalidId(ValueError):
    pass


def check(kind: str, value: str) -> str:
    if not _ID.match(value or ""):
        raise InvalidId(
            f"{kind} {value!r} is not valid: use 1 to 200 characters of letters, digits, "
            "'_', '.' and '-', not starting with '.' or '-'"
        )
    return value


def new(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4()}"
