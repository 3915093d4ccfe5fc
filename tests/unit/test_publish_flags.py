"""Publishing ports the Docker way: `-p`/`-P`/`--expose` parsing with the
docker CLI's words, PortBindings both ways, the network a container gets,
host ports picked from offers, Docker's JSON for ps/inspect/port, and the
PORTS column. What the docker CLI itself says and sends for the same flags
is compared in tests/integration/test_publish_vs_docker_cli.py."""

from __future__ import annotations

import argparse
import hashlib
import itertools
import random

import pytest

from juggler.apps import docker_views as views
from juggler.apps.commands import Launch
from juggler.apps.containers import CS, ContainerConfig
from juggler.apps.containers_state import ContainersState
from juggler.apps.docker_errors import DockerError
from juggler.cli import container_table, containers
from juggler.cli.main import parser
from juggler.common import published_ports as pp
from juggler.common.clock import FakeClock
from juggler.common.published_ports import PortBinding
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb

# -- -p and --expose ------------------------------------------------------------------


@pytest.mark.parametrize(("spec", "bindings"), [
    ("80", [PortBinding(80)]),
    ("8080:80", [PortBinding(80, "tcp", 8080)]),
    ("8080:80/udp", [PortBinding(80, "udp", 8080)]),
    ("53/UDP", [PortBinding(53, "udp")]),
    ("0.0.0.0:8080:80", [PortBinding(80, "tcp", 8080, "0.0.0.0")]),
    ("0.0.0.0::80", [PortBinding(80, "tcp", 0, "0.0.0.0")]),
    ("::80", [PortBinding(80)]),
    (":80", [PortBinding(80)]),
    ("0:80", [PortBinding(80)]),
    ("8080-8082:80-82", [PortBinding(80, "tcp", 8080), PortBinding(81, "tcp", 8081),
                         PortBinding(82, "tcp", 8082)]),
    ("80-81", [PortBinding(80), PortBinding(81)]),
])
def test_publish_specs(spec: str, bindings: list[PortBinding]) -> None:
    assert pp.parse_publish(spec) == bindings


# What `docker run -p SPEC` 28 prints (after "docker: "), exit 125.
DOCKER_REFUSES = [
    ("abc", "invalid containerPort: abc"),
    ("8080:abc", "invalid containerPort: abc"),
    ("abc:80", "invalid hostPort: abc"),
    ("99999:80", "invalid hostPort: 99999"),
    ("80:99999", "invalid containerPort: 99999"),
    ("8080:80/xyz", "invalid proto: xyz"),
    ("8080-8081:80-82", "invalid ranges specified for container and host Ports: 80-82 and "
                        "8080-8081"),
    ("", "no port specified: <empty>"),
    ("8080:", "no port specified: 8080:<empty>"),
    ("a:b:c:d", "invalid IP address: a:b"),
]


@pytest.mark.parametrize(("spec", "message"), DOCKER_REFUSES)
def test_bad_specs_get_docker_s_words(spec: str, message: str) -> None:
    with pytest.raises(pp.PortSpecError) as e:
        pp.parse_publish(spec)
    assert str(e.value) == message


@pytest.mark.parametrize(("spec", "words"), [
    ("8080:80/sctp", "juggler cannot publish sctp ports (80/sctp): tcp and udp only"),
    ("1.2.3.4:8080:80", "juggler cannot publish on host IP 1.2.3.4 (80/tcp)"),
    ("127.0.0.1::80", "juggler cannot publish on host IP 127.0.0.1"),
    ("[::1]:8080:80", "juggler cannot publish on host IP ::1"),
    ("8080-8081:80", "juggler cannot publish a host port range for one container port"),
    ("8080:0", "invalid containerPort: 0"),
])
def test_what_docker_takes_and_juggler_cannot_is_refused_clearly(spec: str, words: str) -> None:
    with pytest.raises(pp.PortSpecError) as e:
        pp.parse_publish(spec)
    assert words in str(e.value)


def test_expose() -> None:
    assert pp.parse_expose("90") == [(90, "tcp")]
    assert pp.parse_expose("90-92/udp") == [(90, "udp"), (91, "udp"), (92, "udp")]
    with pytest.raises(pp.PortSpecError) as e:
        pp.parse_expose("abc")
    assert str(e.value) == ('invalid range format for --expose: abc, error: '
                            'strconv.ParseUint: parsing "abc": invalid syntax')
    with pytest.raises(pp.PortSpecError, match="invalid port format for --expose: 1:2"):
        pp.parse_expose("1:2")


