"""Marathon app definitions (apps/definition.py): parsing with Marathon's
defaults, validation in Marathon's 422 shape, rendering, PATCH, groups; the
`marathon` PyPI client as the oracle for what clients send and accept."""

from __future__ import annotations

import collections
import collections.abc
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marathon.models import MarathonApp, MarathonHealthCheck
from marathon.models.app import (
    MarathonUnreachableStrategy,
    MarathonUpgradeStrategy,
)
from marathon.models.app import PortDefinition as ClientPortDefinition
from marathon.models.container import MarathonContainer, MarathonDockerContainer

from juggler.apps.constraints import Constraint
from juggler.apps.definition import (
    DEFAULT_PORT_DEFINITIONS,
    HEALTH_PROTOCOLS,
    KILL_SELECTIONS,
    RESERVED_NAMES,
    AppDefinition,
    Container,
    GroupDefinition,
    HealthCheckDef,
    InvalidDefinition,
    Network,
    PortDefinition,
    PortMapping,
    UnreachableStrategy,
    UpgradeStrategy,
    normalize_id,
    parse_app,
    parse_group,
    patch_app,
    render_app,
)

EXTENSIONS = ("minHealthySeconds", "progressDeadlineSeconds", "autoRevert")


def errors_of(obj, **kw) -> dict[str, list[str]]:
    """parse_app's 422 details as {path: errors}."""
    with pytest.raises(InvalidDefinition) as e:
        parse_app(obj, **kw)
    return {d["path"]: d["errors"] for d in e.value.details}


def group_errors_of(obj, **kw) -> dict[str, list[str]]:
    with pytest.raises(InvalidDefinition) as e:
        parse_group(obj, **kw)
    return {d["path"]: d["errors"] for d in e.value.details}


@pytest.fixture
def marathon_json(monkeypatch):
    """marathon 0.13's JSON encoders test `collections.Iterable`, which
    Python 3.10 removed: without this, `to_json()` of any app with a nested
    model (container, health check, ...) raises AttributeError."""
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)


# -- ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "base", "expected"), [
    ("app", "/prod", "/prod/app"),
    ("app", "/", "/app"),
    ("/a/b", "/prod", "/a/b"),
    ("/a/b/", "/", "/a/b"),
    ("a/b/", "/x", "/x/a/b"),
    ("../x", "/prod/web", "/prod/x"),
    ("./x", "/prod", "/prod/x"),
    ("..", "/prod", "/"),
    ("../../..", "/a", "/"),
    ("a//b", "/", "/a/b"),
    ("/", "/prod", "/"),
    ("x", "prod", "/prod/x"),
    ("my-app.v2", "/", "/my-app.v2"),
    ("0", "/", "/0"),
])
def test_normalize_id(raw, base, expected):
    assert normalize_id(raw, base) == expected


@pytest.mark.parametrize("raw", ["", "App", "-a", "a-", "a_b", "a..b", ".a", "a.", "a b",
                                 "/prod/Web", "a.-b"])
def test_normalize_id_refuses_bad_segments(raw):
    with pytest.raises(InvalidDefinition) as e:
        normalize_id(raw)
    assert [d["path"] for d in e.value.details] == ["/id"]
    assert e.value.details[0]["errors"][0]


def test_an_app_id_is_resolved_under_base_and_needs_a_name():
    assert parse_app({"id": "web", "cmd": "x"}, base="/prod").id == "/prod/web"
    assert parse_app({"id": "../web", "cmd": "x"}, base="/prod/api").id == "/prod/web"
    assert "root" in errors_of({"id": "/", "cmd": "x"})["/id"][0]
    assert "required" in errors_of({"cmd": "x"})["/id"][0]
    assert errors_of({"id": 5, "cmd": "x"})["/id"] == ["must be a string"]
    for name in RESERVED_NAMES:
        assert "reserved" in errors_of({"id": f"/a/{name}", "cmd": "x"})["/id"][0]
    assert parse_app({"id": "/tasks/a", "cmd": "x"}).id == "/tasks/a"


# -- defaults and the basic fields ------------------------------------------------------


def test_marathon_defaults():
    a = parse_app({"id": "/web", "cmd": "serve"})
    assert a == AppDefinition(id="/web", cmd="serve", port_definitions=DEFAULT_PORT_DEFINITIONS)
    assert (a.instances, a.cpus, a.mem, a.disk, a.gpus) == (1, 1.0, 128.0, 0.0, 0)
    assert (a.backoff_seconds, a.backoff_factor, a.max_launch_delay_seconds) == (1, 1.15, 300)
    assert a.upgrade_strategy == UpgradeStrategy(1.0, 1.0, 10.0, 600.0, True)
    assert a.unreachable_strategy == UnreachableStrategy(True, 300.0, 600.0)
    assert a.kill_selection == "YOUNGEST_FIRST"
    assert a.container is None and a.task_kill_grace_period_seconds is None
    # Marathon's host-networking default: one port, $PORT0.
    assert a.port_definitions == (PortDefinition(0, "tcp", "default"),)


def test_port_definitions_given_or_as_ports():
    assert parse_app({"id": "/a", "cmd": "x", "portDefinitions": []}).port_definitions == ()
    assert parse_app({"id": "/a", "cmd": "x", "ports": []}).port_definitions == ()
    assert parse_app({"id": "/a", "cmd": "x", "ports": [0, 8080]}).port_definitions == (
        PortDefinition(0), PortDefinition(8080))
    a = parse_app({"id": "/a", "cmd": "x", "requirePorts": True, "portDefinitions": [
        {"port": 8080, "protocol": "udp", "name": "dns", "labels": {"vip": "x"}}]})
    assert a.port_definitions == (PortDefinition(8080, "udp", "dns", (("vip", "x"),)),)
    assert a.require_ports
    # The client's non-minimal body sends both; the same ports agree.
    assert parse_app({"id": "/a", "cmd": "x", "ports": [8080],
                      "portDefinitions": [{"port": 8080}]}).port_definitions == (
        PortDefinition(8080),)


