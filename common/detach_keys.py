"""Docker's detach keys: parsing `--detach-keys` / `detachKeys`, and finding
the sequence in what a client types. Pure; the CLI's attach (cli/terminal.py)
and the Docker Engine API's attach and exec (apps/docker_stream.py) share it."""

from __future__ import annotations

import re

DETACH_KEYS = b"\x10\x11"  # Ctrl-P Ctrl-Q, Docker's default

_CONTROL = re.compile(r"ctrl-[a-z@\[\\\]^_]")
_CONTROL_SIGNS = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse(spec: str) -> bytes:
    """Docker's detach-keys spec ("ctrl-p,ctrl-q", "a,ctrl-@", "DEL") as bytes
    (moby/term ToBytes): each comma-separated key one character, "DEL" or
    ctrl-<a-z @ [ \\ ] ^ _>, case-insensitive after "ctrl-"; "" → Ctrl-P
    Ctrl-Q. Raises ValueError with moby/term's message ("Unknown character:
    'ctrl-1'")."""
    if not spec:
        return DETACH_KEYS
    out = bytearray()
    for key in spec.split(","):
        if len(key) == 1:
            out.append(ord(key))
        elif key == "DEL":
            out.append(127)
        elif _CONTROL.fullmatch(key.lower()):
            ch = key[-1].lower()
            out.append(ord(ch) - ord("a") + 1 if ch.isalpha() else _CONTROL_SIGNS[ch])
        else:
            raise ValueError(f"Unknown character: '{key}'")
    return bytes(out)


class DetachScanner:
    """Finds the detach sequence in what a client sends. Bytes that may start
    the sequence are held until the next ones show whether they do; if not,
    they are passed on (as moby/term's escape proxy)."""

    def __init__(self, keys: bytes = DETACH_KEYS) -> None:
        self.keys = keys
        self.held = b""

    def feed(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to pass on, whether the sequence was completed)."""
        out = bytearray()
        for value in data:
            b = bytes([value])
            if self.keys.startswith(self.held + b):
                self.held += b
                if self.held == self.keys:
                    self.held = b""
                    return bytes(out), True
                continue
            out += self.held
            self.held = b""
            if self.keys.startswith(b):
                self.held = b
            else:
                out += b
        return bytes(out), False
