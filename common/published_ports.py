"""A container's published ports, as Docker has them: `-p`, `-P`, `--expose`,
HostConfig.PortBindings, and the host ports a run was given. Pure: no I/O.

Parsing (the docker CLI's, docker/go-connections nat.ParsePortSpec and
docker/cli's --expose, with their error texts; checked against the real
`docker` 28 client in tests/integration/test_publish_vs_docker_cli.py):

    -p CONTAINER[/PROTO]                 any host port (from the agent's offer)
    -p HOST:CONTAINER[/PROTO]            that host port
    -p IP:HOST:CONTAINER, IP::CONTAINER  IP must be 0.0.0.0 (or empty)
    -p H1-H2:C1-C2                       ranges of the same length, port by port
    --expose C[-C2][/PROTO]              exposed, published only with -P

PROTO is tcp (default) or udp; Docker's sctp is refused, naming it (a
task's PortMapping is tcp or udp, as Marathon's). A host port range for one
container port (Docker: "any one port of the range") and a host IP other
than 0.0.0.0 are refused with a message saying so: the `portmap` CNI plugin
forwards the port on every address of the agent.

The service's model (ContainerConfig.ports): a list of bindings
{"containerPort", "protocol", "hostPort" (0: any), "hostIp"}; `published()`
adds, with -P (ContainerConfig.publish_all), one "any" binding for each
exposed port (`--expose`, the image's EXPOSE) not bound already. With
--network none nothing is published (juggler warns as Docker does for host:
"Published ports are discarded when using host network mode"). With
--network host, `-p HOST[:CONTAINER]` reserves HOST as the task's port (Docker
discards it with that warning; juggler's agents kill a host-network task
listening on an agent port it does not hold, agent/port_watch.py), and the
warning is given only when CONTAINER differs from HOST: it cannot be remapped.

Placement (`assign`): a fixed host port must be free in the offer (it is
part of the run's resources, container_tasks.needed); every "any" binding
gets a distinct port picked at random from the offer's other free ports
(Ranges.pick, as Marathon's hostPort 0), on every start, as Docker picks an
ephemeral port again at each start.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from juggler.common.ranges import Ranges

PROTOCOLS = ("tcp", "udp")
ANY_IPS = ("", "0.0.0.0")
HOST_DISCARDED = "Published ports are discarded when using host network mode"
NONE_DISCARDED = "Published ports are discarded when using none network mode"
_DIGITS = re.compile(r"^[0-9]+$")


class PortSpecError(ValueError):
    """A `-p`/`--expose` value or a PortBindings entry that cannot be taken;
    str() is Docker's message where Docker has one."""


@dataclass(frozen=True)
class PortBinding:
    """One published port: `container_port`/`protocol` on `host_port` (0:
    any, picked at each start) of `host_ip` ("" or "0.0.0.0": all)."""

    container_port: int
    protocol: str = "tcp"
    host_port: int = 0
    host_ip: str = ""

    @property
    def key(self) -> str:
        """Docker's port key: "80/tcp"."""
        return f"{self.container_port}/{self.protocol}"

    def record(self) -> dict[str, Any]:
        return {"containerPort": self.container_port, "protocol": self.protocol,
                "hostPort": self.host_port, "hostIp": self.host_ip}

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> PortBinding:
        return cls(int(r["containerPort"]), str(r.get("protocol") or "tcp"),
                   int(r.get("hostPort") or 0), str(r.get("hostIp") or ""))


# -- the docker CLI's syntax -----------------------------------------------------------

def _port_range(text: str) -> tuple[int, int]:
    """Go's nat.ParsePortRange: "80" or "80-90", each 0..65535. Raises
    PortSpecError with Go's strconv words."""
    if not text:
        raise PortSpecError("empty string specified for ports")
    start_text, sep, end_text = text.partition("-")
    bounds = []
    for part in ((start_text, end_text.split("-")[0]) if sep else (text,)):
        if not _DIGITS.match(part):
            raise PortSpecError(f'strconv.ParseUint: parsing "{part}": invalid syntax')
        if int(part) > 65535:
            raise PortSpecError(f'strconv.ParseUint: parsing "{part}": value out of range')
        bounds.append(int(part))
    start, end = bounds[0], bounds[-1]
    if end < start:
        raise PortSpecError(f"invalid range specified for port: {text}")
    return start, end


