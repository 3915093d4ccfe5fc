"""Marathon's ports model in the apps service: portDefinitions, networks and
portMappings parsed and validated (apps/definition_ports.py), service ports
assigned (apps/ports.py), host ports picked from offers (apps/state.py), and
what a task gets (apps/tasks.py) and what /v2/tasks shows (apps/views.py).
Pure: no processes (tests/integration/test_app_ports_cluster.py runs them)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from juggler.apps.commands import Launch, Persist
from juggler.apps.definition import AppDefinition, InvalidDefinition, parse_app, render_app
from juggler.apps.definition_model import Network, PortMapping
from juggler.apps.plan import Versioned
from juggler.apps.state import AppsState
from juggler.apps.tasks import environment, task_for
from juggler.apps.views import endpoints_text, queue_json, task_json
from juggler.common.clock import FakeClock
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.common.task_check import check
from juggler.v1 import common_pb2 as pb


def errors_of(obj: dict[str, Any]) -> dict[str, list[str]]:
    with pytest.raises(InvalidDefinition) as e:
        parse_app(obj)
    return {d["path"]: d["errors"] for d in e.value.details}


def bridge(*mappings: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"id": "/web", "cmd": "serve", "networks": [{"mode": "container/bridge"}],
            "container": {"type": "MESOS", "portMappings": list(mappings)}, **extra}


# -- parsing and validation ---------------------------------------------------------------


def test_port_mappings_on_the_bridge_default_to_any_host_port():
    a = parse_app(bridge({"containerPort": 80, "name": "http"},
                         {"containerPort": 53, "hostPort": 31053, "protocol": "udp"},
                         {"containerPort": 9000, "servicePort": 10500, "protocol": "tcp,udp",
                          "labels": {"vip": "x"}}))
    assert a.networks == (Network("container/bridge"),)
    assert a.port_mappings == (
        PortMapping(80, 0, 0, "tcp", "http"),
        PortMapping(53, 31053, 0, "udp"),
        PortMapping(9000, 0, 10500, "udp,tcp", labels=(("vip", "x"),)))
    assert a.port_definitions == (), "no default port definition on a container network"
    r = render_app(a)
    assert r["networks"] == [{"mode": "container/bridge"}]
    assert r["container"]["portMappings"][0] == {
        "containerPort": 80, "hostPort": 0, "servicePort": 0, "protocol": "tcp",
        "name": "http", "labels": {}}
    assert parse_app(r) == a


def test_a_named_container_network_publishes_only_mappings_with_a_host_port():
    a = parse_app({"id": "/db", "cmd": "x", "networks": [{"mode": "container", "name": "lab"}],
                   "container": {"type": "MESOS", "portMappings": [{"containerPort": 5432},
                                                  {"containerPort": 8080, "hostPort": 0}]}})
    assert [m.host_port for m in a.port_mappings] == [None, 0]
    assert "hostPort" not in render_app(a)["container"]["portMappings"][0]
    assert parse_app(render_app(a)) == a


def test_the_pre_1_5_docker_network_and_port_mappings_are_read():
    a = parse_app({"id": "/w", "container": {"type": "DOCKER", "docker": {
        "image": "nginx", "network": "BRIDGE",
        "portMappings": [{"containerPort": 80, "hostPort": 0, "servicePort": 0}]}}})
    assert a.networks == (Network("container/bridge"),)
    assert a.port_mappings == (PortMapping(80, 0, 0),)
    host = parse_app({"id": "/w", "cmd": "x", "container": {"docker": {
        "image": "nginx", "network": "HOST"}}})
    assert host.networks == (Network("host"),) and len(host.port_definitions) == 1


def test_marathon_s_networking_rules_are_422s():
    assert errors_of({"id": "/w", "cmd": "x", "container": {
        "type": "MESOS", "portMappings": [{"containerPort": 80}]}}) == {
        "/container/portMappings": ["portMappings are not allowed with host-networking"]}
    assert errors_of(bridge({"containerPort": 80}, portDefinitions=[{"port": 0}])) == {
        "/portDefinitions": ["portDefinitions are only allowed with host-networking"]}
    e = errors_of({"id": "/w", "cmd": "x", "networks": [{"mode": "host"}],
                   "container": {"docker": {"image": "i", "network": "HOST"}}})
    assert e == {"/": ["must not specify both container.docker.network and networks"]}
    e = errors_of({"id": "/w", "container": {"docker": {"image": "i", "network": "USER"}}})
    assert '"mode": "container"' in e["/container/docker/network"][0]
    e = errors_of({"id": "/w", "cmd": "x", "networks": [{"mode": "host", "name": "n"}]})
    assert e == {"/networks(0)/name": ["host networks may not have names or labels"]}
    e = errors_of({"id": "/w", "cmd": "x", "networks": [{"mode": "container", "name": "a"},
                                                         {"mode": "container", "name": "b"}]})
    assert "one network" in e["/networks"][0]
    assert errors_of({"id": "/w", "cmd": "x", "networks": [{"mode": "overlay"}]}) == {
        "/networks(0)/mode": ["must be one of host, container/bridge, container"]}


def test_bad_port_mappings_name_each_bad_field():
    e = errors_of(bridge({"containerPort": 70000, "hostPort": -1, "servicePort": "x",
                          "protocol": "sctp"},
                         {"containerPort": 80, "name": "a"}, {"containerPort": 81, "name": "a"},
                         {"containerPort": 82, "hostPort": 31000},
                         {"containerPort": 83, "hostPort": 31000}, "eighty"))
    assert e["/container/portMappings(0)/containerPort"] == [
        "must be an integer between 0 and 65535"]
    assert e["/container/portMappings(0)/hostPort"] == ["must be an integer between 0 and 65535"]
    assert e["/container/portMappings(0)/servicePort"] == [
        "must be an integer between 0 and 65535"]
    assert e["/container/portMappings(0)/protocol"] == ["must be one of tcp, udp, udp,tcp, tcp,udp"]
    assert "must be an object" in e["/container/portMappings(5)"][0]
    assert e["/container/portMappings"] == ["Port names must be unique.",
                                            "Host ports must be unique (per protocol)."]
    assert parse_app(bridge({"containerPort": 53, "hostPort": 31000, "protocol": "udp"},
                            {"containerPort": 53, "hostPort": 31000}))  # tcp and udp: fine


def test_a_health_check_s_port_index_counts_port_mappings_on_a_container_network():
    hc = {"protocol": "HTTP", "portIndex": 1}
    assert "port_index" not in errors_of(bridge({"containerPort": 80}, healthChecks=[hc]))
    ok = parse_app(bridge({"containerPort": 80}, {"containerPort": 81}, healthChecks=[hc]))
    assert ok.health_checks[0].port_index == 1


# -- service ports ------------------------------------------------------------------------


def core() -> AppsState:
    ids = itertools.count(1)
    return AppsState(FakeClock(), lambda: f"id{next(ids)}", rng=random.Random(7))


def deploy(state: AppsState, *defs: dict[str, Any]) -> list[Any]:
    _, cmds = state.deploy({d.id: d for d in (parse_app(x) for x in defs)}, force=True)
    return cmds


def test_service_ports_are_assigned_from_10000_unique_across_apps_and_kept():
    s = core()
    deploy(s, {"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 0}]})
    deploy(s, bridge({"containerPort": 80}))
    a, web = s.apps["/a"].current.app, s.apps["/web"].current.app
    assert [p.port for p in a.port_definitions] == [10000, 10001]
    assert [m.service_port for m in web.port_mappings] == [10002]
    rendered = render_app(a)
    assert [p["port"] for p in rendered["portDefinitions"]] == [10000, 10001]
    # The same JSON again: the same ports, the same config (no restart).
    config = s.apps["/a"].current.config_version
    deploy(s, {"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0}, {"port": 0}]})
    assert [p.port for p in s.apps["/a"].current.app.port_definitions] == [10000, 10001]
    assert s.apps["/a"].current.config_version == config
    # A third port is added: the first two stay.
    deploy(s, {"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0}] * 3})
    assert [p.port for p in s.apps["/a"].current.app.port_definitions] == [10000, 10001, 10003]


def test_a_fixed_service_port_is_respected_and_another_app_s_is_refused():
    s = core()
    deploy(s, bridge({"containerPort": 80, "servicePort": 10000}))
    deploy(s, {"id": "/b", "cmd": "x"})
    assert s.apps["/b"].current.app.port_definitions[0].port == 10001
    with pytest.raises(InvalidDefinition) as e:
        deploy(s, {"id": "/c", "cmd": "x", "portDefinitions": [{"port": 10001}]})
    assert e.value.details == [{"path": "/portDefinitions(0)/port", "errors": [
        "Requested service port 10001 conflicts with a service port in use by app /b"]}]
    assert "/c" not in s.apps, "nothing half-applied"
    deploy(s, {"id": "/b", "cmd": "x", "portDefinitions": [{"port": 10001}]})  # its own


# -- placement ----------------------------------------------------------------------------


def offer(ports: str, cpus: float = 8, host: str = "h1", n: int = 1) -> pb.Offer:
    return pb.Offer(id=f"o-{host}-{n}", agent_id=f"agent-{host}", hostname=host,
                    resources=Resources({"cpus": cpus, "mem": 8192}, ports=ports).to_proto())


def launched(cmds: list[Any]) -> list[pb.TaskInfo]:
    return [t for c in cmds if isinstance(c, Launch) for t in c.tasks]


def test_tasks_from_one_offer_never_share_a_host_port_and_wait_for_more_ports():
    s = core()
    deploy(s, {"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 16, "instances": 3,
               "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]})
    tasks = launched(s.on_offers([offer("[31000-31004]")]))
    assert len(tasks) == 2, "5 ports: two tasks of two ports each"
    ports = [list(Resources.from_proto(t.resources).ports.ports()) for t in tasks]
    flat = [p for ps in ports for p in ps]
    assert len(set(flat)) == 4 and all(31000 <= p <= 31004 for p in flat)
    inst = s.instances[tasks[0].task_id]
    assert sorted(inst.ports) == ports[0]
    env = tasks[0].command.environment
    assert env["PORT0"] == env["PORT"] == env["PORT_HTTP"] == str(inst.ports[0])
    assert env["PORTS"] == ",".join(map(str, inst.ports)) and env["HOST"] == "h1"
    assert [(m.host_port, m.container_port) for m in tasks[0].container.port_mappings] == [
        (p, p) for p in inst.ports]
    assert tasks[0].container.network == pb.NETWORK_HOST
    assert not launched(s.on_offers([offer("[31005]", n=2)]))
    q = queue_json(s)["queue"][0]
    assert q["count"] == 1
    assert any("InsufficientPorts" in o["reason"] for o in q["lastUnusedOffers"]), q
    last = q["lastUnusedOffers"][-1]
    assert "ports: needs 2 more, offer has 1" in last["juggler"]
    assert {"name": "ports", "ranges": [{"begin": 31005, "end": 31005}], "role": "*"} in \
        last["offer"]["resources"]


def test_fixed_host_ports_must_be_in_the_offer():
    s = core()
    deploy(s, bridge({"containerPort": 80, "hostPort": 31500}, cpus=0.1, mem=16, instances=2))
    assert not launched(s.on_offers([offer("[31000-31100]")]))
    tasks = launched(s.on_offers([offer("[31000-31100,31500]", host="h2")]))
    assert len(tasks) == 1, "one agent has one port 31500"
    t = tasks[0]
    assert t.container.network == pb.NETWORK_BRIDGE and t.container.network_name == ""
    assert [(m.host_port, m.container_port, m.protocol) for m in t.container.port_mappings] \
        == [(31500, 80, "tcp")]
    assert t.command.environment["PORT_80"] == "31500"
    check(t)  # the master's own check takes it


def test_require_ports_makes_the_service_port_the_host_port():
    s = core()
    deploy(s, {"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 16, "requirePorts": True,
               "portDefinitions": [{"port": 31234}]})
    assert not launched(s.on_offers([offer("[31000-31100]")]))
    t = launched(s.on_offers([offer("[31000-32000]", host="h2")]))[0]
    assert t.command.environment["PORT0"] == "31234"


def test_a_named_network_and_udp_tcp_give_two_mappings_and_the_network_name():
    s = core()
    deploy(s, {"id": "/dns", "cmd": "x", "cpus": 0.1, "mem": 16,
               "networks": [{"mode": "container", "name": "lab"}],
               "container": {"type": "MESOS",
                             "portMappings": [{"containerPort": 53, "hostPort": 0,
                                               "protocol": "udp,tcp", "name": "dns"},
                                              {"containerPort": 9100}]},
               "healthChecks": [{"protocol": "TCP", "portIndex": 1}]})
    t = launched(s.on_offers([offer("[31000-31000]")]))[0]
    assert (t.container.network, t.container.network_name) == (pb.NETWORK_BRIDGE, "lab")
    assert [(m.host_port, m.container_port, m.protocol, m.name)
            for m in t.container.port_mappings] == [(31000, 53, "tcp", "dns"),
                                                    (31000, 53, "udp", "dns")]
    assert t.health_check.tcp.port == 9100, "probed inside the task's namespace"
    env = t.command.environment
    assert env["PORT_DNS"] == env["PORT0"] == env["PORT_53"] == "31000"
    check(t)


def test_an_app_without_ports_needs_none():
    s = core()
    deploy(s, {"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 16, "portDefinitions": []})
    t = launched(s.on_offers([offer("[31000-31000]")]))
    assert t and not Resources.from_proto(t[0].resources).ports
    assert "PORT0" not in t[0].command.environment


def test_env_and_task_for_follow_the_host_ports_given():
    d = parse_app({"id": "/a", "cmd": "x", "portDefinitions": [{"port": 0, "name": "web-ui"}]})
    env = environment(Versioned(d, "v", "v"), "a.1", "node-1", [31777])
    assert env["PORT_WEB_UI"] == "31777" and env["HOST"] == "node-1"
    t = task_for(Versioned(d, "v", "v"), "a.1", offer("[31777]"), [31777])
    assert Resources.from_proto(t.resources).ports == Ranges.single(31777)


# -- what /v2/tasks shows -----------------------------------------------------------------


def test_tasks_show_host_ports_service_ports_and_ip_addresses_and_the_lb_text():
    s = core()
    deploy(s, {"id": "/prod/web", "cmd": "x", "cpus": 0.1, "mem": 16, "instances": 2,
               "portDefinitions": [{"port": 0}]},
           {"id": "/idle", "cmd": "x", "cpus": 0.1, "mem": 16, "instances": 0,
            "portDefinitions": []})
    tasks = launched(s.on_offers([offer("[31000-31100]", host="h1"),
                                  offer("[31000-31100]", host="h2")]))
    for t in tasks:
        status = pb.TaskStatus(task_id=t.task_id, agent_id=t.agent_id, state=pb.TASK_RUNNING)
        if hasattr(status, "ip_addresses"):
            status.ip_addresses.append("10.88.0.5")
        s.on_update(status)
    insts = sorted(s.apps["/prod/web"].instances.values(), key=lambda i: i.hostname)
    j = task_json(insts[0])
    assert j["host"] == insts[0].hostname and j["ports"] == insts[0].ports
    assert j["servicePorts"] == [10000]
    if hasattr(pb.TaskStatus(), "ip_addresses"):
        assert j["ipAddresses"] == [{"ipAddress": "10.88.0.5", "protocol": "IPv4"}]
    text = endpoints_text(list(s.apps.values()))
    assert text == ("idle\t \t\n"
                    "prod_web\t10000\t"
                    + "".join(sorted(f"{i.hostname}:{i.ports[0]}\t" for i in insts)) + "\n")


def test_instance_records_keep_ports_across_a_restart():
    from juggler.apps.instances import Instance

    s = core()
    cmds = deploy(s, {"id": "/a", "cmd": "x", "cpus": 0.1, "mem": 16})
    cmds = s.on_offers([offer("[31000-31100]")])
    writes = {k: v for c in cmds if isinstance(c, Persist) for k, v in c.writes.items()}
    (record,) = [v for k, v in writes.items() if k.startswith("instances/")]
    again = Instance.from_record(record)
    assert again.ports == s.instances[again.id].ports and again.service_ports == [10000]


def test_a_definition_that_names_networks_compares_equal_to_the_default():
    assert AppDefinition(id="/a").networks == (Network("host"),)


def test_port_names_follow_marathons_pattern():
    """Marathon's PortAssignment.PortNamePattern: ^[a-z0-9-]+$ (a reviewer's
    {"name": "Bad_Name"} was taken with 201)."""
    bad = 'must match "^[a-z0-9-]+$" (lower-case letters, digits and dashes)'
    e = errors_of({"id": "/b", "cmd": "x", "portDefinitions": [{"port": 0, "name": "Bad_Name"}]})
    assert e == {"/portDefinitions(0)/name": [bad]}
    e = errors_of(bridge({"containerPort": 80, "name": "web api"}))
    assert e == {"/container/portMappings(0)/name": [bad]}
    assert parse_app({"id": "/b", "cmd": "x",
                      "portDefinitions": [{"port": 0, "name": "http-2"}]})