def test_port_definition_errors():
    e = errors_of({"id": "/a", "cmd": "x", "ports": [1], "portDefinitions": [
        {"port": 70000, "protocol": "sctp"}, "x", {"port": 80, "name": "a"},
        {"port": 80, "name": "a"}]})
    assert e["/portDefinitions(0)/port"] == ["must be an integer between 0 and 65535"]
    assert e["/portDefinitions(0)/protocol"] == ["must be one of tcp, udp, tcp,udp, udp,tcp"]
    assert "must be an object" in e["/portDefinitions(1)"][0]
    assert e["/portDefinitions"] == ["Port names must be unique.", "Ports must be unique."]
    assert e["/ports"] == ["cannot specify both ports and port definitions"]
    assert errors_of({"id": "/a", "cmd": "x", "ports": [-1, "80"]}) == {
        "/ports(0)": ["must be an integer between 0 and 65535"],
        "/ports(1)": ["must be an integer between 0 and 65535"]}


def test_cmd_args_or_container():
    rule = "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'."
    assert errors_of({"id": "/a"}) == {"/": [rule]}
    both = errors_of({"id": "/a", "cmd": "x", "args": ["y"]})["/"][0]
    assert "cmd and args cannot both be given" in both and rule in both
    assert parse_app({"id": "/a", "args": ["sleep", "1"]}).args == ("sleep", "1")
    # An empty args is no args (Marathon: args.nonEmpty).
    assert parse_app({"id": "/a", "cmd": "x", "args": []}).args is None
    assert errors_of({"id": "/a", "cmd": ""}) == {"/cmd": ["must be a non-empty string"],
                                                  "/": [rule]}
    assert parse_app({"id": "/a", "container": {"docker": {"image": "nginx"}}}).container == \
        Container(type="DOCKER", image="nginx")
    # An imageless MESOS container is no image: it needs cmd or args.
    assert errors_of({"id": "/a", "container": {"type": "MESOS"}}) == {"/": [rule]}
    assert parse_app({"id": "/a", "cmd": "x", "container": {"type": "MESOS"}}).container == \
        Container(type="MESOS")


def test_container_images_and_root_filesystems():
    a = parse_app({"id": "/a", "container": {"type": "MESOS", "docker": {
        "image": "busybox:1.36", "forcePullImage": True}}})
    assert a.container == Container(type="MESOS", image="busybox:1.36", force_pull_image=True)
    b = parse_app({"id": "/a", "cmd": "x", "container": {"docker": {"image": "/srv/rootfs"}}})
    assert b.container == Container(type="DOCKER", rootfs="/srv/rootfs")
    assert render_app(b)["container"]["docker"]["image"] == "/srv/rootfs"
    # What Marathon's client sends for a docker container, every default included.
    c = parse_app({"id": "/a", "container": {"type": "DOCKER", "volumes": [], "portMappings": [],
                                             "docker": {"image": "x", "network": "BRIDGE",
                                                        "privileged": False, "parameters": [],
                                                        "portMappings": []}}})
    assert c.container == Container(type="DOCKER", image="x")


def test_container_errors():
    assert errors_of({"id": "/a", "cmd": "x", "container": {"type": "LXC", "docker": {
        "image": ""}}}) == {
        "/container/type": ["must be one of DOCKER, MESOS"],
        "/container/docker/image": ["must be a non-empty string (an image reference, or the "
                                    "absolute path of a root filesystem on the agents)"]}
    assert errors_of({"id": "/a", "container": {"type": "DOCKER"}}) == {
        "/container/docker": ["a DOCKER container needs docker.image"]}
    assert errors_of({"id": "/a", "container": {"docker": {}}}) == {
        "/container/docker/image": ["is required"]}
    assert "/container" in errors_of({"id": "/a", "cmd": "x", "container": "docker"})
    e = errors_of({"id": "/a", "container": {
        "volumes": [{"containerPath": "/d", "hostPath": "/d", "mode": "RW"}],
        "portMappings": [{"containerPort": 80}],
        "docker": {"image": "x", "privileged": True, "parameters": [{"key": "a", "value": "b"}],
                   "credential": {"principal": "p"}}}})
    assert set(e) == {"/container/volumes", "/container/portMappings",
                      "/container/docker/privileged", "/container/docker/parameters",
                      "/container/docker/credential"}
    assert e.pop("/container/portMappings") == [
        "portMappings are not allowed with host-networking"]
    assert all("not supported" in m[0] for m in e.values())


@pytest.mark.parametrize(("field", "value", "message"), [
    ("instances", -1, "must be an integer ≥ 0"),
    ("instances", 1.5, "must be an integer ≥ 0"),
    ("instances", "2", "must be an integer ≥ 0"),
    ("instances", True, "must be an integer ≥ 0"),
    ("instances", 2**31, "must be at most 2147483647"),
    ("instances", 10**400, "must be at most 2147483647"),
    ("mem", 10**400, "must be at most 2147483647"),
    ("mem", 1e300, "must be at most 2147483647"),
    ("cpus", 0, "must be a number ≥ 0.001"),
    ("cpus", "1", "must be a number ≥ 0.001"),
    ("cpus", math.nan, "must be a number ≥ 0.001"),
    ("mem", -1, "must be a number ≥ 0"),
    ("mem", math.inf, "must be a number ≥ 0"),
    ("disk", -0.5, "must be a number ≥ 0"),
    ("gpus", -1, "must be an integer ≥ 0"),
    ("gpus", 0.5, "must be an integer ≥ 0"),
    ("backoffSeconds", -1, "must be a number ≥ 0"),
    ("backoffFactor", 0.99, "must be a number ≥ 1"),
    ("maxLaunchDelaySeconds", -1, "must be a number ≥ 0"),
    ("taskKillGracePeriodSeconds", -1, "must be a number ≥ 0"),
    ("requirePorts", "yes", "must be true or false"),
    ("killSelection", "RANDOM", "must be one of YOUNGEST_FIRST, OLDEST_FIRST"),
    ("user", 0, "must be a string"),
    ("args", "sleep 1", "must be an array of strings"),
    ("env", ["A=1"], "must be an object of string values"),
    ("labels", "x", "must be an object of string values"),
    ("dependencies", "/db", "must be an array"),
    ("healthChecks", {}, "must be an array"),
    ("upgradeStrategy", 1, "must be an object {minimumHealthCapacity, maximumOverCapacity, "
                           "...}"),
])
def test_field_rules(field, value, message):
    assert errors_of({"id": "/a", "cmd": "x", field: value})[f"/{field}"] == [message]


