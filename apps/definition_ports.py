"""Marathon's networking fields → `Network` and `PortMapping` values. Pure: no I/O.

`parse_networking(o)` reads an app's `networks`, `container.portMappings`
and their pre-1.5 forms `container.docker.network` and
`container.docker.portMappings` (Marathon's docs "Networking", "Migrating to
the 1.5 Networking API"), recording every bad field in Marathon's 422 shape:

    networks            [{"mode": "host" | "container/bridge" | "container",
                          "name", "labels"}]; mode defaults to "container"
                        (Marathon's RAML); none given: [{"mode": "host"}]
    docker.network      "HOST" → host, "BRIDGE" → container/bridge; not
                        together with `networks` (Marathon's "must not specify
                        both container.docker.network and networks")
    portMappings        containerPort, hostPort, servicePort (0..65535),
                        protocol tcp | udp | udp,tcp (tcp,udp read as udp,tcp,
                        the spelling Marathon's clients know), name, labels;
                        hostPort left out: 0 ("any") on container/bridge, not
                        published on a named container network (Marathon);
                        container.portMappings wins over docker.portMappings
    host networking     no portMappings ("portMappings are not allowed with
                        host-networking", Marathon's AppValidation)

Where juggler differs from Marathon (on purpose): one network per app (a
task joins one network, ContainerInfo.network_name); a "container" network
needs its name (juggler has no --default_network_name); docker.network
"USER" and "NONE" are refused, with how to say it with `networks`; host
ports (and fixed service ports) must be unique within an app.
"""

from __future__ import annotations

from typing import Any

from juggler.apps.definition_fields import _Errors, _Obj
from juggler.apps.definition_model import NETWORK_MODES, Network, PortMapping

MAPPING_PROTOCOLS = ("tcp", "udp", "udp,tcp", "tcp,udp")
_LEGACY_NETWORKS = {"HOST": "host", "BRIDGE": "container/bridge"}


def _child(o: _Obj, key: str) -> _Obj | None:
    """The object at `key` when it is one (its own parser reports it when
    it is not: no error twice)."""
    value = o.raw(key)
    return _Obj(value, o.at(key), o.errors) if isinstance(value, dict) else None


def parse_networking(o: _Obj) -> tuple[tuple[Network, ...], tuple[PortMapping, ...]]:
    """The app's networks and port mappings (see the module's doc); bad
    fields are recorded in `o.errors` and read as the defaults."""
    container = _child(o, "container")
    docker = _child(container, "docker") if container is not None else None
    networks = _networks(o, docker)
    mode = networks[0].mode
    if container is not None and container.raw("portMappings") is not None:
        owner, key = container, "portMappings"
    elif docker is not None and docker.raw("portMappings") is not None:
        owner, key = docker, "portMappings"
    else:
        return networks, ()
    mappings = tuple(m for m in (_mapping(o.errors, path, item, mode)
                                 for path, item in owner.items(key)) if m)
    if mappings and mode == "host":
        owner.bad(key, "portMappings are not allowed with host-networking")
    names = [m.name for m in mappings if m.name is not None]
    if len(set(names)) != len(names):
        owner.bad(key, "Port names must be unique.")
    host = [(m.host_port, p) for m in mappings if m.host_port
            for p in m.protocol.split(",")]
    if len(set(host)) != len(host):
        owner.bad(key, "Host ports must be unique (per protocol).")
    service = [m.service_port for m in mappings if m.service_port]
    if len(set(service)) != len(service):
        owner.bad(key, "Service ports must be unique.")
    return networks, mappings


def _networks(o: _Obj, docker: _Obj | None) -> tuple[Network, ...]:
    legacy = docker.raw("network") if docker is not None else None
    if o.raw("networks") is not None and legacy is not None:
        o.errors.add(o.path, "must not specify both container.docker.network and networks")
    if legacy is not None and docker is not None:
        if legacy in _LEGACY_NETWORKS:
            return (Network(mode=_LEGACY_NETWORKS[legacy]),)
        docker.bad("network", 'must be "HOST" or "BRIDGE"; for a named network give '
                   '"networks": [{"mode": "container", "name": NAME}]'
                   if legacy in ("USER", "NONE") else 'must be "HOST" or "BRIDGE"')
        return (Network(),)
    items = o.items("networks")
    if not items:
        return (Network(),)
    if len(items) > 1:
        o.bad("networks", f"juggler joins a task to one network: give one (got {len(items)})")
    net = _network(o.errors, *items[0])
    return (net or Network(),)


def _network(errors: _Errors, path: str, item: Any) -> Network | None:
    if not isinstance(item, dict):
        errors.add(path, 'must be an object {"mode", "name", "labels"}')
        return None
    before = errors.count
    n = _Obj(item, path, errors)
    mode = n.choice("mode", NETWORK_MODES, "container")
    name = n.string("name", nonempty=True)
    labels = n.string_map("labels")
    if mode == "host" and (name is not None or labels):
        n.bad("name" if name is not None else "labels",
              "host networks may not have names or labels")
    elif mode == "container/bridge" and name is not None:
        n.bad("name", "container/bridge networks may not have names (the agent's "
              "built-in bridge network is used)")
    elif mode == "container" and name is None and errors.count == before:
        n.bad("name", "a container network needs the name of the network to join "
              "(juggler has no --default_network_name)")
    if errors.count != before or mode is None:
        return None
    return Network(mode=mode, name=name, labels=labels)


def _mapping(errors: _Errors, path: str, item: Any, mode: str) -> PortMapping | None:
    if not isinstance(item, dict):
        errors.add(path, 'must be an object {"containerPort", "hostPort", "servicePort", '
                   '"protocol", "name", "labels"}')
        return None
    before = errors.count
    m = _Obj(item, path, errors)
    host_default = None if mode == "container" else 0
    protocol = m.choice("protocol", MAPPING_PROTOCOLS, "tcp") or "tcp"
    pm = PortMapping(
        container_port=m.number("containerPort", 0, 0, 65535, integer=True),
        host_port=m.number("hostPort", host_default, 0, 65535, integer=True),
        service_port=m.number("servicePort", 0, 0, 65535, integer=True),
        protocol="udp,tcp" if protocol == "tcp,udp" else protocol,
        name=m.port_name(),
        labels=m.string_map("labels"),
    )
    if pm.host_port is None and pm.container_port == 0 and errors.count == before:
        m.bad("containerPort", "must be given (1-65535) when no hostPort is")
    return pm if errors.count == before else None


def render_networks(networks: tuple[Network, ...]) -> list[dict[str, Any]]:
    """`networks` as Marathon ≥ 1.5 renders them."""
    out = []
    for n in networks:
        item: dict[str, Any] = {"mode": n.mode}
        if n.name is not None:
            item["name"] = n.name
        if n.labels:
            item["labels"] = dict(n.labels)
        out.append(item)
    return out


def render_port_mappings(mappings: tuple[PortMapping, ...]) -> list[dict[str, Any]]:
    """`container.portMappings` as Marathon ≥ 1.5 renders them (hostPort left
    out when not published)."""
    out = []
    for m in mappings:
        item: dict[str, Any] = {"containerPort": m.container_port}
        if m.host_port is not None:
            item["hostPort"] = m.host_port
        item.update(servicePort=m.service_port, protocol=m.protocol)
        if m.name is not None:
            item["name"] = m.name
        item["labels"] = dict(m.labels)
        out.append(item)
    return out
