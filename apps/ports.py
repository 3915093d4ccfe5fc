"""An app's ports: service ports, host ports, and what a task gets. Pure: no I/O.

Marathon's model (docs "Ports", "Networking"), as the apps service applies it:

- **Service ports** name an app's port cluster-wide, for load balancers
  (`/v2/tasks` in text/plain, marathon-lb): `portDefinitions[i].port` on
  host networking, `container.portMappings[i].servicePort` on container
  networks. A 0 is assigned from [SERVICE_PORT_MIN, SERVICE_PORT_MAX]
  (Marathon's --local_port_min/--local_port_max defaults, 10000 and 20000),
  the lowest free one; a port the app's previous version had at the same
  index is kept (so that a PUT of the same JSON is not a change); a fixed
  one that another app uses is refused (422). `assign_service_ports`.
- **Host ports** are ports of the agent, resources of the offer: on host
  networking one per port definition, any port of the offer unless
  `requirePorts` (then the port definition's own number, Marathon's
  requirePorts); on a container network one per port mapping that has a
  hostPort (0: any). Any is chosen at random from the offer's ports not
  otherwise taken (Marathon's PortsMatcher picks randomly too).
  `host_port_requests`, `ports_misfit`, `pick_host_ports`.
- **The task** gets its host ports as the `ports` resource, a port mapping
  per host port and protocol (host networking: container port = host port),
  and `PORT0…`, `PORT`, `PORTS`, `PORT_<NAME>` (common/port_env.py) plus,
  on container networks, `PORT_<containerPort>` (Marathon's
  EnvironmentHelper). `task_port_mappings`, `container_ports`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace

from juggler.apps.definition_model import AppDefinition, InvalidDefinition
from juggler.common.ranges import Ranges
from juggler.v1 import common_pb2 as pb

SERVICE_PORT_MIN = 10000
SERVICE_PORT_MAX = 20000


def host_networking(d: AppDefinition) -> bool:
    return d.networks[0].mode == "host" if d.networks else True


def service_ports(d: AppDefinition) -> list[int]:
    """The app's service ports, in declaration order (0: not assigned yet)."""
    if host_networking(d):
        return [p.port for p in d.port_definitions]
    return [m.service_port for m in d.port_mappings]


def _with_service_ports(d: AppDefinition, ports: Sequence[int]) -> AppDefinition:
    if host_networking(d):
        return replace(d, port_definitions=tuple(
            replace(p, port=n) for p, n in zip(d.port_definitions, ports, strict=True)))
    return replace(d, port_mappings=tuple(
        replace(m, service_port=n) for m, n in zip(d.port_mappings, ports, strict=True)))


def _path(d: AppDefinition, i: int) -> str:
    if host_networking(d):
        return f"/portDefinitions({i})/port"
    return f"/container/portMappings({i})/servicePort"


def assign_service_ports(d: AppDefinition, previous: AppDefinition | None,
                         used: dict[int, str]) -> AppDefinition:
    """`d` with every 0 service port assigned. `previous`: the app's current
    definition (its ports are kept by index); `used`: service port → app id
    of every other app. Raises InvalidDefinition (422) when a fixed port is
    another app's, or when the range is exhausted."""
    ports = service_ports(d)
    before = service_ports(previous) if previous is not None else []
    errors = []
    for i, port in enumerate(ports):
        if port and port in used and used[port] != d.id:
            errors.append({"path": _path(d, i), "errors": [
                f"Requested service port {port} conflicts with a service port in use by "
                f"app {used[port]}"]})
    if errors:
        raise InvalidDefinition(errors)
    taken = {p for p, owner in used.items() if owner != d.id} | {p for p in ports if p}
    out = list(ports)
    free = (p for p in range(SERVICE_PORT_MIN, SERVICE_PORT_MAX + 1) if p not in taken)
    for i, port in enumerate(out):
        if port:
            continue
        keep = before[i] if i < len(before) else 0
        if keep and keep not in taken:
            out[i] = keep
        else:
            out[i] = next((p for p in free if p not in taken), 0)
            if not out[i]:
                raise InvalidDefinition([{"path": _path(d, i), "errors": [
                    f"no free service port left in {SERVICE_PORT_MIN}-{SERVICE_PORT_MAX}"]}])
        taken.add(out[i])
    return _with_service_ports(d, out) if out != ports else d


def used_service_ports(apps: Iterable[AppDefinition]) -> dict[int, str]:
    """Service port → app id, over `apps`."""
    return {p: d.id for d in apps for p in service_ports(d) if p}


# -- host ports -------------------------------------------------------------------------


