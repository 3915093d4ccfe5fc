"""Bearer tokens of the HTTP APIs (the apps service's REST and Docker APIs,
the master's /api/*): who a token names.

The tokens file (`--tokens FILE`, JSON or YAML) holds only hashes:

    {"tokens": [{"principal": "admin", "sha256": "<hex of sha256(token)>"}, ...]}

A token is any string a client sends as `Authorization: Bearer T` or, as
Marathon's DC/OS clients do, `Authorization: token=T` (common/principals.py
reads the header). Matching hashes the presented token and compares it with
every entry's hash with hmac.compare_digest (constant time per entry, every
entry tried), so neither the file nor timing gives a token away.

`Tokens.from_file(path)` loads; `.reload()` re-reads it (the daemons call it
on SIGHUP with the access rules) and keeps the old entries when the new file
is bad. `create(path, principal)` makes a new random token, appends its hash
to the file (creating it, mode 0600) and returns the token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from juggler.common import logs

__all__ = ["INVALID", "Token", "Tokens", "TokensError", "create", "digest", "parse"]

# What an HTTP server says to a token that matches no entry (401).
INVALID = ("the token is not valid: ask for a new one (juggler token create PRINCIPAL "
           "--tokens FILE, then SIGHUP the daemons that read FILE)")

log = logs.get("tokens")

_HEX = frozenset("0123456789abcdef")


class TokensError(ValueError):
    """A tokens file that cannot be read or is not of the format above; the
    message names the file and the entry."""


@dataclass(frozen=True)
class Token:
    principal: str
    sha256: bytes     # the 32 bytes of sha256(token)


def digest(token: str) -> str:
    """sha256 of the token's UTF-8 bytes, as 64 lowercase hex digits."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse(text: str, where: str = "tokens file") -> tuple[Token, ...]:
    """The entries of a tokens file's text (JSON or YAML: YAML is a superset
    of JSON). Raises TokensError naming `where` and the entry at fault: not a
    mapping with a "tokens" list, an entry without a non-empty "principal",
    a "sha256" that is not 64 hex digits."""
    try:
        raw: Any = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as e:
        raise TokensError(f"{where}: not JSON or YAML: {e}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict) or not isinstance(raw.get("tokens", []), list):
        raise TokensError(f'{where}: expected {{"tokens": [{{"principal": NAME, '
                          f'"sha256": HEX}}, ...]}}')
    out = []
    for i, entry in enumerate(raw.get("tokens", [])):
        at = f"{where}: tokens[{i}]"
        if not isinstance(entry, dict):
            raise TokensError(f"{at}: expected a mapping with principal and sha256")
        if "token" in entry:
            raise TokensError(f"{at}: holds a token in clear; keep only its sha256 "
                              f"(juggler token create, or: printf %s TOKEN | sha256sum)")
        principal, hexed = entry.get("principal"), entry.get("sha256")
        if not isinstance(principal, str) or not principal:
            raise TokensError(f"{at}: principal must be a non-empty string")
        if (not isinstance(hexed, str) or len(hexed) != 64
                or not set(hexed.lower()) <= _HEX):
            raise TokensError(f"{at} ({principal}): sha256 must be 64 hex digits "
                              "(sha256 of the token)")
        out.append(Token(principal, bytes.fromhex(hexed)))
    return tuple(out)


class Tokens:
    """The tokens of one file (or given entries), looked up by token."""

    def __init__(self, entries: tuple[Token, ...] = (), path: Path | None = None) -> None:
        self.entries = entries
        self.path = path

    @classmethod
    def from_file(cls, path: str | Path | None) -> Tokens | None:
        """The file's tokens; None for no path. Raises TokensError for a file
        missing, unreadable or malformed."""
        if not path:
            return None
        p = Path(path)
        return cls(_read(p), p)

    def reload(self) -> bool:
        """Re-read the file (SIGHUP). True when it was read; on a bad file,
        logs why and keeps the entries it had (False)."""
        if self.path is None:
            return False
        try:
            self.entries = _read(self.path)
        except TokensError as e:
            log.error("tokens file not reloaded; keeping the previous tokens", error=str(e))
            return False
        log.info("tokens reloaded", path=str(self.path), count=len(self.entries))
        return True

    def lookup(self, token: str) -> str | None:
        """The principal of `token`, or None. Every entry is compared (no
        early exit), each in constant time."""
        if not token:
            return None
        presented = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self.entries:
            if hmac.compare_digest(presented, entry.sha256) and found is None:
                found = entry.principal
        return found


def _read(path: Path) -> tuple[Token, ...]:
    try:
        text = path.read_text()
    except OSError as e:
        raise TokensError(f"tokens file {path}: {e.strerror or e}") from None
    return parse(text, f"tokens file {path}")


def create(path: str | Path, principal: str) -> str:
    """A new random token for `principal` (64 hex digits, 256
    bits); its hash is added to the tokens file `path` (created 0600 when
    missing; rewritten as JSON). Raises TokensError for a bad existing file
    or an empty principal, OSError when it cannot be written."""
    if not principal:
        raise TokensError("a token needs a principal")
    p = Path(path)
    entries: list[dict[str, str]] = []
    if p.exists():
        entries = [{"principal": t.principal, "sha256": t.sha256.hex()} for t in _read(p)]
    token = secrets.token_hex(32)
    entries.append({"principal": principal, "sha256": digest(token)})
    temporary = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"tokens": entries}, f, indent=2)
        f.write("\n")
    os.replace(temporary, p)
    return token