def test_numbers_take_marathon_s_integer_forms():
    a = parse_app({"id": "/a", "cmd": "x", "instances": 3.0, "cpus": 2, "mem": 64,
                   "backoffSeconds": 0, "taskKillGracePeriodSeconds": 5})
    assert a.instances == 3 and isinstance(a.instances, int)
    assert a.cpus == 2.0 and isinstance(a.cpus, float)
    assert a.task_kill_grace_period_seconds == 5.0


def test_every_bad_field_is_reported_at_once():
    e = errors_of({"id": "Bad_Id", "cmd": "x", "cpus": -1, "mem": "lots", "instances": -2,
                   "env": {"A": 1}, "labels": {"b": None}, "killSelection": "x",
                   "upgradeStrategy": {"minimumHealthCapacity": 2, "maximumOverCapacity": -1},
                   "unreachableStrategy": "sometimes", "dependencies": ["UP"]})
    assert set(e) == {"/id", "/cpus", "/mem", "/instances", "/env/A", "/labels/b",
                      "/killSelection", "/upgradeStrategy/minimumHealthCapacity",
                      "/upgradeStrategy/maximumOverCapacity", "/unreachableStrategy",
                      "/dependencies(0)"}
    assert e["/upgradeStrategy/minimumHealthCapacity"] == ["must be a number between 0 and 1"]


def test_the_422_body_and_message():
    with pytest.raises(InvalidDefinition) as e:
        parse_app({"id": "/a", "cmd": "x", "instances": -1})
    assert e.value.body() == {"message": "Object is not valid", "details": [
        {"path": "/instances", "errors": ["must be an integer ≥ 0"]}]}
    assert str(e.value) == "Object is not valid: /instances: must be an integer ≥ 0"
    assert errors_of([]) == {"/": ["must be a JSON object (an app definition)"]}


def test_unknown_keys_are_ignored_and_nulls_are_left_out():
    a = parse_app({"id": "/a", "cmd": "x", "tasksRunning": 3, "version": "2020-01-01",
                   "executor": "//cmd", "fetch": [], "uris": [], "secrets": {}, "whatever": {}})
    assert a == parse_app({"id": "/a", "cmd": "x"})
    nulls = {k: None for k in ("args", "user", "instances", "cpus", "mem", "disk", "gpus", "env",
                               "labels", "container", "healthChecks", "constraints",
                               "acceptedResourceRoles", "role", "dependencies",
                               "upgradeStrategy", "unreachableStrategy", "killSelection",
                               "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds",
                               "taskKillGracePeriodSeconds", "portDefinitions", "ports",
                               "requirePorts", "executor", "networks", "ipAddress")}
    assert parse_app({"id": "/a", "cmd": "x", **nulls}) == parse_app({"id": "/a", "cmd": "x"})


@pytest.mark.parametrize(("field", "value"), [
    ("fetch", [{"uri": "http://x/y.tgz"}]),
    ("uris", ["http://x/y.tgz"]),
    ("secrets", {"s": {"source": "db/password"}}),
    ("readinessChecks", [{"name": "r"}]),
    ("residency", {"taskLostBehavior": "WAIT_FOREVER"}),
    ("storeUrls", ["http://x"]),
    ("ipAddress", {"networkName": "n"}),
    ("executor", "/opt/my-executor"),
])
def test_marathon_features_juggler_lacks_are_refused_not_ignored(field, value):
    assert "not supported" in errors_of({"id": "/a", "cmd": "x", field: value})[f"/{field}"][0]


def test_host_networking_is_the_default_and_a_container_network_needs_its_name():
    assert parse_app({"id": "/a", "cmd": "x", "networks": [{"mode": "host"}]}) == \
        parse_app({"id": "/a", "cmd": "x"})
    assert "needs the name" in errors_of(
        {"id": "/a", "cmd": "x", "networks": [{"mode": "container"}]})["/networks(0)/name"][0]


def test_env_and_labels():
    a = parse_app({"id": "/a", "cmd": "x", "env": {"B": "2", "A": "1"}, "labels": {"z": "",
                                                                                  "a": "b"}})
    assert a.env == (("A", "1"), ("B", "2")) and a.labels == (("a", "b"), ("z", ""))
    e = errors_of({"id": "/a", "cmd": "x", "env": {"PW": {"secret": "pw"}, "N": 1, "": "x"}})
    assert "secrets are not supported" in e["/env/PW"][0]
    assert e["/env/N"] == ["must be a string"]
    assert e["/env"] == ["names must be non-empty strings"]
    # YAML gives keys that are not strings.
    assert errors_of({"id": "/a", "cmd": "x", "labels": {1: "a"}}) == {
        "/labels": ["names must be non-empty strings"]}


def test_roles():
    a = parse_app({"id": "/a", "cmd": "x", "role": "dev",
                   "acceptedResourceRoles": ["slave_public", "*", "*"]})
    assert a.role == "dev" and a.accepted_resource_roles == ("*", "slave_public")
    e = errors_of({"id": "/a", "cmd": "x", "role": "-x", "acceptedResourceRoles": ["a b", 1]})
    assert set(e) == {"/role", "/acceptedResourceRoles(0)", "/acceptedResourceRoles(1)"}


def test_dependencies_resolve_under_the_app_s_group():
    a = parse_app({"id": "/prod/web", "cmd": "x", "dependencies": ["db", "../ops/log", "/x",
                                                                     "db"]})
    assert a.dependencies == ("/ops/log", "/prod/db", "/x")
    b = parse_app({"id": "web", "cmd": "x", "dependencies": ["./cache"]}, base="/prod")
    assert b.dependencies == ("/prod/cache",)
    assert set(errors_of({"id": "/a", "cmd": "x", "dependencies": ["ok", "No", 3]})) == {
        "/dependencies(1)", "/dependencies(2)"}


