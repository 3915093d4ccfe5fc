"""The environment a task with ports gets, as Marathon sets it.

Marathon's task environment (docs: "Task Environment Variables", Ports):
- PORT0 … PORT{N-1}: the task's host ports by index, in the order the app
  (or `-p` flags) declared them; PORT is PORT0 when there is at least one;
- PORTS: every host port, comma-separated, in the same order;
- PORT_<NAME>: the host port of a port definition or mapping that has a name,
  the name upper-cased with every character outside [A-Z0-9_] made "_";
- HOST: the agent's hostname (Mesos's $HOST).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_NOT_ENV = re.compile(r"[^A-Z0-9_]")


def port_name_variable(name: str) -> str:
    """"http-api" → "PORT_HTTP_API" (upper case; characters outside
    [A-Z0-9_] become "_")."""
    return "PORT_" + _NOT_ENV.sub("_", name.upper())


def port_environment(host_ports: Sequence[int], host: str,
                     names: Sequence[str] = ()) -> dict[str, str]:
    """{"PORT0": "31005", "PORT": "31005", "PORTS": "31005,31007", "PORT_HTTP": …,
    "HOST": host} for `host_ports` (host port numbers, in declaration order)
    and `names` (the same length or shorter; "" for an unnamed port).

    With no ports: only HOST (Marathon sets HOST for every task).
    Raises ValueError when `names` is longer than `host_ports`."""
    if len(names) > len(host_ports):
        raise ValueError(f"{len(names)} port names for {len(host_ports)} ports")
    env = {"HOST": host}
    for i, port in enumerate(host_ports):
        env[f"PORT{i}"] = str(port)
    if host_ports:
        env["PORT"] = str(host_ports[0])
        env["PORTS"] = ",".join(str(p) for p in host_ports)
    for name, port in zip(names, host_ports, strict=False):
        if name:
            env[port_name_variable(name)] = str(port)
    return env
