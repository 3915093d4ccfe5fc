"""A container's network in Docker's JSON: the network a create asks for
(`network_mode`), its endpoint and address (`endpoints`, `network_settings`:
NetworkSettings of inspect and of the container list), and the ports shown
while it runs (`ports_now`). Pure: no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from juggler.apps.containers import Container
from juggler.apps.docker_errors import DockerError
from juggler.common import published_ports


def ports_now(c: Container, running: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """The host ports of its run and its exposed ports, while it runs (Docker
    clears NetworkSettings.Ports when a container stops)."""
    return (c.host_ports, c.config.exposed) if running else ([], [])


def endpoints(c: Container, running: bool) -> dict[str, Any]:
    """NetworkSettings.Networks: the container's network with its IP (while
    it runs); {} for none (Docker lists "none" with no address: juggler's
    containers on none have no endpoint to show)."""
    network = c.config.network or "none"
    if network == "none":
        return {}
    ip = c.ip_address if running else ""
    return {network: {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "",
                      "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": ip,
                      "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                      "GlobalIPv6PrefixLen": 0, "DriverOpts": None, "DNSNames": None}}


def network_settings(c: Container, running: bool) -> dict[str, Any]:
    """Docker's NetworkSettings: Ports (published host ports while it runs;
    an exposed port not published is null), and its IP on its network
    (TaskStatus.ip_addresses) at the top level too for "bridge", as Docker's."""
    networks = endpoints(c, running)
    bridge = networks.get("bridge") or {}
    return {"Bridge": "", "SandboxID": "", "SandboxKey": "",
            "Ports": published_ports.docker_ports(*ports_now(c, running)),
            "IPAddress": bridge.get("IPAddress", ""), "IPPrefixLen": 0, "Gateway": "",
            "MacAddress": "", "Networks": networks}


_NETWORK_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def network_mode(mode: str, publishing: bool = False) -> str:
    """Docker's NetworkMode → juggler's network: "none"; "host"; "bridge"
    (the agent's built-in CNI bridge); another name: the agent's CNI network
    of that name (--network-cni-config-dir; a start on an agent without it
    fails with the agent's message). "default" and "" (what the docker CLI
    sends without --network): "bridge" when ports are published (-p, -P),
    else "none" — juggler's default stays a network namespace with only lo
    (Docker's is bridge: an intended difference, so that a container that
    publishes nothing gets no address, veth or IPAM lease on its agent).
    Raises DockerError 400 for a mode juggler cannot join ("container:x") or
    a name that is no CNI network name."""
    if mode in ("", "default"):
        return "bridge" if publishing else "none"
    if mode.startswith("container:"):
        raise DockerError(400, f"juggler cannot honour HostConfig.NetworkMode={mode} "
                               "(--network container:…)")
    if not _NETWORK_NAME.match(mode):
        raise DockerError(400, f"network {mode} not found")
    return mode