def test_kill_selection_and_strategies():
    a = parse_app({"id": "/a", "cmd": "x", "killSelection": "OLDEST_FIRST",
                   "unreachableStrategy": "disabled",
                   "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0,
                                       "minHealthySeconds": 0, "progressDeadlineSeconds": 30,
                                       "autoRevert": False}})
    assert a.kill_selection == "OLDEST_FIRST"
    assert a.unreachable_strategy == UnreachableStrategy(enabled=False)
    assert a.upgrade_strategy == UpgradeStrategy(0.5, 0.0, 0.0, 30.0, False)
    b = parse_app({"id": "/a", "cmd": "x", "unreachableStrategy": {
        "inactiveAfterSeconds": 60, "expungeAfterSeconds": 600}})
    assert b.unreachable_strategy == UnreachableStrategy(True, 60.0, 600.0)
    assert errors_of({"id": "/a", "cmd": "x", "unreachableStrategy": {
        "inactiveAfterSeconds": 700}}) == {
        "/unreachableStrategy/expungeAfterSeconds": ["must be ≥ inactiveAfterSeconds"]}
    assert errors_of({"id": "/a", "cmd": "x", "upgradeStrategy": {
        "minHealthySeconds": 60, "progressDeadlineSeconds": 60}}) == {
        "/upgradeStrategy/progressDeadlineSeconds": [
            "must be greater than minHealthySeconds (an instance counts as healthy only after "
            "minHealthySeconds)"]}
    assert errors_of({"id": "/a", "cmd": "x", "upgradeStrategy": {
        "progressDeadlineSeconds": 0, "autoRevert": "yes"}}) == {
        "/upgradeStrategy/progressDeadlineSeconds": ["must be a number > 0"],
        "/upgradeStrategy/autoRevert": ["must be true or false"]}


# -- health checks ----------------------------------------------------------------------


def check_of(hc, **app) -> HealthCheckDef:
    return parse_app({"id": "/a", "cmd": "x", "healthChecks": [hc], **app}).health_checks[0]


def test_health_check_defaults_and_forms():
    assert check_of({}) == HealthCheckDef(protocol="HTTP", port_index=0)
    assert check_of({"protocol": "TCP", "port": 8080}) == HealthCheckDef(protocol="TCP",
                                                                         port=8080)
    assert check_of({"protocol": "COMMAND", "command": {"value": "true"}}) == \
        HealthCheckDef(protocol="COMMAND", command="true")
    assert check_of({"protocol": "COMMAND", "command": "true"}).command == "true"
    # A command without a protocol is a COMMAND check (what Marathon's client sends).
    assert check_of({"command": {"value": "true"}}).protocol == "COMMAND"
    assert check_of({"protocol": "MESOS_HTTPS", "path": "/h", "ignoreHttp1xx": True}) == \
        HealthCheckDef(protocol="HTTPS", path="/h", port_index=0, ignore_http1xx=True)
    assert check_of({"protocol": "MESOS_TCP", "portIndex": 1, "gracePeriodSeconds": 0,
                     "intervalSeconds": 5, "timeoutSeconds": 2, "maxConsecutiveFailures": 0,
                     "delaySeconds": 0}, portDefinitions=[{"port": 0}, {"port": 0}]) == \
        HealthCheckDef(protocol="TCP", port_index=1, grace_period_seconds=0,
                       interval_seconds=5, timeout_seconds=2, max_consecutive_failures=0,
                       delay_seconds=0)
    # Fields a protocol does not use are left at their defaults (Marathon ignores them).
    assert check_of({"protocol": "COMMAND", "command": "x", "path": "/h", "portIndex": 5,
                     "ignoreHttp1xx": True}) == HealthCheckDef(protocol="COMMAND", command="x")


def test_health_check_errors():
    def e(hc, **app):
        return errors_of({"id": "/a", "cmd": "x", "healthChecks": [hc], **app})

    assert e({"protocol": "UDP"}) == {"/healthChecks(0)/protocol": [
        "must be one of " + ", ".join((*HEALTH_PROTOCOLS, "MESOS_HTTP", "MESOS_HTTPS",
                                       "MESOS_TCP"))]}
    assert e({"protocol": "COMMAND"}) == {
        "/healthChecks(0)/command": ["a COMMAND health check needs a command"]}
    assert e({"protocol": "HTTP", "command": "x"}) == {
        "/healthChecks(0)/command": ["only a COMMAND health check runs a command (this one is "
                                     "HTTP)"]}
    assert e({"command": {"value": ""}}) == {
        "/healthChecks(0)/command": ['must be a non-empty string or {"value": "..."}']}
    assert e({"protocol": "HTTP"}, portDefinitions=[]) == {"/healthChecks(0)": [
        "a HTTP health check needs a port or a portIndex (an index into portDefinitions, and "
        "the app has none)"]}
    assert e({"protocol": "TCP", "portIndex": 1}) == {
        "/healthChecks(0)/portIndex": ["must index portDefinitions: the app has 1 port "
                                       "definition"]}
    assert e({"portIndex": 0, "port": 80}) == {
        "/healthChecks(0)": ["give port or portIndex, not both"]}
    assert e({"port": 0}) == {"/healthChecks(0)/port": ["must be an integer between 1 and "
                                                         "65535"]}
    assert e({"intervalSeconds": 0, "timeoutSeconds": -1, "maxConsecutiveFailures": 1.5}) == {
        "/healthChecks(0)/intervalSeconds": ["must be a number > 0"],
        "/healthChecks(0)/timeoutSeconds": ["must be a number > 0"],
        "/healthChecks(0)/maxConsecutiveFailures": ["must be an integer ≥ 0"]}
    assert e("http") == {"/healthChecks(0)": ["must be an object (a health check)"]}


def test_one_health_check_per_task():
    e = errors_of({"id": "/a", "cmd": "x", "healthChecks": [{}, {"protocol": "TCP"}]})
    assert e == {"/healthChecks": ["juggler runs one health check per task: give at most one "
                                   "(got 2)"]}


# -- constraints (apps/constraints.py parses them) ---------------------------------------------


