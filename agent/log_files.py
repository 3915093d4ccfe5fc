"""Reading a task's log files while its executor writes and rotates them.

The executor (executor/stdio.py) appends to `stdout` and, at the size cap,
renames it to `stdout.1` (and `.1` to `.2`, ...) before starting a new
`stdout`. A reader therefore follows a *name*, as `tail -F`: it keeps its
open file until that file has been rotated away *and* read to its end, then
continues at the start of the new file. A file that shrank in place
(truncated) is read again from its start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ROTATED = re.compile(r"\.(\d+)$")


def rotated_files(path: Path) -> list[Path]:
    """The rotated files of `path` that exist, oldest first."""
    found = []
    for candidate in path.parent.glob(path.name + ".*"):
        m = _ROTATED.search(candidate.name)
        if m and candidate.name == f"{path.name}.{m.group(1)}":
            found.append((int(m.group(1)), candidate))
    return [p for _, p in sorted(found, reverse=True)]


def tail_offset(data: bytes, lines: int) -> int:
    """Where the last `lines` lines of `data` start (a final newline ends the
    last line rather than starting an empty one)."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    pos = end
    for _ in range(lines):
        pos = data.rfind(b"\n", 0, pos)
        if pos < 0:
            return 0
    return pos + 1


def history(path: Path, tail: int) -> tuple[bytes, int]:
    """What to send before following `path`: (bytes from its rotated files,
    offset to start at in `path`). `tail` 0: everything still kept."""
    old = b"".join(_read(p) for p in rotated_files(path))
    if not tail:
        return old, 0
    current = _read(path)
    start = tail_offset(old + current, tail)
    if start >= len(old):
        return b"", start - len(old)
    return old[start:], 0


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


class FollowedFile:
    """Reads `path` as it grows, across rotation (see the module docstring)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self._file = None

    def read(self, limit: int = 1 << 20) -> bytes:
        if self._file is None:
            try:
                self._file = open(self.path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                return b""  # not written yet, or in the middle of a rotation
            self._file.seek(self.offset)
        data = self._file.read(limit)
        if data:
            return data
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return b""
        ours = os.fstat(self._file.fileno()).st_ino
        if current.st_ino != ours:
            # Rotated away, so final now: what was appended since the read
            # above first, then on to the file written after it.
            rest = self._file.read(limit)
            if rest:
                return rest
            self._file.close()
            self._file = None
            self.offset = 0
            newer = self._successor(ours)
            if newer is not None:
                try:
                    self._file = open(newer, "rb")  # noqa: SIM115
                except FileNotFoundError:
                    self._file = None
            return self.read(limit)
        if current.st_size < self._file.tell():
            self._file.seek(0)  # truncated in place
        return b""

    def _successor(self, inode: int) -> Path | None:
        """The file written after the one with `inode`, which was rotated:
        the next newer rotated file, or None for the live one. Our file gone
        altogether (rotated past the files kept): the oldest one kept."""
        chain = [*rotated_files(self.path), self.path]  # oldest first
        for i, candidate in enumerate(chain[:-1]):
            try:
                if os.stat(candidate).st_ino == inode:
                    return chain[i + 1] if i + 1 < len(chain) - 1 else None
            except FileNotFoundError:
                continue
        return chain[0] if len(chain) > 1 else None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
