"""The network part of a task's check: its mode, CNI network name and port mappings. Pure.

Rules (issue 16's contract):
- container.network is NETWORK_NONE (or unset: the same), NETWORK_HOST or NETWORK_BRIDGE;
- container.network_name only with NETWORK_BRIDGE, and a name the CNI specification allows
  for a network: an ASCII letter or digit, then letters, digits, '_', '.' or '-';
- container.port_mappings only with NETWORK_HOST or NETWORK_BRIDGE (a task without a
  network of its own or the host's has no port to publish); in each mapping host_port and
  container_port are 1..65535, protocol is "tcp" (also when empty) or "udp", the host port is
  one of the task's "ports" resources (so the master books it, and no other task of the
  agent gets it), no (host_port, protocol) appears twice, and on NETWORK_HOST container_port
  equals host_port (the task binds the host's port itself; nothing is forwarded).

    problem(container, ports) -> (field, message) | None
"""

from __future__ import annotations

import re

from juggler.common.ranges import Ranges
from juggler.v1 import common_pb2

N = common_pb2.NetworkMode
MODES = {N.NETWORK_MODE_UNSPECIFIED, N.NETWORK_NONE, N.NETWORK_HOST, N.NETWORK_BRIDGE}
PROTOCOLS = ("tcp", "udp")
# CNI spec (SPEC.md, "Network configuration": name).
_CNI_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def problem(container: common_pb2.ContainerInfo, ports: Ranges) -> tuple[str, str] | None:
    """The first thing wrong with the network of a task whose "ports" resources are
    `ports`, as (field, message) (field: the proto path, e.g. "container.port_mappings[1]";
    message without the task's name), or None when all is well (rules: module docstring)."""
    mode = container.network
    if mode not in MODES:
        return ("container.network", f"container.network {mode} is not a network mode "
                "(NETWORK_NONE, NETWORK_HOST or NETWORK_BRIDGE)")
    if container.network_name:
        if mode != N.NETWORK_BRIDGE:
            return ("container.network_name", f"container.network_name "
                    f"{container.network_name!r} needs container.network NETWORK_BRIDGE")
        if not _CNI_NAME.match(container.network_name):
            return ("container.network_name", f"container.network_name "
                    f"{container.network_name!r} is not a CNI network name (a letter or "
                    "digit, then letters, digits, '_', '.' or '-')")
    if not container.port_mappings:
        return None
    if mode not in (N.NETWORK_HOST, N.NETWORK_BRIDGE):
        return ("container.port_mappings", "port mappings need container.network "
                "NETWORK_HOST or NETWORK_BRIDGE (NETWORK_NONE has no port to publish)")
    seen: set[tuple[int, str]] = set()
    for i, m in enumerate(container.port_mappings):
        field = f"container.port_mappings[{i}]"
        what = f"{field} (host_port {m.host_port}, container_port {m.container_port})"
        protocol = m.protocol or "tcp"
        if protocol not in PROTOCOLS:
            return (f"{field}.protocol", f"{what}: protocol {m.protocol!r} is not tcp or udp")
        if not 1 <= m.host_port <= 65535:
            return (f"{field}.host_port", f"{what}: host_port must be 1-65535 (pick one of the "
                    "offer's ports for an any-port mapping)")
        if not 1 <= m.container_port <= 65535:
            return (f"{field}.container_port", f"{what}: container_port must be 1-65535")
        if m.host_port not in ports:
            return (f"{field}.host_port", f"{what}: host port {m.host_port} is not one of the "
                    f"task's ports resources {ports} (add it to resources \"ports\")")
        if mode == N.NETWORK_HOST and m.container_port != m.host_port:
            return (f"{field}.container_port", f"{what}: on NETWORK_HOST the container port "
                    "is the host port (nothing is forwarded): make them equal")
        if (m.host_port, protocol) in seen:
            return (f"{field}.host_port", f"{what}: host port {m.host_port}/{protocol} is "
                    "mapped twice")
        seen.add((m.host_port, protocol))
    return None