def test_constraints_are_parsed_and_rendered():
    a = parse_app({"id": "/a", "cmd": "x", "constraints": [
        ["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"],
        {"fieldName": "zone", "operator": "MAX_PER", "value": "2"}]})
    assert a.constraints == (Constraint("hostname", "UNIQUE"), Constraint("rack", "CLUSTER", "r1"),
                             Constraint("zone", "MAX_PER", "2"))
    assert render_app(a)["constraints"] == [["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"],
                                            ["zone", "MAX_PER", "2"]]
    assert parse_app(render_app(a)) == a


def test_constraint_errors_keep_their_paths():
    e = errors_of({"id": "/a", "cmd": "x", "cpus": -1, "constraints": [
        ["hostname", "UNIQUE"], ["rack", "NEAR", "x"]]})
    assert set(e) == {"/cpus", "/constraints(1)"}
    g = group_errors_of({"id": "/g", "apps": [{"id": "a", "cmd": "x",
                                               "constraints": [["h", "BAD"]]}]})
    assert set(g) == {"/apps(0)/constraints(0)"}


# -- rendering --------------------------------------------------------------------------


def rich_app(**changes) -> AppDefinition:
    app = AppDefinition(
        id="/prod/web", args=("serve", "--port", "$PORT0"), user="nobody", instances=3,
        cpus=0.5, mem=256.0, disk=10.0, gpus=1, env=(("A", "1"), ("B", "two")),
        labels=(("team", "web"),),
        container=Container(type="DOCKER", image="nginx:1.25", force_pull_image=True),
        health_checks=(HealthCheckDef(protocol="HTTP", path="/health", port_index=0,
                                      grace_period_seconds=30, interval_seconds=10,
                                      timeout_seconds=5, max_consecutive_failures=2,
                                      delay_seconds=1, ignore_http1xx=True),),
        constraints=(Constraint("hostname", "UNIQUE"), Constraint("rack", "MAX_PER", "2")),
        accepted_resource_roles=("*", "public"), role="dev",
        dependencies=("/prod/cache", "/prod/db"),
        upgrade_strategy=UpgradeStrategy(0.5, 0.25),
        unreachable_strategy=UnreachableStrategy(True, 60.0, 120.0),
        kill_selection="OLDEST_FIRST", backoff_seconds=2.0, backoff_factor=1.5,
        max_launch_delay_seconds=60.0, task_kill_grace_period_seconds=7.5,
        port_definitions=(PortDefinition(0, "tcp", "http", (("vip", "web:80"),)),
                          PortDefinition(9090, "udp")),
        require_ports=True,
    )
    return replace(app, **changes)


def test_render_gives_every_marathon_field_in_marathon_s_spelling():
    r = render_app(rich_app())
    assert set(r) == {
        "id", "args", "user", "instances", "cpus", "mem", "disk", "gpus", "env", "labels",
        "container", "healthChecks", "constraints", "acceptedResourceRoles", "role",
        "dependencies", "upgradeStrategy", "unreachableStrategy", "killSelection",
        "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds",
        "taskKillGracePeriodSeconds", "portDefinitions", "requirePorts", "networks"}
    assert r["networks"] == [{"mode": "host"}]
    assert r["container"] == {"type": "DOCKER", "volumes": [], "docker": {
        "image": "nginx:1.25", "forcePullImage": True, "privileged": False, "parameters": []}}
    assert r["healthChecks"] == [{
        "protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 30,
        "intervalSeconds": 10, "timeoutSeconds": 5, "maxConsecutiveFailures": 2,
        "delaySeconds": 1, "ignoreHttp1xx": True}]
    assert r["upgradeStrategy"] == {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0.25}
    assert r["unreachableStrategy"] == {"inactiveAfterSeconds": 60, "expungeAfterSeconds": 120}
    assert r["portDefinitions"] == [
        {"port": 0, "protocol": "tcp", "name": "http", "labels": {"vip": "web:80"}},
        {"port": 9090, "protocol": "udp", "labels": {}}]
    assert (r["env"], r["labels"]) == ({"A": "1", "B": "two"}, {"team": "web"})
    assert r["taskKillGracePeriodSeconds"] == 7.5 and r["mem"] == 256
    assert json.loads(json.dumps(r)) == r
    assert parse_app(r) == rich_app()


def test_render_leaves_out_unset_options_and_default_extensions():
    r = render_app(parse_app({"id": "/a", "cmd": "x"}))
    assert "args" not in r and "user" not in r and "container" not in r and "role" not in r
    assert "acceptedResourceRoles" not in r and "taskKillGracePeriodSeconds" not in r
    assert r["upgradeStrategy"] == {"minimumHealthCapacity": 1, "maximumOverCapacity": 1}
    s = render_app(rich_app(upgrade_strategy=UpgradeStrategy(1, 1, 0, 60, False)))
    assert s["upgradeStrategy"] == {"minimumHealthCapacity": 1, "maximumOverCapacity": 1,
                                    "minHealthySeconds": 0, "progressDeadlineSeconds": 60,
                                    "autoRevert": False}
    assert render_app(rich_app(unreachable_strategy=UnreachableStrategy(False)))[
        "unreachableStrategy"] == "disabled"
    assert render_app(rich_app(health_checks=(HealthCheckDef("COMMAND", command="true"),)))[
        "healthChecks"] == [{"protocol": "COMMAND", "command": {"value": "true"},
                             "gracePeriodSeconds": 300, "intervalSeconds": 60,
                             "timeoutSeconds": 20, "maxConsecutiveFailures": 3,
                             "delaySeconds": 15}]


def test_marathon_s_client_reads_what_juggler_renders(marathon_json):
    for app in (rich_app(), rich_app(unreachable_strategy=UnreachableStrategy(False),
                                     health_checks=(HealthCheckDef("COMMAND", command="t"),),
                                     container=Container("MESOS", rootfs="/srv/r"))):
        client = MarathonApp.from_json(render_app(app))
        assert client.id == app.id and client.instances == app.instances
        assert client.upgrade_strategy.minimum_health_capacity == 0.5
        assert client.container.docker.image in ("nginx:1.25", "/srv/r")
        # ... and what it sends back is the same app.
        assert parse_app(json.loads(client.to_json())) == app
        assert parse_app(json.loads(client.to_json(minimal=False))) == app
    assert MarathonApp.from_json(render_app(parse_app({"id": "/a", "cmd": "x"}))).cmd == "x"