# -- PortBindings both ways -------------------------------------------------------------

def test_port_bindings_as_the_docker_cli_sends_them_and_back() -> None:
    bindings = [*pp.parse_publish("8080:80"), *pp.parse_publish("8080:80/udp"),
                *pp.parse_publish("90"), *pp.parse_publish("8081:80")]
    exposed, port_bindings = pp.to_docker(bindings, pp.parse_expose("100/udp"))
    # What `docker run -p 8080:80 -p 8080:80/udp -p 90 -p 8081:80 --expose 100/udp` sends.
    assert port_bindings == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}, {"HostIp": "", "HostPort": "8081"}],
        "80/udp": [{"HostIp": "", "HostPort": "8080"}],
        "90/tcp": [{"HostIp": "", "HostPort": ""}]}
    assert exposed == {"80/tcp": {}, "80/udp": {}, "90/tcp": {}, "100/udp": {}}
    back = pp.from_docker(port_bindings)
    assert sorted(back, key=repr) == sorted(bindings, key=repr)
    assert [PortBinding.from_record(b.record()) for b in back] == back
    assert pp.from_docker({"80": [{"HostPort": "0"}]}) == [PortBinding(80)]
    assert pp.from_docker({"80/tcp": None}) == [PortBinding(80)]


@pytest.mark.parametrize(("port_bindings", "words"), [
    ({"80/tcp": [{"HostPort": "8080"}], "81/tcp": [{"HostPort": "8080"}]},
     "Bind for 0.0.0.0:8080 failed: port is already allocated"),
    ({"x/tcp": [{"HostPort": "1"}]}, "invalid port specification: 'x/tcp'"),
    ({"80/tcp": [{"HostPort": "x"}]}, "invalid hostPort: x"),
    ({"80/tcp": [{"HostPort": "70000"}]}, "invalid hostPort: 70000"),
    ({"0/tcp": [{}]}, "invalid containerPort: 0"),
])
def test_bad_port_bindings(port_bindings: dict[str, object], words: str) -> None:
    with pytest.raises(pp.PortSpecError) as e:
        pp.from_docker(port_bindings)
    assert words in str(e.value)


# -- the network, and what a run publishes --------------------------------------------

def _create(host: dict[str, object], **body: object) -> ContainerConfig:
    return views.config_from_create({"Image": "busybox", "HostConfig": host, **body})