def _split_proto(text: str) -> tuple[str, str]:
    """nat.SplitProtoPort: "80/udp" → ("udp", "80"); no protocol: tcp."""
    parts = text.split("/")
    if not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_publish(text: str) -> list[PortBinding]:
    """One `-p` value → its bindings (host_port 0: any). Raises
    PortSpecError with the docker CLI's messages ("invalid containerPort: x",
    "invalid hostPort: x", "invalid IP address: x", "invalid proto: x", "no
    port specified: x<empty>", "invalid ranges specified for container and
    host Ports: C and H"), and juggler's for what it refuses (sctp, a host
    IP other than 0.0.0.0, a host port range for one container port)."""
    parts = text.split(":")
    if len(parts) == 1:
        ip, host, container = "", "", parts[0]
    elif len(parts) == 2:
        ip, host, container = "", parts[0], parts[1]
    else:
        ip, host, container = ":".join(parts[:-2]), parts[-2], parts[-1]
    proto, container = _split_proto(container)
    if ip.startswith("["):
        ip = ip.strip("[]")
    if ip and not _is_ip(ip):
        raise PortSpecError(f"invalid IP address: {ip}")
    if not container:
        raise PortSpecError(f"no port specified: {text}<empty>")
    try:
        start, end = _port_range(container)
    except PortSpecError:
        raise PortSpecError(f"invalid containerPort: {container}") from None
    host_start = host_end = 0
    if host:
        try:
            host_start, host_end = _port_range(host)
        except PortSpecError:
            raise PortSpecError(f"invalid hostPort: {host}") from None
        if end - start != host_end - host_start and end != start:
            raise PortSpecError(f"invalid ranges specified for container and host Ports: "
                                f"{container} and {host}")
    proto = proto.lower()
    if proto not in (*PROTOCOLS, "sctp"):
        raise PortSpecError(f"invalid proto: {proto}")
    if host and host_start != host_end and start == end:
        raise PortSpecError(f"juggler cannot publish a host port range for one container "
                            f"port ({text}): give one host port, or none for any")
    out = []
    for i in range(end - start + 1):
        binding = PortBinding(start + i, proto, host_start + i if host else 0, ip)
        check(binding)
        out.append(binding)
    return out


def parse_expose(text: str) -> list[tuple[int, str]]:
    """One `--expose` value → [(port, protocol)]. Raises PortSpecError with
    the docker CLI's messages."""
    if ":" in text:
        raise PortSpecError(f"invalid port format for --expose: {text}")
    proto, port = _split_proto(text)
    try:
        start, end = _port_range(port)
    except PortSpecError as e:
        raise PortSpecError(f"invalid range format for --expose: {text}, error: {e}") from None
    return [(p, proto.lower()) for p in range(start, end + 1)]


def check(b: PortBinding) -> None:
    """What juggler can publish. Raises PortSpecError."""
    if b.protocol not in PROTOCOLS:
        raise PortSpecError(f"juggler cannot publish {b.protocol} ports ({b.key}): tcp and "
                            "udp only")
    if not 1 <= b.container_port <= 65535:
        raise PortSpecError(f"invalid containerPort: {b.container_port}")
    if not 0 <= b.host_port <= 65535:
        raise PortSpecError(f"invalid hostPort: {b.host_port}")
    if b.host_ip not in ANY_IPS:
        raise PortSpecError(f"juggler cannot publish on host IP {b.host_ip} ({b.key}): the "
                            "port is forwarded on every address of the agent; use 0.0.0.0 "
                            "or leave the IP out")


# -- Docker's JSON ------------------------------------------------------------------------