def test_marathon_s_client_refuses_juggler_s_extensions():
    """Why the extensions are rendered only when set: the client builds its
    objects with cls(**json)."""
    r = render_app(rich_app(upgrade_strategy=UpgradeStrategy(min_healthy_seconds=0)))
    with pytest.raises(TypeError):
        MarathonApp.from_json(r)


def test_what_marathon_s_client_sends_parses(marathon_json):
    client = MarathonApp(
        id="/prod/web", cmd="serve", instances=3, cpus=0.5, mem=256, disk=10,
        env={"A": "1"}, labels={"team": "web"}, user="nobody", role="dev",
        container=MarathonContainer(type="DOCKER", docker=MarathonDockerContainer(
            image="nginx:1.25", force_pull_image=True, network="HOST")),
        health_checks=[MarathonHealthCheck(protocol="HTTP", path="/health", port_index=0,
                                           grace_period_seconds=30, interval_seconds=10,
                                           timeout_seconds=5, max_consecutive_failures=2,
                                           ignore_http1xx=True)],
        constraints=[["hostname", "UNIQUE"]],
        upgrade_strategy=MarathonUpgradeStrategy(minimum_health_capacity=0.5,
                                                 maximum_over_capacity=0.2),
        unreachable_strategy=MarathonUnreachableStrategy(inactive_after_seconds=60,
                                                         expunge_after_seconds=120),
        port_definitions=[ClientPortDefinition(port=0, protocol="tcp", name="http")],
        kill_selection="OLDEST_FIRST", backoff_seconds=2, backoff_factor=1.5,
        max_launch_delay_seconds=60, task_kill_grace_period_seconds=5,
        accepted_resource_roles=["*"], dependencies=["db"], require_ports=False)
    expected = AppDefinition(
        id="/prod/web", cmd="serve", user="nobody", instances=3, cpus=0.5, mem=256, disk=10,
        env=(("A", "1"),), labels=(("team", "web"),),
        container=Container("DOCKER", image="nginx:1.25", force_pull_image=True),
        health_checks=(HealthCheckDef("HTTP", "/health", port_index=0, grace_period_seconds=30,
                                      interval_seconds=10, timeout_seconds=5,
                                      max_consecutive_failures=2, ignore_http1xx=True),),
        constraints=(Constraint("hostname", "UNIQUE"),), accepted_resource_roles=("*",),
        role="dev", dependencies=("/prod/db",), upgrade_strategy=UpgradeStrategy(0.5, 0.2),
        unreachable_strategy=UnreachableStrategy(True, 60, 120), kill_selection="OLDEST_FIRST",
        backoff_seconds=2, backoff_factor=1.5, max_launch_delay_seconds=60,
        task_kill_grace_period_seconds=5, port_definitions=(PortDefinition(0, "tcp", "http"),))
    assert parse_app(json.loads(client.to_json())) == expected
    # The non-minimal body: every unset field as null, read-only fields, "ports": [] ...
    assert parse_app(json.loads(client.to_json(minimal=False))) == expected
    # Command checks are sent as {"value": ...} without a protocol by older callers.
    cmd_check = MarathonApp(id="/c", cmd="x", health_checks=[MarathonHealthCheck(command="t")],
                            unreachable_strategy="disabled")
    parsed = parse_app(json.loads(cmd_check.to_json()))
    assert parsed.health_checks == (HealthCheckDef("COMMAND", command="t"),)
    assert parsed.unreachable_strategy == UnreachableStrategy(False)
    assert parse_app(json.loads(cmd_check.to_json(minimal=False))).health_checks == \
        parsed.health_checks


# -- round trips (Hypothesis) -------------------------------------------------------------

SEGMENT = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?(\.[a-z0-9]{1,3})?", fullmatch=True)
APP_IDS = st.lists(SEGMENT, min_size=1, max_size=3).filter(
    lambda s: s[-1] not in RESERVED_NAMES).map(lambda s: "/" + "/".join(s))
TEXT = st.text(max_size=12)
NAMES = st.text(min_size=1, max_size=8)
PORT_NAMES = st.from_regex(r"[a-z0-9-]{1,8}", fullmatch=True)  # Marathon's port names
ROLES = st.sampled_from(["*", "dev", "ops.team", "a-b_c", "slave_public"])
CONSTRAINTS = st.sampled_from([
    Constraint("hostname", "UNIQUE"), Constraint("rack", "CLUSTER", "r1"),
    Constraint("zone", "GROUP_BY"), Constraint("zone", "GROUP_BY", "3"),
    Constraint("rack", "LIKE", "r[0-9]+"), Constraint("rack", "UNLIKE", "r9"),
    Constraint("hostname", "MAX_PER", "2"), Constraint("os", "IS", "linux")])


def seconds(lo: float = 0.0, hi: float = 1e6, **kw) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, **kw)


def pairs(keys=NAMES, values=TEXT) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    return st.dictionaries(keys, values, max_size=3).map(lambda d: tuple(sorted(d.items())))


@st.composite
def port_definitions(draw) -> tuple[PortDefinition, ...]:
    defs = draw(st.lists(st.builds(
        PortDefinition, port=st.one_of(st.just(0), st.integers(1, 65535)),
        protocol=st.sampled_from(["tcp", "udp", "tcp,udp", "udp,tcp"]),
        name=st.none() | PORT_NAMES, labels=pairs()), max_size=3))
    fixed = [d.port for d in defs if d.port]
    named = [d.name for d in defs if d.name is not None]
    if len(set(fixed)) != len(fixed) or len(set(named)) != len(named):
        return ()
    return tuple(defs)


@st.composite
def networks(draw) -> Network:
    mode = draw(st.sampled_from(["host", "container/bridge", "container"]))
    if mode == "host":
        return Network()
    return Network(mode, name=draw(NAMES) if mode == "container" else None,
                   labels=draw(pairs()))


