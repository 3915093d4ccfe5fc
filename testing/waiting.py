"""Waiting on a condition with a deadline; free ports on loopback, and who listens on one."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(*widths: int) -> list[int]:
    """For each width w, the first of w consecutive TCP ports on 127.0.0.1
    that nothing listens on right now; no two blocks overlap. `juggler up
    --masters 3 --port P` takes P, P+1 and P+2, so separate free_port() calls
    can hand a block's second port to another flag.

    Raises AssertionError when no such blocks are found in 100 tries."""
    held: list[socket.socket] = []
    firsts: list[int] = []
    try:
        for width in widths:
            for _ in range(100):
                probe = socket.socket()
                probe.bind(("127.0.0.1", 0))
                first = int(probe.getsockname()[1])
                block = [probe]
                try:
                    for port in range(first + 1, first + width):
                        s = socket.socket()
                        block.append(s)
                        s.bind(("127.0.0.1", port))
                except OSError:
                    for s in block:
                        s.close()
                    continue
                held.extend(block)
                firsts.append(first)
                break
            else:
                raise AssertionError(f"no {width} free ports in a row on 127.0.0.1")
        return firsts
    finally:
        for s in held:
            s.close()


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05,
             what: str = "") -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Raises AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def listens(pid: int, port: int) -> bool:
    """Whether process `pid` has a TCP socket listening on `port`: a server is
    started on a free port, which another process (another test suite on this
    host) may take first; then something answers there, but not our server."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        tables = [Path(f"/proc/{pid}/net/{t}").read_text() for t in ("tcp", "tcp6")]
    except OSError:
        return False
    for table in tables:
        for row in table.splitlines()[1:]:
            fields = row.split()
            # local address (hex ip:port), state (0A: LISTEN), ..., inode
            if (int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
                    and fields[9] in inodes):
                return True
    return False
