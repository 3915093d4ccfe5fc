"""The agent's port watch: kills host-network tasks listening on ports they were not given.

Every `interval` seconds (--container-ports-watch-interval; 0 turns it off):

1. the tasks to check, read in the loop: host-network tasks not yet terminal
   whose executor started (they have a cgroup), with their "ports" resources;
2. in a thread: the TCP listeners and unconnected UDP sockets of /proc/net/tcp,
   udp, tcp6 and udp6 (the agent's own network namespace: the one its
   host-network tasks share), each task's processes from its cgroup
   (cgroup.procs), their sockets from /proc/<pid>/fd;
3. agent/port_check.py decides; each violating task gets an ev.LimitTask: the
   core kills it through its executor (SIGKILL at once) and reports TASK_FAILED
   with the violation as message (agent/state.py).

A UDP port in the kernel's ephemeral range is not counted (agent/port_check.py).
A process that left its task's cgroup is not seen. A task whose cgroup is gone
meanwhile counts as listening on nothing; a scan that fails (/proc unreadable)
is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from juggler.agent import events as ev
from juggler.agent.port_check import Violation, parse_proc_net, socket_inode, violations
from juggler.common import logs, task_states
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2

log = logs.get("juggler.agent.port_watch")
KILLS = Counter("juggler_agent_port_watch_kills_total",
                "Host-network tasks killed for listening on agent ports they were not given")
Key = tuple[str, str]

DEFAULT_INTERVAL = 10.0  # seconds (Mesos's --container_ports_watch_interval is 30)
# Mesos's reason for its network/ports isolator's kills, with state TASK_FAILED
# (a kill the framework asked for is TASK_KILLED); the message says why.
REASON = common_pb2.REASON_CONTAINER_LIMITATION


def host_listeners(proc: Path = Path("/proc")) -> dict[int, tuple[int, str]]:
    """Socket inode -> (port, "tcp" or "udp") of every TCP listener and unconnected
    UDP socket (v4 and v6) in this process's network namespace. A missing table
    (no IPv6) counts as empty."""
    out: dict[int, tuple[int, str]] = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        protocol = name[:3]
        with contextlib.suppress(FileNotFoundError):
            table = parse_proc_net((proc / "net" / name).read_text(), protocol)
            out.update((inode, (port, protocol)) for inode, port in table.items())
    return out


def ephemeral_ports(proc: Path = Path("/proc")) -> Ranges:
    """The kernel's ephemeral ports (net.ipv4.ip_local_port_range, "32768\t60999"
    by default): where it binds clients' sockets. Linux's default when unreadable."""
    try:
        low, high = (int(x) for x in
                     (proc / "sys/net/ipv4/ip_local_port_range").read_text().split())
        return Ranges.of([(low, high)])
    except (OSError, ValueError):
        return Ranges.of([(32768, 60999)])


def sockets_of(pid: int, proc: Path = Path("/proc")) -> set[int]:
    """The socket inodes `pid` holds open (none when it is gone meanwhile)."""
    out: set[int] = set()
    fd_dir = proc / str(pid) / "fd"
    try:
        names = os.listdir(fd_dir)
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return out
    for name in names:
        try:
            inode = socket_inode(os.readlink(fd_dir / name))
        except OSError:  # closed meanwhile
            continue
        if inode is not None:
            out.add(inode)
    return out


def scan(cgroups: Mapping[Key, str], proc: Path = Path("/proc")
         ) -> dict[Key, set[tuple[int, str]]]:
    """Per task (its cgroup name), the (port, protocol) pairs its processes listen on."""
    from juggler.container.cgroups import open_cgroup

    listeners = host_listeners(proc)
    out: dict[Key, set[tuple[int, str]]] = {}
    for key, name in cgroups.items():
        ports: set[tuple[int, str]] = set()
        try:
            pids = open_cgroup(name).pids() if listeners else []
        except OSError:  # the cgroup went away meanwhile: its task is ending
            pids = []
        for pid in pids:
            ports |= {listeners[i] for i in sockets_of(pid, proc) if i in listeners}
        out[key] = ports
    return out


class PortWatch:
    """Runs the watch for `agent` (agent/server.py's Agent) until cancelled."""

    def __init__(self, agent: Any, interval: float, agent_range_only: bool = True) -> None:
        self.agent = agent
        self.interval = interval
        self.agent_range_only = agent_range_only

    def _checked(self) -> tuple[dict[Key, str], dict[Key, Ranges]]:
        cgroups: dict[Key, str] = {}
        allocated: dict[Key, Ranges] = {}
        for key, task in self.agent.tasks.items():
            if (task.info.container.network != common_pb2.NETWORK_HOST or not task.cgroup
                    or task.exited or task_states.is_terminal(task.state)):
                continue
            cgroups[key] = task.cgroup
            allocated[key] = Resources.from_proto(task.info.resources).ports
        return cgroups, allocated

    async def check_once(self) -> list[Violation]:
        """One scan; the violating tasks are handed to the core to be killed."""
        cgroups, allocated = self._checked()
        if not cgroups:
            return []
        listening = await asyncio.to_thread(scan, cgroups)
        found = violations(self.agent.config.resources.ports, allocated, listening,
                           agent_range_only=self.agent_range_only,
                           ephemeral=ephemeral_ports())
        for v in found:
            log.warning("task listens on ports it was not given; killing it",
                        task_id=v.key[1], framework_id=v.key[0],
                        ports=",".join(str(p) for p, _ in v.ports), allowed=str(v.allowed))
            KILLS.inc()
            self.agent.handle(ev.LimitTask(v.key, REASON, v.message))
        return found

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except OSError as e:
                log.warning("port watch scan failed; next one in an interval", error=str(e))