def to_docker(bindings: Iterable[PortBinding],
              exposed: Iterable[tuple[int, str]] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Config.ExposedPorts, HostConfig.PortBindings) as the docker CLI sends
    them: every published port is exposed; "any" is HostPort ""."""
    exposed_ports: dict[str, Any] = {}
    port_bindings: dict[str, list[dict[str, str]]] = {}
    for b in bindings:
        exposed_ports[b.key] = {}
        port_bindings.setdefault(b.key, []).append(
            {"HostIp": b.host_ip, "HostPort": str(b.host_port) if b.host_port else ""})
    for port, proto in exposed:
        exposed_ports.setdefault(f"{port}/{proto}", {})
    return exposed_ports, port_bindings


def _key(key: str) -> tuple[int, str]:
    port, _, proto = str(key).partition("/")
    if not _DIGITS.match(port):
        raise PortSpecError(f"invalid port specification: {key!r}")
    return int(port), (proto or "tcp").lower()


def from_docker(port_bindings: Any) -> list[PortBinding]:
    """HostConfig.PortBindings ({"80/tcp": [{"HostIp": "", "HostPort":
    "8080"}]}) → bindings (HostPort "" or "0": any). Raises PortSpecError."""
    if not port_bindings:
        return []
    if not isinstance(port_bindings, dict):
        raise PortSpecError("HostConfig.PortBindings: not a JSON object")
    out = []
    for key, hosts in port_bindings.items():
        port, proto = _key(key)
        for host in hosts or [{}]:
            if not isinstance(host, dict):
                raise PortSpecError(f"HostConfig.PortBindings[{key!r}]: not a list of objects")
            text = str(host.get("HostPort") or "")
            if text and not _DIGITS.match(text):
                if "-" in text:
                    raise PortSpecError(f"juggler cannot publish a host port range for one "
                                        f"container port ({text}:{key}): give one host "
                                        "port, or none for any")
                raise PortSpecError(f"invalid hostPort: {text}")
            binding = PortBinding(port, proto, int(text or 0), str(host.get("HostIp") or ""))
            check(binding)
            out.append(binding)
    fixed = [(b.host_port, b.protocol) for b in out if b.host_port]
    for twice in {f for f in fixed if fixed.count(f) > 1}:
        raise PortSpecError(f"Bind for 0.0.0.0:{twice[0]} failed: port is already allocated "
                            f"(published twice, {twice[1]})")
    return out


def exposed_from_docker(exposed: Any) -> list[str]:
    """Config.ExposedPorts ({"80/tcp": {}}) → ["80/tcp"]. Raises PortSpecError."""
    if not exposed:
        return []
    if not isinstance(exposed, dict):
        raise PortSpecError("ExposedPorts: not a JSON object")
    out = []
    for key in exposed:
        port, proto = _key(key)
        if not 1 <= port <= 65535:
            raise PortSpecError(f"invalid containerPort: {port}")
        out.append(f"{port}/{proto}")
    return out


# -- what a run publishes, and where -------------------------------------------------------

def published(network: str, bindings: Iterable[PortBinding], exposed: Iterable[str],
              publish_all: bool) -> list[PortBinding]:
    """The bindings a run of a container on `network` publishes: its
    bindings, and with `publish_all` one "any" binding for each exposed port
    ("80/tcp") that has none; none on the none network. On the host network
    each `-p HOST[:CONTAINER]` reserves HOST (`-p PORT`: PORT) as the task's
    port, bound as it is (container port == host port, Marathon's host-mode
    ports), so that the agent's port watch leaves it alone; -P reserves
    nothing there (Docker discards published ports on the host network)."""
    if network == "none":
        return []
    if network == "host":
        reserved: dict[tuple[int, str], PortBinding] = {}
        for b in bindings:
            port = b.host_port or b.container_port
            reserved.setdefault((port, b.protocol), PortBinding(port, b.protocol, port, b.host_ip))
        return list(reserved.values())
    out = list(bindings)
    if publish_all:
        bound = {b.key for b in out}
        for key in exposed:
            port, proto = _key(key)
            if proto in PROTOCOLS and key not in bound:
                out.append(PortBinding(port, proto))
                bound.add(key)
    return out


def fixed_ports(bindings: Iterable[PortBinding]) -> Ranges:
    """The fixed host ports (one port serves a tcp and a udp binding)."""
    return Ranges.single(*{b.host_port for b in bindings if b.host_port})


def assign(bindings: list[PortBinding], free: Ranges,
           rng: random.Random) -> list[int] | None:
    """A host port for each binding, in order: fixed ones as they are, the
    others distinct ports picked at random from `free` (the offer's ports)
    less the fixed ones. None when the offer cannot give them all."""
    fixed = fixed_ports(bindings)
    if not free.contains(fixed):
        return None
    wanted = sum(1 for b in bindings if not b.host_port)
    try:
        picked = iter((free - fixed).pick(wanted, rng)) if wanted else iter(())
    except ValueError:
        return None
    return [b.host_port or next(picked) for b in bindings]


def docker_ports(assigned: Iterable[Mapping[str, Any]], exposed: Iterable[str] = ()
                 ) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports of a running container: {"80/tcp": [{"HostIp":
    "0.0.0.0", "HostPort": "31005"}], "90/tcp": None} (exposed, not
    published: null, as Docker)."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for a in assigned:
        b = PortBinding.from_record(a)
        entries = out.get(b.key) or []
        entries.append({"HostIp": "0.0.0.0", "HostPort": str(b.host_port)})
        out[b.key] = entries
    for key in exposed:
        out.setdefault(key, None)
    return out


def summary_ports(assigned: Iterable[Mapping[str, Any]], exposed: Iterable[str] = ()
                  ) -> list[dict[str, Any]]:
    """GET /containers/json's Ports: [{"IP": "0.0.0.0", "PrivatePort": 80,
    "PublicPort": 31005, "Type": "tcp"}], and [{"PrivatePort": 90, "Type":
    "tcp"}] for a port exposed and not published."""
    out: list[dict[str, Any]] = []
    seen = set()
    for a in assigned:
        b = PortBinding.from_record(a)
        seen.add(b.key)
        out.append({"IP": "0.0.0.0", "PrivatePort": b.container_port,
                    "PublicPort": b.host_port, "Type": b.protocol})
    for key in exposed:
        if key not in seen:
            port, proto = _key(key)
            out.append({"PrivatePort": port, "Type": proto})
    return out


def discarded_warning(network: str, port_bindings: Any) -> str:
    """dockerd's create warning for PortBindings on the host network (juggler
    adds the same for none); "" when there is none to give. On the host
    network juggler keeps `-p HOST:CONTAINER` as a reservation of HOST
    (`published`), so it warns only when a CONTAINER port differs from its
    HOST port (the port cannot be remapped there). `port_bindings` is
    HostConfig.PortBindings or a list of `-p` values."""
    if not port_bindings:
        return ""
    if network == "host":
        try:
            bindings = (from_docker(port_bindings) if isinstance(port_bindings, dict) else
                        [b for text in port_bindings for b in parse_publish(text)])
        except PortSpecError:
            return HOST_DISCARDED
        if all(b.host_port in (0, b.container_port) for b in bindings):
            return ""
    return {"host": HOST_DISCARDED, "none": NONE_DISCARDED}.get(network, "")


def unavailable(fixed: Ranges, agents: Iterable[tuple[str, Ranges, Ranges]]) -> str:
    """Why no agent of `agents` ((name, total ports, allocated ports)) can
    give the host ports `fixed` now; "" when one can (or there is none to
    ask). Docker fails a start at once when a published host port is taken
    ("Bind for 0.0.0.0:8080 failed: port is already allocated"); juggler
    does when every agent that has the port has it allocated to a task, and
    says so when no agent offers the port at all."""
    agents = list(agents)
    if not fixed or not agents:
        return ""
    if any((total - allocated).contains(fixed) for _, total, allocated in agents):
        return ""
    offered = [(total, allocated) for _, total, allocated in agents if total.contains(fixed)]
    if not offered:
        ranges = ", ".join(sorted({f"{name} {total or '[]'}" for name, total, _ in agents}))
        what = f"port {fixed}" if fixed.count() == 1 else f"ports {fixed} together"
        return (f"no agent offers host {what.replace('[', '').replace(']', '')} (agents' "
                f"ports: {ranges}; an agent's --resources ports:[…] sets them)")
    total, allocated = offered[0]
    taken = next(p for p in fixed.ports() if p not in total - allocated)
    return f"Bind for 0.0.0.0:{taken} failed: port is already allocated"
