"""Published ports of a task `juggler run` launches without the containers
service (-p, -P, --expose, --network), as a container's run has them
(apps/container_tasks.py): the fixed host ports are part of the task's
resources, the others picked from the offer it takes (published_ports.assign),
Marathon's PORT0…/HOST in its environment.
"""

from __future__ import annotations

import argparse

from juggler.cli import containers
from juggler.common import published_ports
from juggler.common.port_env import port_environment
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2

NETWORKS = {"none": common_pb2.NETWORK_NONE, "host": common_pb2.NETWORK_HOST}


def network(args: argparse.Namespace) -> str:
    """--network, else bridge when ports are published, else none (as a
    container's: apps/docker_networks.network_mode)."""
    return args.network or ("bridge" if args.publish or args.publish_all else "none")


def bindings(args: argparse.Namespace) -> list[published_ports.PortBinding]:
    """The ports a task run with -p/-P/--expose publishes (-P: the --expose
    ports; without the containers service the image's EXPOSE is not read)."""
    exposed, port_bindings = containers.publishing(args)
    return published_ports.published(network(args), published_ports.from_docker(port_bindings),
                                     list(exposed), args.publish_all)


def publish_on(task: common_pb2.TaskInfo, bindings: list[published_ports.PortBinding],
               host_ports: list[int], hostname: str) -> None:
    """Give `task` the host ports chosen from its offer: its "ports"
    resources, port mappings and Marathon's PORT0…/HOST environment (the
    task's own -e values win)."""
    if not bindings:
        return
    resources = Resources.from_proto(task.resources)
    del task.resources[:]
    task.resources.extend((resources.scalars() + Resources(
        ports=Ranges.single(*host_ports))).to_proto())
    for b, port in zip(bindings, host_ports, strict=True):
        task.container.port_mappings.add(host_port=port, container_port=b.container_port,
                                         protocol=b.protocol)
    own = dict(task.command.environment)
    task.command.environment.update(port_environment(host_ports, hostname))
    task.command.environment.update(own)
