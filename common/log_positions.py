"""Where each of a task's log files starts in its stream, and what a reader
at a given position has lost.

A task's stdout is one stream of bytes; the executor (executor/stdio.py)
keeps it as a chain of files, `stdout.2`, `stdout.1`, `stdout` (oldest
first), and deletes the oldest at each rotation. A *position* is a byte's
offset in the stream since the task started. The executor records the
position of each file's first byte on the file itself, in the extended
attribute `user.juggler.start` (decimal ASCII), set before the file takes
its name: a reader that holds a file knows where it is in the stream
whatever the file is called by then, and a reader at position P that finds
the oldest file kept starting after P knows it lost that many bytes.

On a filesystem without user extended attributes the starts are unknown;
readers then count as if the oldest file kept started at 0, which is exact
until the first file is deleted (after that a gap cannot be measured).

`locate` is pure; `kept` reads the directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

START_XATTR = "user.juggler.start"
_ROTATED = re.compile(r"\.(\d+)$")


# -- pure ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a reader at some position goes on: file `index` of the chain,
    `skip` bytes into it, after `lost` bytes that are no longer kept."""

    index: int
    skip: int
    lost: int = 0


def locate(spans: list[tuple[int, int]], position: int) -> Place | None:
    """Where to read `position` among `spans`, the (start, size) of each file
    kept, oldest first, the live one last. None when nothing is kept yet.

    The file holding `position` (a file ending at it is done, unless it is the
    live one); a position before every file kept goes on at the oldest, after
    a gap of `lost` bytes; one past the end of the stream (a client's count
    from another run) goes on at the end."""
    if not spans:
        return None
    last = len(spans) - 1
    for i, (start, size) in enumerate(spans):
        if position < start + size or i == last:
            if position < start:
                return Place(i, 0, start - position)
            return Place(i, min(position - start, size))
    raise AssertionError("unreachable")  # the loop returns at the last span


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


# -- the files ------------------------------------------------------------------------


def mark_start(fd: int, start: int) -> bool:
    """Record on the file `fd` that its first byte is at `start`; False when
    its filesystem keeps no user extended attributes."""
    try:
        os.setxattr(fd, START_XATTR, str(start).encode())
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return False
        raise
    return True


def start_of(fd: int) -> int | None:
    """The position recorded on `fd` by mark_start, or None."""
    try:
        raw = os.getxattr(fd, START_XATTR)
    except OSError:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def chain(path: Path) -> list[Path]:
    """`path`'s rotated files that exist, oldest first, then `path` itself
    (whether it exists or not)."""
    found = []
    for candidate in path.parent.glob(path.name + ".*"):
        m = _ROTATED.search(candidate.name)
        if m and candidate.name == f"{path.name}.{m.group(1)}":
            found.append((int(m.group(1)), candidate))
    return [p for _, p in sorted(found, reverse=True)] + [path]


@dataclass
class KeptFile:
    """One open file of the chain: `start` is its first byte's position."""

    file: BinaryIO
    start: int
    size: int
    inode: int
    recorded: bool = True  # False: `start` is counted, not read from the file

    @property
    def end(self) -> int:
        return self.start + self.size

    def close(self) -> None:
        self.file.close()


def kept(path: Path, live_start: int | None = None) -> list[KeptFile]:
    """The files of `path`'s chain, open, oldest first; the caller closes
    them. Opened newest first: the executor renames a file only towards an
    older name, so a file that exists from the first open to the last is
    seen once at least (seen twice, it is kept once) while a rotation runs.
    Starts not recorded: counted back from `live_start` (the writer knows
    it), else as if the oldest started at 0."""
    files: dict[int, KeptFile] = {}
    unknown = False
    for name in reversed(chain(path)):
        f = _open_regular(name)
        if f is None:
            continue
        st = os.fstat(f.fileno())
        if st.st_ino in files:
            f.close()
            continue
        start = start_of(f.fileno())
        unknown = unknown or start is None
        files[st.st_ino] = KeptFile(f, start or 0, st.st_size, st.st_ino)
    ordered = list(files.values())
    if unknown:
        ordered.reverse()  # oldest first: the order of the names
        position = 0
        if live_start is not None and ordered:
            position = live_start - sum(kf.size for kf in ordered[:-1])
        for kf in ordered:
            kf.start, position = position, position + kf.size
            kf.recorded = False
        return ordered
    return sorted(ordered, key=lambda kf: kf.start)


def _open_regular(name: str | Path) -> BinaryIO | None:
    """`name` open for reading if it is a regular file; None when it is
    missing, a symlink, a FIFO or a device: the task can write its sandbox
    (as root, or as its user), and a reader as root must neither follow its
    links nor block on its FIFOs. Raises OSError for other failures."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def close_all(files: list[KeptFile]) -> None:
    for kf in files:
        with contextlib.suppress(OSError):
            kf.close()