def test_publishing_implies_bridge_and_the_default_stays_none() -> None:
    assert _create({"NetworkMode": "default"}).network == "none"
    published = _create({"NetworkMode": "default",
                         "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
                        ExposedPorts={"80/tcp": {}})
    assert published.network == "bridge"
    assert published.ports == [{"containerPort": 80, "protocol": "tcp", "hostPort": 8080,
                                "hostIp": ""}]
    assert _create({"PublishAllPorts": True}).network == "bridge"
    assert _create({"NetworkMode": "bridge"}).network == "bridge"
    assert _create({"NetworkMode": "lab-net"}).network == "lab-net"
    host = _create({"NetworkMode": "host", "PortBindings": {"80/tcp": [{"HostPort": "80"}]}})
    assert host.network == "host"
    assert pp.published("none", [PortBinding(80)], [], False) == []
    with pytest.raises(DockerError, match="container:db"):
        _create({"NetworkMode": "container:db", "PortBindings": {"80/tcp": [{}]}})


def test_publish_all_adds_any_port_for_each_exposed_port_not_bound() -> None:
    bound = [PortBinding(80, "tcp", 8080)]
    assert pp.published("bridge", bound, ["80/tcp", "90/tcp", "53/udp"], True) == [
        PortBinding(80, "tcp", 8080), PortBinding(90), PortBinding(53, "udp")]
    assert pp.published("bridge", bound, ["90/tcp"], False) == bound


def test_assign_fixed_ports_and_random_ones_from_the_offer() -> None:
    bindings = [PortBinding(80, "tcp", 31005), PortBinding(90), PortBinding(53, "udp"),
                PortBinding(80, "udp", 31005)]
    free = Ranges.parse("[31000-31010]")
    for seed in range(20):
        ports = pp.assign(bindings, free, random.Random(seed))
        assert ports is not None
        assert ports[0] == ports[3] == 31005
        assert len({ports[1], ports[2], 31005}) == 3 and {ports[1], ports[2]} <= set(free.ports())
    assert pp.assign(bindings, Ranges.parse("[31000-31004]"), random.Random(1)) is None
    assert pp.assign(bindings, Ranges.single(31005, 31006), random.Random(1)) is None
    assert pp.assign([], Ranges(), random.Random(1)) == []


def test_a_taken_fixed_port_fails_at_once_as_docker_s() -> None:
    fixed = Ranges.single(31005)
    total = Ranges.parse("[31000-32000]")
    assert pp.unavailable(fixed, [("a1", total, Ranges()), ("a2", total, fixed)]) == ""
    assert pp.unavailable(fixed, [("a1", total, fixed)]) == \
        "Bind for 0.0.0.0:31005 failed: port is already allocated"
    why = pp.unavailable(Ranges.single(8080), [("a1", total, Ranges())])
    assert why.startswith("no agent offers host port 8080 (agents' ports: a1 [31000-32000]")
    assert pp.unavailable(fixed, []) == ""
    # Each port free somewhere, never both on one agent.
    two = Ranges.single(31005, 31006)
    split = [("a1", total, Ranges.single(31005)), ("a2", total, Ranges.single(31006))]
    assert pp.unavailable(two, split) == "Bind for 0.0.0.0:31005 failed: port is already " \
                                         "allocated"
    apart = [("a1", Ranges.single(31005), Ranges()), ("a2", Ranges.single(31006), Ranges())]
    assert pp.unavailable(two, apart).startswith("no agent offers host ports 31005-31006 "
                                                 "together")


# -- the service: offers, runs, Docker's JSON ------------------------------------------

def _core() -> ContainersState:
    ids = itertools.count(1)
    core = ContainersState(FakeClock(), lambda: hashlib.sha256(str(next(ids)).encode())
                           .hexdigest(), rng=random.Random(7))
    core.reconciling = False
    return core


def _offer(core: ContainersState, ports: str, offer_id: str = "o1") -> list[pb.TaskInfo]:
    offer = pb.Offer(id=offer_id, agent_id="a1", hostname="host-a1", agent_address="a1:5051",
                     resources=Resources({"cpus": 4, "mem": 4096}, ports=ports).to_proto())
    cmds, _ = core.on_offers([offer])
    return [t for c in cmds if isinstance(c, Launch) for t in c.tasks]


def test_a_run_gets_its_ports_from_the_offer_and_new_random_ones_at_each_start() -> None:
    core = _core()
    cfg = _create({"PortBindings": {"80/tcp": [{"HostPort": "31005"}],
                                    "90/udp": [{"HostPort": ""}]}})
    c, _ = core.create(cfg, "web")
    core.start("web")
    assert _offer(core, "[31006-31010]") == []           # 31005 is not in it: it waits
    [task] = _offer(core, "[31000-31010]", "o2")
    random_port = c.host_ports[1]["hostPort"]
    assert c.host_ports == [
        {"containerPort": 80, "protocol": "tcp", "hostPort": 31005, "hostIp": ""},
        {"containerPort": 90, "protocol": "udp", "hostPort": random_port, "hostIp": ""}]
    assert Resources.from_proto(task.resources).ports == Ranges.single(31005, random_port)
    assert task.container.network == pb.NETWORK_BRIDGE and task.container.network_name == ""
    assert [(m.host_port, m.container_port, m.protocol)
            for m in task.container.port_mappings] == [(31005, 80, "tcp"),
                                                       (random_port, 90, "udp")]
    env = dict(task.command.environment)
    assert env["PORT0"] == "31005" and env["PORT1"] == str(random_port)
    assert env["PORTS"] == f"31005,{random_port}" and env["HOST"] == "host-a1"
    running = pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING, pid=7)
    core.on_updates([running])
    assert c.status == CS.RUNNING
    summary = views.summary(c, 0.0)
    assert summary["Ports"] == [
        {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 31005, "Type": "tcp"},
        {"IP": "0.0.0.0", "PrivatePort": 90, "PublicPort": random_port, "Type": "udp"}]
    info = views.inspect(c, "fw")
    assert info["NetworkSettings"]["Ports"] == {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "31005"}],
        "90/udp": [{"HostIp": "0.0.0.0", "HostPort": str(random_port)}]}
    assert info["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "31005"}],
        "90/udp": [{"HostIp": "", "HostPort": ""}]}
    assert info["HostConfig"]["NetworkMode"] == "bridge"
    assert "bridge" in info["NetworkSettings"]["Networks"]
    # Stopped: no ports shown (Docker's); started again: the fixed one kept,
    # the random one picked again.
    core.stop("web")
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_KILLED)])
    assert c.status == CS.EXITED and views.summary(c, 0.0)["Ports"] == []
    assert views.inspect(c, "fw")["NetworkSettings"]["Ports"] == {}
    core.start("web")
    ports = set()
    for i in range(3, 40):
        [again] = _offer(core, "[31000-31999]", f"o{i}")
        ports.add(c.host_ports[1]["hostPort"])
        assert c.host_ports[0]["hostPort"] == 31005
        core.on_updates([pb.TaskStatus(task_id=again.task_id, state=pb.TASK_DROPPED)])
        if c.status != CS.STARTING:
            break
    assert len(ports) > 1


