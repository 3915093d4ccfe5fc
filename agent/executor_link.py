"""Who may speak for a task on the agent's executor socket.

The socket (`<work dir>/executor-link/agent.sock`: the socket 0600 in a 0700
directory, both the agent's) lets only processes of the agent's user in: a
task running as another user cannot connect at all. A task running as root,
on the host's filesystem, can; so the agent reads its peer's credentials
(SO_PEERCRED, taken by the kernel at connect(2), not claimed by the peer)
and takes a `hello` only from the executor it started for that task: the
process whose pid it recorded at launch (agent/checkpoint.py executor.pid,
read again after an agent restart), whose hello names that same pid.
Anything else is refused: the connection closed before any update of it is
read, logged as "executor link refused" and counted in
`juggler_agent_executor_links_refused_total`.

`refusal` is the pure decision; `peer_credentials` reads the kernel's.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from prometheus_client import Counter

SOCKET_DIR = "executor-link"
SOCKET_NAME = "agent.sock"

REFUSED = Counter("juggler_agent_executor_links_refused_total",
                  "Connections to the agent's executor socket refused: the peer is not "
                  "the executor of the task it named")


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket | None) -> Peer | None:
    """The connecting process's pid, uid and gid as the kernel recorded them
    at connect(2) (SO_PEERCRED, unix(7)); None when `sock` is not a Unix
    socket the kernel can answer for."""
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def refusal(peer: Peer | None, agent_uid: int, hello_pid: int,
            executor_pid: int | None) -> str | None:
    """Why a `hello` from `peer` (claiming `hello_pid`) cannot speak for a task
    whose executor this agent started as `executor_pid` (None: it started
    none for that task, or it is gone); None when it may."""
    if peer is None:
        return "the peer's credentials cannot be read"
    if peer.uid != agent_uid:
        return f"the peer runs as uid {peer.uid}, not the agent's {agent_uid}"
    if executor_pid is None:
        return "this agent runs no executor for that task"
    if peer.pid != executor_pid:
        return f"the peer (pid {peer.pid}) is not that task's executor (pid {executor_pid})"
    if hello_pid != peer.pid:
        return f"the hello names pid {hello_pid}, not the peer's {peer.pid}"
    return None
