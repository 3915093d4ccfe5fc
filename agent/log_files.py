"""Reading a task's log files while its executor writes and rotates them.

The executor (executor/stdio.py) appends to `stdout` and, at the size cap,
renames it to `stdout.1` (and `.1` to `.2`, ...) before a new `stdout` takes
the name, and deletes the oldest beyond the files kept. A reader therefore
follows a *position* in the stream (common/log_positions.py): it keeps its
open file until that file has been rotated away *and* read to its end, then
goes on with the file that holds the next position. When that position is no
longer kept — the files after it were deleted before this reader got to them:
it fell behind — it raises `LogGap` with the bytes lost, rather than skip on
quietly. Starting later than the oldest byte (the task wrote more than is
kept before anyone looked) is no gap: the reader starts at the oldest kept.
A file that shrank in place (truncated) is read again from its start.
"""

from __future__ import annotations

import os
from pathlib import Path

from juggler.common import log_positions
from juggler.common.log_positions import KeptFile, tail_offset

__all__ = ["FollowedFile", "LogGap", "first_position", "tail_offset"]


class LogGap(Exception):
    """`lost` bytes from `position` on were rotated away before they were read."""

    def __init__(self, path: Path, position: int, lost: int) -> None:
        self.path, self.position, self.lost = path, position, lost
        super().__init__(f"{path.name}: {lost} bytes from position {position} were rotated "
                         "away before they were read")


def first_position(path: Path, tail: int) -> int:
    """Where a reader that starts now begins: the oldest byte kept, or (`tail`
    > 0) the first of the last `tail` lines kept."""
    files = log_positions.kept(path)
    try:
        if not files:
            return 0
        if not tail:
            return files[0].start
        data = b""
        for kf in reversed(files):  # newest first, until enough lines are read
            kf.file.seek(0)
            data = kf.file.read(kf.size) + data
            if data.count(b"\n") > tail:
                break
        return files[-1].end - len(data) + tail_offset(data, tail)
    finally:
        log_positions.close_all(files)


class FollowedFile:
    """Reads `path`'s stream from `position` as it grows, across rotation
    (see the module docstring); `position` is the next byte's."""

    def __init__(self, path: Path, position: int = 0) -> None:
        self.path = path
        self.position = position
        self._file: KeptFile | None = None

    def read(self, limit: int = 1 << 20) -> bytes:
        """The next bytes (b"": none yet). Raises LogGap."""
        for _ in range(4):  # a few files' ends in one call at most
            if self._file is None and not self._open():
                return b""
            assert self._file is not None
            data = self._file.file.read(limit)
            if data:
                self.position += len(data)
                return data
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                return b""  # in the middle of a rotation
            if current.st_ino == self._file.inode:
                if current.st_size < self._file.file.tell():
                    self._file.file.seek(0)  # truncated in place
                    self.position = self._file.start
                return b""
            # Rotated away, so final now: what was appended since the read
            # above first, then on to the file that holds the next position.
            rest = self._file.file.read(limit)
            if rest:
                self.position += len(rest)
                return rest
            self._next()
        return b""

    def _open(self) -> bool:
        files = log_positions.kept(self.path)
        place = log_positions.locate([(f.start, f.size) for f in files], self.position)
        if place is None:
            return False
        chosen = files[place.index]
        files.remove(chosen)
        log_positions.close_all(files)
        if place.lost:
            chosen.close()
            raise LogGap(self.path, self.position, place.lost)
        chosen.file.seek(place.skip)
        self._file = chosen
        self.position = chosen.start + place.skip
        return True

    def _next(self) -> None:
        """Our file is done: the next `_open` finds the one after it. Without
        recorded starts, positions are counted afresh at each look, so ours is
        found again by its inode; when it was deleted already, reading goes on
        at the oldest file kept and a gap, if any, goes unseen."""
        assert self._file is not None
        done, self._file = self._file, None
        done.close()
        if done.recorded:
            return  # self.position is exact: _open finds what follows
        files = log_positions.kept(self.path)
        try:
            ours = [f for f in files if f.inode == done.inode]
            if ours:
                self.position = ours[0].end
            elif files:
                self.position = files[0].start  # all that can be done: a gap is not seen
        finally:
            log_positions.close_all(files)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