@st.composite
def port_mappings(draw, mode: str) -> tuple[PortMapping, ...]:
    maps = draw(st.lists(st.builds(
        PortMapping, container_port=st.integers(1, 65535),
        host_port=(st.none() if mode == "container" else st.nothing())
        | st.just(0) | st.integers(1, 65535),
        service_port=st.just(0) | st.integers(1, 65535),
        protocol=st.sampled_from(["tcp", "udp", "udp,tcp"]),
        name=st.none() | PORT_NAMES, labels=pairs()), max_size=3))
    host = [(m.host_port, p) for m in maps if m.host_port for p in m.protocol.split(",")]
    service = [m.service_port for m in maps if m.service_port]
    named = [m.name for m in maps if m.name is not None]
    if any(len(set(x)) != len(x) for x in (host, service, named)):
        return ()
    return tuple(maps)


@st.composite
def health_checks(draw, ports: int) -> HealthCheckDef:
    protocol = draw(st.sampled_from(HEALTH_PROTOCOLS))
    timing = {"grace_period_seconds": draw(seconds()),
              "interval_seconds": draw(seconds(exclude_min=True)),
              "timeout_seconds": draw(seconds(exclude_min=True)),
              "max_consecutive_failures": draw(st.integers(0, 100)),
              "delay_seconds": draw(seconds())}
    if protocol == "COMMAND":
        return HealthCheckDef(protocol, command=draw(st.text(min_size=1)), **timing)
    if ports and draw(st.booleans()):
        where = {"port_index": draw(st.integers(0, ports - 1))}
    else:
        where = {"port": draw(st.integers(1, 65535))}
    http = protocol in ("HTTP", "HTTPS")
    return HealthCheckDef(protocol, path=draw(st.text(min_size=1)) if http else "/",
                          ignore_http1xx=draw(st.booleans()) if http else False,
                          **where, **timing)


@st.composite
def containers(draw, image_needed: bool) -> Container | None:
    kind = draw(st.sampled_from(["image", "rootfs"] + ([] if image_needed else ["none", "bare"])))
    ctype = draw(st.sampled_from(["DOCKER", "MESOS"]))
    force = draw(st.booleans())
    if kind == "image":
        return Container(ctype, image=draw(st.text(min_size=1).filter(
            lambda s: not s.startswith("/"))), force_pull_image=force)
    if kind == "rootfs":
        return Container(ctype, rootfs="/" + draw(TEXT), force_pull_image=force)
    return None if kind == "none" else Container("MESOS")


@st.composite
def upgrade_strategies(draw) -> UpgradeStrategy:
    min_healthy = draw(seconds(0, 1e5))
    return UpgradeStrategy(draw(seconds(0, 1)), draw(seconds(0, 1)), min_healthy,
                           draw(seconds(min_healthy, 1e6, exclude_min=True)), draw(st.booleans()))


@st.composite
def unreachable_strategies(draw) -> UnreachableStrategy:
    if draw(st.booleans()):
        return UnreachableStrategy(enabled=False)
    inactive = draw(seconds())
    return UnreachableStrategy(True, inactive, draw(seconds(inactive, 2e6)))


@st.composite
def apps(draw, with_constraints: bool = True) -> AppDefinition:
    app_id = draw(APP_IDS)
    command = draw(st.sampled_from(["cmd", "args", "neither"]))
    network = draw(networks())
    ports = draw(port_definitions()) if network.mode == "host" else ()
    mappings = draw(port_mappings(network.mode)) if network.mode != "host" else ()
    container = draw(containers(image_needed=command == "neither"))
    if mappings and container is None:
        container = Container("MESOS")
    return AppDefinition(
        id=app_id,
        cmd=draw(st.text(min_size=1)) if command == "cmd" else None,
        args=tuple(draw(st.lists(TEXT, min_size=1, max_size=3))) if command == "args" else None,
        user=draw(st.none() | TEXT),
        instances=draw(st.integers(0, 2**31 - 1)),
        cpus=draw(seconds(0.001, 1e4)),
        mem=draw(seconds(0, 1e9)),
        disk=draw(seconds(0, 1e9)),
        gpus=draw(st.integers(0, 8)),
        env=draw(pairs()),
        labels=draw(pairs()),
        container=container,
        health_checks=tuple(draw(st.lists(health_checks(len(ports) + len(mappings)),
                                          max_size=1))),
        constraints=tuple(draw(st.lists(CONSTRAINTS, max_size=3))) if with_constraints else (),
        accepted_resource_roles=tuple(sorted(draw(st.sets(ROLES, max_size=3)))),
        role=draw(st.none() | ROLES),
        dependencies=tuple(sorted(draw(st.sets(APP_IDS, max_size=3)))),
        upgrade_strategy=draw(upgrade_strategies()),
        unreachable_strategy=draw(unreachable_strategies()),
        kill_selection=draw(st.sampled_from(KILL_SELECTIONS)),
        backoff_seconds=draw(seconds()),
        backoff_factor=draw(seconds(1, 100)),
        max_launch_delay_seconds=draw(seconds()),
        task_kill_grace_period_seconds=draw(st.none() | seconds()),
        port_definitions=ports,
        require_ports=draw(st.booleans()),
        networks=(network,),
        port_mappings=mappings,
    )


@settings(max_examples=200, deadline=None)
@given(apps(with_constraints=False))
def test_parse_inverts_render(app):
    rendered = render_app(app)
    assert parse_app(rendered) == app
    assert parse_app(json.loads(json.dumps(rendered))) == app
    assert render_app(parse_app(rendered)) == rendered


@settings(max_examples=100, deadline=None)
@given(apps())
def test_parse_inverts_render_with_constraints(app):
    assert parse_app(json.loads(json.dumps(render_app(app)))) == app


@settings(max_examples=100, deadline=None)
@given(apps())
def test_marathon_s_client_accepts_every_rendered_app(app):
    rendered = render_app(app)
    for key in EXTENSIONS:
        rendered["upgradeStrategy"].pop(key, None)
    client = MarathonApp.from_json(rendered)
    assert client.id == app.id


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.just(10**400) | st.floats()
                    | TEXT | st.sampled_from(["disabled", "HTTP", "COMMAND", "DOCKER", "/x"]),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8)