def host_port_requests(d: AppDefinition) -> list[int]:
    """One entry per host port a task of `d` needs, in declaration order:
    the port number, or 0 for any port of the offer."""
    if host_networking(d):
        return [p.port if d.require_ports else 0 for p in d.port_definitions]
    return [m.host_port for m in d.port_mappings if m.host_port is not None]


def port_names(d: AppDefinition) -> list[str]:
    """The name of each host port of `host_port_requests` ("" unnamed)."""
    if host_networking(d):
        return [p.name or "" for p in d.port_definitions]
    return [m.name or "" for m in d.port_mappings if m.host_port is not None]


def _of(ports: Iterable[int]) -> Ranges:
    return Ranges.of([(p, p) for p in ports])


def ports_misfit(d: AppDefinition, available: Ranges) -> str:
    """Why `available` (an offer's ports not yet taken) cannot give a task
    of `d` its host ports; "" when it can."""
    wanted = host_port_requests(d)
    fixed = sorted({p for p in wanted if p})
    missing = [p for p in fixed if not available.contains(_of([p]))]
    if missing:
        return f"ports: needs {', '.join(map(str, missing))}, offer has {available or '[]'}"
    anyport = sum(1 for p in wanted if not p)
    left = (available - _of(fixed)).count() if fixed else available.count()
    if left < anyport:
        return f"ports: needs {anyport} more, offer has {left} ({available or '[]'})"
    return ""


def pick_host_ports(d: AppDefinition, available: Ranges, rng: random.Random) -> list[int]:
    """The host ports for one task of `d` out of `available`, in the order of
    host_port_requests: fixed ones as asked, 0s chosen at random among the
    rest. Raises ValueError when they do not fit (ports_misfit says why)."""
    why = ports_misfit(d, available)
    if why:
        raise ValueError(why)
    wanted = host_port_requests(d)
    fixed = [p for p in wanted if p]
    rest = available - _of(fixed) if fixed else available
    chosen = iter(rest.pick(sum(1 for p in wanted if not p), rng))
    return [p or next(chosen) for p in wanted]


def container_ports(d: AppDefinition, host_ports: Sequence[int]) -> list[int]:
    """The port inside the task's network namespace of each host port (and
    of each mapping without a host port on a container network, after
    those): host networking: the host port itself; a mapping's
    containerPort, or its host port when the containerPort is 0."""
    if host_networking(d):
        return list(host_ports)
    out, it = [], iter(host_ports)
    for m in d.port_mappings:
        if m.host_port is not None:
            host = next(it)
            out.append(m.container_port or host)
    return out


def host_port_index(d: AppDefinition, index: int) -> int | None:
    """Where the host port of service port `index` is in a task's host
    ports (None: that mapping publishes none)."""
    if host_networking(d):
        return index
    published = [i for i, m in enumerate(d.port_mappings) if m.host_port is not None]
    return published.index(index) if index in published else None


def index_port(d: AppDefinition, index: int, host_ports: Sequence[int]) -> int:
    """The port a health check's portIndex names, as seen inside the task's
    network namespace (where the executor probes): host networking: the
    host port; a container network: the mapping's containerPort (or its
    host port when 0). Raises IndexError for an index past the ports."""
    if host_networking(d):
        return host_ports[index]
    m = d.port_mappings[index]
    at = host_port_index(d, index)
    return m.container_port or (host_ports[at] if at is not None else 0)


def task_port_mappings(d: AppDefinition, host_ports: Sequence[int]) -> list[pb.PortMapping]:
    """ContainerInfo.port_mappings: one per host port and protocol ("udp,tcp"
    gives two), named as the app names them."""
    names = port_names(d)
    if host_networking(d):
        protocols = [p.protocol for p in d.port_definitions]
    else:
        protocols = [m.protocol for m in d.port_mappings if m.host_port is not None]
    out = []
    for host, inside, protocol, name in zip(host_ports, container_ports(d, host_ports),
                                            protocols, names, strict=True):
        for proto in sorted(protocol.split(",")):
            out.append(pb.PortMapping(host_port=host, container_port=inside,
                                      protocol=proto, name=name))
    return out


def network_of(d: AppDefinition) -> tuple[int, str]:
    """(ContainerInfo.network, network_name) for the app's network."""
    net = d.networks[0] if d.networks else None
    if net is None or net.mode == "host":
        return pb.NETWORK_HOST, ""
    if net.mode == "container/bridge":
        return pb.NETWORK_BRIDGE, ""
    return pb.NETWORK_BRIDGE, net.name or ""