def test_exposed_not_published_ports_show_as_docker_s() -> None:
    core = _core()
    c, _ = core.create(_create({}, ExposedPorts={"90/tcp": {}}), "exposed")
    core.start("exposed")
    [task] = _offer(core, "[31000-31010]")
    assert task.container.network == pb.NETWORK_NONE and not task.container.port_mappings
    assert "PORT0" not in task.command.environment and "HOST" not in task.command.environment
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)])
    assert views.summary(c, 0.0)["Ports"] == [{"PrivatePort": 90, "Type": "tcp"}]
    assert views.inspect(c, "fw")["NetworkSettings"]["Ports"] == {"90/tcp": None}
    assert views.inspect(c, "fw")["Config"]["ExposedPorts"] == {"90/tcp": {}}


def test_the_container_s_own_env_wins_over_port_variables() -> None:
    core = _core()
    cfg = _create({"PortBindings": {"80/tcp": [{"HostPort": "31001"}]}}, Env=["PORT0=mine"])
    core.create(cfg, "env")
    core.start("env")
    [task] = _offer(core, "[31000-31010]")
    assert task.command.environment["PORT0"] == "mine"
    assert task.command.environment["PORT"] == "31001"


def test_a_named_network_is_the_task_s_cni_network() -> None:
    core = _core()
    core.create(_create({"NetworkMode": "lab", "PortBindings": {"80/tcp": [{}]}}), "named")
    core.start("named")
    [task] = _offer(core, "[31000-31010]")
    assert task.container.network == pb.NETWORK_BRIDGE
    assert task.container.network_name == "lab"
    assert len(task.container.port_mappings) == 1


# -- the CLI -----------------------------------------------------------------------------

def _run_args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["run", *argv])