FIELDS = st.sampled_from([
    "id", "cmd", "args", "user", "instances", "cpus", "mem", "disk", "gpus", "env", "labels",
    "container", "healthChecks", "constraints", "acceptedResourceRoles", "role", "dependencies",
    "upgradeStrategy", "unreachableStrategy", "killSelection", "backoffSeconds",
    "backoffFactor", "maxLaunchDelaySeconds", "taskKillGracePeriodSeconds", "portDefinitions",
    "ports", "requirePorts", "networks", "executor", "fetch"])


@settings(max_examples=150, deadline=None)
@given(apps(), st.dictionaries(FIELDS, JSON, max_size=3))
def test_any_json_is_an_app_or_a_422(app, noise):
    """Junk in any field: an app (which renders and parses back) or
    InvalidDefinition with at least one detail, never another exception."""
    body = render_app(app) | noise
    try:
        parsed = parse_app(body)
    except InvalidDefinition as e:
        assert e.details and all(d["path"].startswith("/") and d["errors"] for d in e.details)
    else:
        assert parse_app(render_app(parsed)) == parsed


def places(node) -> list[tuple[dict | list, str | int]]:
    """Every (parent, key) of a JSON value, nested ones included."""
    keys = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    out: list[tuple[dict | list, str | int]] = []
    for k, v in keys:
        out.append((node, k))
        out.extend(places(v))
    return out


@settings(max_examples=200, deadline=None)
@given(apps(), st.data())
def test_junk_anywhere_is_a_422_never_a_crash(app, data):
    body = render_app(app)
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = data.draw(st.sampled_from(places(body)))
        parent[key] = data.draw(JSON)
    try:
        parsed = parse_app(body)
    except InvalidDefinition as e:
        assert e.details and all(d["path"].startswith("/") and d["errors"] for d in e.details)
    else:
        assert parse_app(render_app(parsed)) == parsed


# -- PATCH ------------------------------------------------------------------------------


def test_patch_is_a_shallow_merge():
    current = render_app(rich_app())
    before = json.loads(json.dumps(current))
    patched = patch_app(current, {"instances": 5, "env": {"C": "3"}, "labels": None})
    assert current == before
    assert patched == current | {"instances": 5, "env": {"C": "3"}}
    assert parse_app(patched) == rich_app(instances=5, env=(("C", "3"),))


def test_patch_swaps_cmd_and_args():
    current = render_app(parse_app({"id": "/a", "cmd": "x"}))
    patched = patch_app(current, {"args": ["sleep", "9"]})
    assert "cmd" not in patched and parse_app(patched).args == ("sleep", "9")
    back = patch_app(patched, {"cmd": "y"})
    assert "args" not in back and parse_app(back).cmd == "y"


def test_patch_must_be_an_object():
    with pytest.raises(InvalidDefinition) as e:
        patch_app({"id": "/a"}, ["instances", 2])
    assert e.value.details == [{"path": "/", "errors": ["must be a JSON object"]}]


# -- groups -----------------------------------------------------------------------------


def test_group_ids_resolve_under_their_parents():
    g = parse_group({
        "id": "/prod", "dependencies": ["../infra", "db"],
        "apps": [{"id": "web", "cmd": "x", "dependencies": ["db/pg"]},
                 {"id": "/prod/cache", "cmd": "y"}],
        "groups": [{"id": "db", "apps": [{"id": "pg", "cmd": "z", "dependencies": ["../web"]}],
                    "groups": [{"id": "/prod/db/replicas"}]}],
    })
    assert g.id == "/prod" and g.dependencies == ("/infra", "/prod/db")
    assert [a.id for a in g.apps] == ["/prod/web", "/prod/cache"]
    assert g.apps[0].dependencies == ("/prod/db/pg",)
    assert g.groups[0].id == "/prod/db"
    assert g.groups[0].apps[0].dependencies == ("/prod/web",)
    assert g.groups[0].groups[0] == GroupDefinition(id="/prod/db/replicas")
    assert [a.id for a in g.all_apps()] == ["/prod/web", "/prod/cache", "/prod/db/pg"]


def test_group_id_defaults_to_base_and_is_taken_under_it():
    assert parse_group({"apps": [{"id": "a", "cmd": "x"}]}, base="/prod").apps[0].id == \
        "/prod/a"
    assert parse_group({"id": "x"}, base="/prod").id == "/prod/x"
    assert parse_group({}).id == "/"


def test_group_errors_name_the_member():
    e = group_errors_of({
        "id": "/prod",
        "apps": [{"id": "/other/a", "cmd": "x"}, {"id": "b/c", "cmd": "x"},
                 {"id": "ok", "cmd": "x", "cpus": -1}, {"cmd": "x"}, "app"],
        "groups": [{"id": "/elsewhere"}, {"id": "g", "apps": [{"id": "a", "cmd": "x"},
                                                               {"id": "b", "mem": -1}]},
                   {"apps": []}],
        "pods": [{"id": "p"}],
        "dependencies": ["Bad"],
    })
    assert "not child of '/prod'" in e["/apps(0)/id"][0]
    assert "not child of '/prod'" in e["/apps(1)/id"][0]
    assert e["/apps(2)/cpus"] == ["must be a number ≥ 0.001"]
    assert "required" in e["/apps(3)/id"][0]
    assert "must be a JSON object" in e["/apps(4)"][0]
    assert "not child of '/prod'" in e["/groups(0)/id"][0]
    assert e["/groups(1)/apps(1)/mem"] == ["must be a number ≥ 0"]
    assert "/groups(1)/apps(1)" in e  # neither cmd, args nor container
    assert e["/groups(2)/id"] == ["is required"]
    assert "not supported" in e["/pods"][0]
    assert "/dependencies(0)" in e


def test_an_app_and_a_group_may_not_share_an_id():
    e = group_errors_of({"id": "/p", "apps": [{"id": "a", "cmd": "x"}, {"id": "a", "cmd": "y"}],
                         "groups": [{"id": "a"}]})
    assert set(e) == {"/apps(1)/id", "/groups(0)/id"}
    assert "same identifier" in e["/groups(0)/id"][0]


def test_without_instances():
    a = parse_app({"id": "/a", "cmd": "x", "instances": 4})
    assert a.without_instances() == replace(a, instances=5).without_instances()
    assert a.without_instances() != replace(a, cmd="y").without_instances()
