"""A task's network as the one task check sees it: modes, CNI network names and port
mappings, each refusal naming the mapping and why."""

from __future__ import annotations

import pytest

from juggler.common import task_check
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.common.task_check import TaskError
from juggler.v1 import common_pb2 as pb

N = pb.NetworkMode


def task(network: int = N.NETWORK_BRIDGE, ports: str = "[31000-31002]", name: str = "",
         mappings: tuple[tuple, ...] = ()) -> pb.TaskInfo:
    """web.1 with 0.5 cpus and `ports` resources; mappings are (host, container[, proto])."""
    resources = Resources({"cpus": 0.5}, ports=Ranges.parse(ports))
    container = pb.ContainerInfo(network=network, network_name=name, port_mappings=[
        pb.PortMapping(host_port=m[0], container_port=m[1], protocol=(m[2:] or ("",))[0])
        for m in mappings])
    return pb.TaskInfo(task_id="web.1", resources=resources.to_proto(), container=container,
                       command=pb.CommandInfo(argv=["true"]))


@pytest.mark.parametrize("good", [
    task(),
    task(N.NETWORK_BRIDGE, mappings=((31000, 80), (31000, 80, "udp"), (31001, 443, "tcp"))),
    task(N.NETWORK_BRIDGE, name="my-net_1.a", mappings=((31002, 8080),)),
    task(N.NETWORK_BRIDGE, name="bridge"),
    task(N.NETWORK_HOST, mappings=((31001, 31001), (31001, 31001, "udp"))),
    task(N.NETWORK_HOST, ports="[]"),
    task(N.NETWORK_NONE, ports="[8080]"),  # ports held but not published: allowed
])
def test_good_networks_pass(good):
    task_check.check(good)


@pytest.mark.parametrize(("bad", "field", "fragment"), [
    (task(network=9), "container.network",
     "is not a network mode (NETWORK_NONE, NETWORK_HOST or NETWORK_BRIDGE)"),
    (task(N.NETWORK_HOST, name="bridge"), "container.network_name",
     "needs container.network NETWORK_BRIDGE"),
    (task(name="-net"), "container.network_name", "is not a CNI network name"),
    (task(name="a b"), "container.network_name", "is not a CNI network name"),
    (task(N.NETWORK_NONE, mappings=((31000, 80),)), "container.port_mappings",
     "need container.network NETWORK_HOST or NETWORK_BRIDGE"),
    (task(N.NETWORK_MODE_UNSPECIFIED, mappings=((31000, 80),)), "container.port_mappings",
     "NETWORK_NONE has no port to publish"),
    (task(mappings=((31000, 80), (8080, 80))), "container.port_mappings[1].host_port",
     "container.port_mappings[1] (host_port 8080, container_port 80): host port 8080 is not "
     "one of the task's ports resources [31000-31002]"),
    (task(mappings=((0, 80),)), "container.port_mappings[0].host_port",
     "host_port must be 1-65535"),
    (task(mappings=((31000, 0),)), "container.port_mappings[0].container_port",
     "container_port must be 1-65535"),
    (task(mappings=((31000, 70000),)), "container.port_mappings[0].container_port",
     "container_port must be 1-65535"),
    (task(mappings=((31000, 80, "sctp"),)), "container.port_mappings[0].protocol",
     "protocol 'sctp' is not tcp or udp"),
    (task(mappings=((31000, 80, "TCP"),)), "container.port_mappings[0].protocol",
     "is not tcp or udp"),
    (task(mappings=((31000, 80), (31000, 81, "tcp"))), "container.port_mappings[1].host_port",
     "host port 31000/tcp is mapped twice"),
    (task(N.NETWORK_HOST, mappings=((31000, 80),)), "container.port_mappings[0].container_port",
     "on NETWORK_HOST the container port is the host port"),
    (task(N.NETWORK_HOST, ports="[]", mappings=((31000, 31000),)),
     "container.port_mappings[0].host_port", "is not one of the task's ports resources []"),
])
def test_bad_networks_are_refused_naming_the_mapping_and_why(bad, field, fragment):
    with pytest.raises(TaskError) as info:
        task_check.check(bad)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert str(info.value).startswith("task 'web.1': ")
