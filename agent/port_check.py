"""Which host-network tasks listen on ports they were not given. Pure.

As Mesos's `network/ports` isolator: a task on the host's network shares the
host's ports with every other task there, and the ports resources the master
gave it are only a promise unless someone checks. The agent (agent/port_watch.py)
reads, every --container-ports-watch-interval seconds, the TCP sockets in LISTEN
state of its network namespace and which task's processes hold them; this module
decides, from that, which tasks to kill:

- only host-network tasks are checked (a bridge or none task has a network
  namespace of its own: its ports are its own);
- a task listening on a port that is not one of its "ports" resources violates,
  when the port is in the agent's "ports" resource (--check-agent-port-range-only,
  the default here) or, with the check on every port, whatever the port;
- "listening" is a TCP socket in LISTEN state or a UDP socket bound and not
  connected (a server's), except a UDP port in the kernel's ephemeral range
  (net.ipv4.ip_local_port_range): there the kernel binds clients' sockets too,
  and one cannot be told from a server's (Mesos's isolator checks TCP only);
- one violation per task, naming every port it should not hold, sorted.

Source of the rule: Mesos's network ports isolator documentation
(mesos.apache.org/documentation/latest/isolators/network-ports): "If a task is
found to be listening on a port that has not been allocated to it, the task will
be killed", with Mesos's --check_agent_port_range_only limiting the check to the
agent's ports resource. Mesos's default checks every port; juggler's default is the
agent's range only (ports outside it are nobody's resource: a task may serve an
admin port there without asking). Differences written down in the README.

`parse_proc_net` reads the kernel's /proc/net/{tcp,udp}{,6} tables (format:
Documentation/networking/proc_net_tcp.rst; udp's is the same): "sl local_address
rem_address st ... uid timeout inode", addresses as hex IP:hex port, st 0A is
TCP_LISTEN, 07 (TCP_CLOSE) an unconnected UDP socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from juggler.common.ranges import Ranges

Key = tuple[str, str]  # (framework id, task id)

TCP_LISTEN = 0x0A  # include/net/tcp_states.h
TCP_CLOSE = 0x07  # what an unconnected UDP socket shows
NO_PORTS = Ranges()

WHY = ("juggler's agent kills a host-network task listening on an agent port it was not "
       "given, as Mesos's network/ports isolator")


@dataclass(frozen=True)
class Violation:
    """`key`'s task listens on `ports` (sorted, (port, protocol)) outside `allowed`,
    its ports resources. `message` is what its framework reads."""

    key: Key
    ports: tuple[tuple[int, str], ...]
    allowed: Ranges

    @property
    def message(self) -> str:
        numbers = ", ".join(f"{p}/udp" if proto == "udp" else str(p) for p, proto in self.ports)
        given = str(self.allowed) if self.allowed else "(it has none)"
        if len(self.ports) == 1:
            head = f"port {numbers}, which is not one of its ports resources"
        else:
            head = f"ports {numbers}, which are not among its ports resources"
        return f"task {self.key[1]} listens on {head} {given} ({WHY})"


def violations(agent_ports: Ranges, allocated: Mapping[Key, Ranges],
               listening: Mapping[Key, Iterable[tuple[int, str]]], *,
               agent_range_only: bool = True, ephemeral: Ranges = NO_PORTS
               ) -> list[Violation]:
    """The tasks to kill, ordered by key.

    `agent_ports`: the agent's "ports" resource. `allocated`: each host-network
    task's "ports" resources (tasks on other networks must not be in it: a key of
    `listening` not in `allocated` is not checked). `listening`: per task, the
    (port, protocol) pairs its processes listen on, protocol "tcp" or "udp".
    `agent_range_only`: only ports inside `agent_ports` count (Mesos's
    --check_agent_port_range_only). `ephemeral`: the kernel's ephemeral ports,
    where a UDP port does not count. Raises nothing."""
    out: list[Violation] = []
    for key in sorted(listening):
        if key not in allocated:
            continue
        allowed = allocated[key]
        bad = sorted({(port, proto) for port, proto in listening[key]
                      if port not in allowed and (not agent_range_only or port in agent_ports)
                      and not (proto == "udp" and port in ephemeral)})
        if bad:
            out.append(Violation(key, tuple(bad), allowed))
    return out


def parse_proc_net(text: str, protocol: str = "tcp") -> dict[int, int]:
    """The listening sockets of one /proc/net/tcp, tcp6 (`protocol` "tcp") or
    udp, udp6 ("udp") table: socket inode -> local port. Rows not listening (TCP:
    not LISTEN; UDP: connected to a remote port), with inode 0 (a socket being torn
    down) or that do not parse are skipped (the kernel's format has no escapes; a
    row cut short by a concurrent change is dropped, the next scan sees it).
    Raises nothing."""
    out: dict[int, int] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10:
            continue
        try:
            port = int(fields[1].rsplit(":", 1)[1], 16)
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            state = int(fields[3], 16)
            inode = int(fields[9])
        except (IndexError, ValueError):
            continue
        listens = (state == TCP_LISTEN if protocol == "tcp"
                   else state == TCP_CLOSE and remote_port == 0)
        if listens and inode:
            out[inode] = port
    return out


def socket_inode(link: str) -> int | None:
    """The inode of an fd's link text "socket:[12345]"; None for any other file."""
    if link.startswith("socket:[") and link.endswith("]"):
        try:
            return int(link[8:-1])
        except ValueError:
            return None
    return None