def test_run_flags_make_the_body_the_docker_cli_sends() -> None:
    args = _run_args("-p", "8080:80", "-p", "90/udp", "-P", "--expose", "100",
                     "--network", "bridge", "busybox")
    body = containers.create_body(args, *containers.split_command(args))
    assert body["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}, "100/tcp": {}}
    assert body["HostConfig"]["PortBindings"] == {
        "80/tcp": [{"HostIp": "", "HostPort": "8080"}],
        "90/udp": [{"HostIp": "", "HostPort": ""}]}
    assert body["HostConfig"]["PublishAllPorts"] is True
    assert body["HostConfig"]["NetworkMode"] == "bridge"
    plain = _run_args("busybox")
    assert "ExposedPorts" not in containers.create_body(plain, "busybox", [])
    with pytest.raises(ValueError, match=r"^invalid containerPort: abc$"):
        containers.create_body(_run_args("-p", "abc", "busybox"), "busybox", [])


def test_a_task_run_publishes_as_a_container_does() -> None:
    from juggler.cli import run, task_ports

    args = _run_args("-p", "31005:80", "-p", "90", "busybox")
    task = run.build_task(args, "t1", "busybox", [])
    assert task.container.network == pb.NETWORK_BRIDGE
    assert Resources.from_proto(task.resources).ports == Ranges.single(31005)
    bindings = task_ports.bindings(args)
    task_ports.publish_on(task, bindings, [31005, 31009], "host-a1")
    assert Resources.from_proto(task.resources).ports == Ranges.single(31005, 31009)
    assert [(m.host_port, m.container_port) for m in task.container.port_mappings] == [
        (31005, 80), (31009, 90)]
    assert task.command.environment["PORT1"] == "31009"
    host = run.build_task(_run_args("--network", "host", "-p", "80", "busybox"), "t2",
                          "busybox", [])
    assert host.container.network == pb.NETWORK_HOST and not host.container.port_mappings


# -- the PORTS column --------------------------------------------------------------------

def _p(private: int, public: int = 0, kind: str = "tcp", ip: str = "0.0.0.0") -> dict:
    if not public:
        return {"PrivatePort": private, "Type": kind}
    return {"IP": ip, "PrivatePort": private, "PublicPort": public, "Type": kind}


@pytest.mark.parametrize(("ports", "column"), [
    ([], ""),
    ([_p(80, 31005)], "0.0.0.0:31005->80/tcp"),
    ([_p(90, 31001), _p(80, 31005)], "0.0.0.0:31005->80/tcp, 0.0.0.0:31001->90/tcp"),
    ([_p(8081, 8081), _p(8080, 8080)], "0.0.0.0:8080-8081->8080-8081/tcp"),
    ([_p(92, kind="udp"), _p(90, kind="udp"), _p(91, kind="udp")], "90-92/udp"),
    ([_p(80), _p(82), _p(53, 31000, "udp")], "80/tcp, 82/tcp, 0.0.0.0:31000->53/udp"),
    ([_p(80, 31005, ip="::")], "[::]:31005->80/tcp"),
])
def test_ps_ports_column_as_docker_s(ports: list[dict], column: str) -> None:
    row = {"Id": "a" * 64, "Names": ["/x"], "Ports": ports, "Created": 0}
    assert container_table.render([row], fmt="{{.Ports}}", now=0.0) == column


def test_inspect_shows_the_run_s_ip_on_its_network() -> None:
    core = _core()
    c, _ = core.create(_create({"PortBindings": {"80/tcp": [{}]}}), "ip")
    core.start("ip")
    [task] = _offer(core, "[31000-31010]")
    status = pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)
    status.ip_addresses.append("10.88.0.7")
    core.on_updates([status])
    settings = views.inspect(c, "fw")["NetworkSettings"]
    assert settings["IPAddress"] == "10.88.0.7"
    assert settings["Networks"]["bridge"]["IPAddress"] == "10.88.0.7"


def test_host_network_reserves_each_host_port_and_warns_only_when_it_cannot_remap() -> None:
    warning = "Published ports are discarded when using host network mode"
    # -p HOST:CONTAINER keeps HOST as the task's port, as it is; -p PORT keeps PORT;
    # -P reserves nothing there (Docker discards published ports on the host network).
    given = [*pp.parse_publish("31200:80"), *pp.parse_publish("31201"),
             *pp.parse_publish("31202:31202/udp")]
    assert pp.published("host", given, ["90/tcp"], True) == [
        PortBinding(31200, "tcp", 31200), PortBinding(31201, "tcp", 31201),
        PortBinding(31202, "udp", 31202)]
    assert pp.fixed_ports(pp.published("host", given, [], False)) == Ranges.parse(
        "[31200-31202]")
    assert pp.discarded_warning("host", ["31200:80"]) == warning
    assert pp.discarded_warning("host", {"80/tcp": [{"HostPort": "8080"}]}) == warning
    assert pp.discarded_warning("host", ["31201", "31202:31202/udp"]) == ""
    assert pp.discarded_warning("host", {"80/tcp": [{"HostPort": "80"}]}) == ""
    assert pp.discarded_warning("none", ["80"]) == \
        "Published ports are discarded when using none network mode"
    # The run's "ports" resources hold 31200: the agent's port watch leaves it alone.
    core = _core()
    c, _ = core.create(_create({"NetworkMode": "host",
                                "PortBindings": {"80/tcp": [{"HostPort": "31200"}]}}), "hosted")
    core.start("hosted")
    assert _offer(core, "[31000-31199]") == []           # 31200 is not in it: it waits
    [task] = _offer(core, "[31000-31999]", "o2")
    assert Resources.from_proto(task.resources).ports == Ranges.single(31200)
    assert task.container.network == pb.NETWORK_HOST and not task.container.port_mappings
    assert task.command.environment["PORT0"] == "31200"
    core.on_updates([pb.TaskStatus(task_id=task.task_id, state=pb.TASK_RUNNING)])
    assert {"IP": "0.0.0.0", "PrivatePort": 31200, "PublicPort": 31200, "Type": "tcp"} in \
        views.summary(c, 0.0)["Ports"]
