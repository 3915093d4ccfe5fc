"""What `juggler up` checks before it starts anything: its ports, its Docker
socket and its work dir are nobody else's.

A second `juggler up` on a busy port used to start anyway: its agent joined
the running cluster, its own master crash-looped with the cause only in a log.
Now it refuses, naming the holder, and starts nothing.

Pure: `claims` (what an up would take, from its flags), `clashes` (ports
claimed twice by one up), `refusals` (the claims someone else holds, from what
the shell found). Shell: `listeners` (this network namespace's listening TCP
ports and their processes, from /proc/net/tcp{,6} socket inodes matched to
/proc/PID/fd links — the kernel's format in
Documentation/networking/proc_net_tcp.rst, parsed by agent/port_check.py),
`unix_listener` (who serves a unix socket, SO_PEERCRED), `describe`
(a process as "pid 1234 (juggler master --port 5050 …)") and `WorkDirLock`
(fcntl.flock on WORK/up.lock, held for up's lifetime, naming its pid);
`take` does all of it for up.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from juggler.agent.port_check import parse_proc_net, socket_inode

LOCK_NAME = "up.lock"


@dataclass(frozen=True)
class Claim:
    """One port `juggler up` would listen on, and for what ("master-1's gRPC
    port")."""

    port: int
    what: str


def claims(*, masters: int, port: int, metrics_port: int, apps: bool,
           apps_port: int) -> list[Claim]:
    """Every fixed TCP port an up with these flags listens on: each master's
    gRPC (port + i) and HTTP (metrics_port + i) ports, each apps service's REST
    port (apps_port + i) when `apps`. Agents and the local etcd take free
    ports (0); they are not claimed. Raises nothing."""
    out: list[Claim] = []
    for i in range(masters):
        name = "master" if masters == 1 else f"master-{i + 1}"
        out.append(Claim(port + i, f"{name}'s gRPC port"))
        out.append(Claim(metrics_port + i, f"{name}'s HTTP port (web UI, metrics)"))
    if apps:
        for i in range(masters):
            name = "the apps service" if masters == 1 else f"apps-{i + 1}"
            out.append(Claim(apps_port + i, f"{name}'s REST port"))
    return out


def clashes(wanted: Iterable[Claim]) -> list[str]:
    """Ports one up would give two of its own daemons (e.g. --port 5050
    --metrics-port 5051 --masters 3): one message each, by port. Raises nothing."""
    by_port: dict[int, list[str]] = {}
    for c in wanted:
        by_port.setdefault(c.port, []).append(c.what)
    return [f"port {p} would be both {' and '.join(whats)}"
            for p, whats in sorted(by_port.items()) if len(whats) > 1]


def refusals(wanted: Iterable[Claim], listening: Mapping[int, Iterable[str]]) -> list[str]:
    """One message per claimed port someone listens on: "port 5050, master's
    gRPC port, is in use by pid 1234 (juggler master …)". `listening`: port →
    its holders as `describe` names them (empty: the holder was not found, e.g.
    another user's process). Ordered as `wanted`. Raises nothing."""
    out = []
    for c in wanted:
        if c.port in listening:
            holders = "; ".join(listening[c.port]) or "a process this user cannot see"
            out.append(f"port {c.port}, {c.what}, is in use by {holders}")
    return out


# -- the shell ----------------------------------------------------------------------------

def _socket_owners(inodes: set[int]) -> dict[int, list[int]]:
    """socket inode → pids with an fd on it, for the wanted inodes only."""
    owners: dict[int, list[int]] = {}
    if not inodes:
        return owners
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.scandir(f"/proc/{entry.name}/fd")
        except OSError:
            continue   # gone, or not ours to read
        with fds:
            for fd in fds:
                try:
                    inode = socket_inode(os.readlink(fd.path))
                except OSError:
                    continue
                if inode in inodes:
                    owners.setdefault(inode, []).append(int(entry.name))
    return owners


def describe(pid: int) -> str:
    """"pid 1234 (juggler master --port 5050 …)": its command line, shortened
    to 80 characters, `python -m juggler.cli.main` written `juggler`."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid {pid}"
    words = [a.decode(errors="replace") for a in argv if a]
    if "juggler.cli.main" in words:
        words = ["juggler", *words[words.index("juggler.cli.main") + 1:]]
    elif words:
        words[0] = os.path.basename(words[0])
    line = " ".join(words)
    return f"pid {pid} ({line[:77] + '…' if len(line) > 80 else line})"


def listeners(ports: Iterable[int]) -> dict[int, list[str]]:
    """Of `ports`, those a TCP socket listens on in this network namespace
    (any address, IPv4 or IPv6): port → its holders (`describe`). Raises
    nothing (an unreadable table counts as empty)."""
    wanted = set(ports)
    by_inode: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        try:
            text = Path(f"/proc/net/{table}").read_text()
        except OSError:
            continue
        by_inode.update({i: p for i, p in parse_proc_net(text, "tcp").items() if p in wanted})
    owners = _socket_owners(set(by_inode))
    out: dict[int, list[str]] = {}
    for inode, port in by_inode.items():
        out.setdefault(port, [])
        for pid in owners.get(inode, []):
            text = describe(pid)
            if text not in out[port]:
                out[port].append(text)
    return out


def unix_listener(path: str) -> list[str] | None:
    """Who serves the unix socket `path` (`describe`), or None when nothing
    listens there (no file, or a stale one: connecting is refused). The server
    is the peer's SO_PEERCRED (unix(7): the credentials of the process that
    called listen), not /proc/net/unix's path: a server may bind a temporary
    name and rename it. Raises nothing."""
    import socket
    import struct

    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(path)
            creds = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                 struct.calcsize("3i"))
        except OSError:
            return None
    pid = struct.unpack("3i", creds)[0]
    return [describe(pid)] if pid > 0 else []


class WorkDirInUse(Exception):
    """Another live process holds the work dir's lock; the message names it."""


