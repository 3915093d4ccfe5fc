"""Finding the processes a test started among every process on the host.

Another test suite may run on the same machine at the same time, with the same
tasks: a command line such as `sleep 1007.5` is no way to tell this test's
processes from that suite's. A test therefore puts a marker only it knows in
its tasks' command lines (`sleep {marker()}`) and looks for that, or looks
among the children of a process it started itself.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any


def marker() -> str:
    """A number of seconds (1,000 to 2,000, with nine random decimals) for a task's
    `sleep`: a command-line argument no other process on this host has."""
    return f"{1000 + secrets.randbelow(1000)}.{secrets.randbelow(10**9):09d}"


def processes_with(text: str) -> list[int]:
    """Pids of the processes whose command line (arguments joined by spaces) holds
    `text`: `sh -c 'exec sleep 1234.5…'` before its exec as well as the `sleep`."""
    want = text.encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ")
        except OSError:
            continue
        if want in cmdline:
            found.append(int(pid))
    return found


def the_process(command: str) -> int | None:
    """The pid of the one process whose command line is `command` (its arguments
    joined by spaces); None while there is none, or several. A task's
    `sh -c 'exec sleep 1234.5…'` is `sleep 1234.5…` only once its exec is done
    (in the middle of it, its command line reads empty for a moment): wait on this
    before taking its pid."""
    found = [pid for pid in processes_with(command) if " ".join(argv_of(pid)) == command]
    return found[0] if len(found) == 1 else None


def children_of(pid: int) -> list[int]:
    """Pids of the children of process `pid` (none once it is gone)."""
    found: list[int] = []
    try:
        for thread in Path(f"/proc/{pid}/task").iterdir():
            found += [int(c) for c in (thread / "children").read_text().split()]
    except OSError:  # gone, or one of its threads ended while we looked
        pass
    return found


def argv_of(pid: int) -> list[str]:
    """The command line of process `pid` ([] once it is gone, or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0")[:-1]]


def terminate(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop `process` as a test server is stopped: SIGTERM, then SIGKILL if it
    has not exited within `timeout` seconds; reaped either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)