class WorkDirLock:
    """An exclusive flock on WORK/up.lock, which names its holder's pid; held
    until `release` (or the process ends: the kernel drops it, even on SIGKILL).
    The fd is close-on-exec: the daemons up starts do not inherit the lock."""

    def __init__(self, work: Path) -> None:
        """Take the lock. Raises WorkDirInUse naming the holder, OSError when
        the lock file cannot be made."""
        work.mkdir(parents=True, exist_ok=True)
        self.path = work / LOCK_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(self._fd, 64, 0).decode(errors="replace").strip()
            os.close(self._fd)
            holder = describe(int(text)) if text.isdigit() else "another process"
            raise WorkDirInUse(f"work dir {work} is in use by {holder} "
                               f"(it holds {self.path}); give another --work-dir") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def take(work: Path, *, masters: int, port: int, metrics_port: int, apps: bool,
         apps_port: int, docker_socket: str) -> tuple[WorkDirLock | None, list[str]]:
    """What `juggler up` does before starting anything: take the work dir's
    lock and check its ports (`claims`) and, with the apps service, its
    explicitly given Docker socket. (the lock, []) when all is free, else
    (None, why not — every reason found). A refused up makes nothing, not even
    its work dir. Raises nothing."""
    wanted = claims(masters=masters, port=port, metrics_port=metrics_port, apps=apps,
                    apps_port=apps_port)
    problems = clashes(wanted) or refusals(wanted, listeners(c.port for c in wanted))
    if apps and docker_socket:
        holders = unix_listener(docker_socket)
        if holders is not None:
            problems.append(f"docker socket {docker_socket} is in use by "
                            f"{'; '.join(holders) or 'a process this user cannot see'}")
    if problems and not work.exists():
        return None, problems
    try:
        lock = WorkDirLock(work)
    except WorkDirInUse as e:
        return None, [str(e), *problems]
    except OSError as e:
        return None, [f"work dir {work}: {e}", *problems]
    if problems:
        lock.release()
        return None, problems
    return lock, []
