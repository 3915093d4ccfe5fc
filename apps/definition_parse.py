"""Marathon's JSON → `AppDefinition`. Pure: no I/O.

`parse_app(json_object)` turns a Marathon app definition (a dict as
json.loads gives it) into an `AppDefinition` with Marathon's defaults applied
(definition_model.py), or raises `InvalidDefinition` listing every bad field
in Marathon's 422 shape. A `null` field is a field left out, as in Marathon
(Marathon's own Python client sends nulls for every unset field when asked
for a non-minimal body).

Validation follows Marathon's (AppValidation.scala, the RAML types): an id
of valid segments, not "/" and not ending in restart/tasks/versions; one of
cmd or args, and/or a container with an image; cpus ≥ 0.001, mem, disk,
backoffSeconds, maxLaunchDelaySeconds ≥ 0, backoffFactor ≥ 1, instances and
gpus integers ≥ 0, upgradeStrategy capacities in [0, 1]; env and labels
string to string; an HTTP/TCP check's portIndex indexes portDefinitions (left
out with ports defined: 0); port numbers and names unique; numbers at most
2^31-1. dependencies and acceptedResourceRoles are sets: kept sorted, once each.

Where juggler differs from Marathon (on purpose):

    healthChecks        at most one (the executor runs one check per task);
                        intervalSeconds and timeoutSeconds must be > 0, a port
                        1-65535, port and portIndex not both;
                        MESOS_HTTP/MESOS_HTTPS/MESOS_TCP are read as HTTP/HTTPS/TCP
    upgradeStrategy     progressDeadlineSeconds > minHealthySeconds
    unreachableStrategy inactiveAfterSeconds ≤ expungeAfterSeconds, both ≥ 0
                        (Marathon ≥ 1.5: ≥ 1 and <, defaults 300/600)
    not supported       a non-empty fetch, uris, secrets (also as env values),
                        readinessChecks, residency, storeUrls, ipAddress,
                        container volumes, appc, docker parameters/credentials,
                        privileged, executors other than //cmd: refused, never
                        ignored
    ignored             every other key this module does not know (as Marathon
                        ignores unknown keys)

networks and port mappings: definition_ports.py (and its differences);
portDefinitions only with host networking (Marathon's "portDefinitions are
only allowed with host-networking"), none by default on a container network.

`_app` reads one app of a group too (groups.py).
"""

from __future__ import annotations

from typing import Any

from juggler.apps.constraints import Constraint, parse_constraints
from juggler.apps.definition_fields import _Errors, _Obj
from juggler.apps.definition_model import (
    CONTAINER_TYPES,
    DEFAULT_BACKOFF_FACTOR,
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CPUS,
    DEFAULT_DISK,
    DEFAULT_INSTANCES,
    DEFAULT_MAX_LAUNCH_DELAY_SECONDS,
    DEFAULT_MEM,
    DEFAULT_PORT_DEFINITIONS,
    HEALTH_PROTOCOLS,
    KILL_SELECTIONS,
    PORT_PROTOCOLS,
    RESERVED_NAMES,
    AppDefinition,
    Container,
    HealthCheckDef,
    PortDefinition,
    UnreachableStrategy,
    UpgradeStrategy,
    _BadId,
    _canonical,
    _parent,
    normalize_id,
)
from juggler.apps.definition_ports import parse_networking
from juggler.common import ids

_MESOS_PROTOCOLS = {"MESOS_HTTP": "HTTP", "MESOS_HTTPS": "HTTPS", "MESOS_TCP": "TCP"}
_HC = HealthCheckDef()
_CMD_ARGS_CONTAINER = ("AppDefinition must either contain one of 'cmd' or 'args', "
                       "and/or a 'container'.")
_NO_FETCH = "fetching artifacts is not supported by juggler: put them in the image"
# Marathon fields juggler does not implement: a non-empty value is refused.
_UNSUPPORTED = {
    "fetch": _NO_FETCH,
    "uris": _NO_FETCH,
    "secrets": "secrets are not supported by juggler",
    "readinessChecks": "readiness checks are not supported by juggler: use a health check",
    "residency": "resident apps (persistent volumes) are not supported by juggler",
    "storeUrls": "storeUrls is not supported by juggler",
    "ipAddress": "ipAddress (Marathon < 1.5) is not supported by juggler: give "
                 '"networks": [{"mode": "container", "name": NETWORK}]',
}


def _role(raw: str) -> str | None:
    """The error for a role name the master would refuse, or None."""
    if raw == "*":
        return None
    try:
        ids.check("role", raw)
    except ids.InvalidId as e:
        return str(e)
    return None


# -- the app ------------------------------------------------------------------------


def parse_app(obj: Any, *, base: str = "/") -> AppDefinition:
    """A Marathon app definition (the dict json.loads gave) → AppDefinition,
    defaults applied. A relative `id` is taken under `base`; dependencies
    under the app's group (the parent of its id). Raises InvalidDefinition
    naming every bad field ({"path": "/cpus", "errors": [...]}, "/" for rules
    about the whole app such as cmd/args/container)."""
    errors = _Errors()
    app = _app(obj, normalize_id(base), errors, "", group=None)
    errors.raise_any()
    assert app is not None
    return app


def _app(obj: Any, base: str, errors: _Errors, prefix: str,
         group: str | None) -> AppDefinition | None:
    """The app at `prefix`, or None when it has errors (all recorded).
    `group`: the group that holds it; its id must be directly under it."""
    if not isinstance(obj, dict):
        errors.add(prefix, "must be a JSON object (an app definition)")
        return None
    before = errors.count
    o = _Obj(obj, prefix, errors)
    app_id = _app_id(o, base, group)
    home = _parent(app_id) if app_id else (group or base)

    cmd = o.string("cmd", nonempty=True)
    args = o.strings("args") or None
    seen = errors.count
    container = _container(o)
    container_bad = errors.count > seen
    if cmd is not None and args is not None:
        errors.add(prefix, "cmd and args cannot both be given: " + _CMD_ARGS_CONTAINER)
    elif (cmd is None and args is None and not container_bad
          and not (container and (container.image or container.rootfs))):
        errors.add(prefix, _CMD_ARGS_CONTAINER)

    for key, message in _UNSUPPORTED.items():
        if o.raw(key):
            o.bad(key, message)
    executor = o.raw("executor")
    if executor not in (None, "", "//cmd"):
        o.bad("executor", "custom executors are not supported by juggler")
    networks, port_mappings = parse_networking(o)
    host_mode = networks[0].mode == "host"
    port_definitions = _port_definitions(o, host_mode)
    port_count = len(port_definitions) if host_mode else len(port_mappings)
    checks = o.items("healthChecks")
    if len(checks) > 1:
        o.bad("healthChecks", "juggler runs one health check per task: give at most one "
              f"(got {len(checks)})")
    health_checks = tuple(hc for hc in (_health_check(errors, path, item, port_count)
                                        for path, item in checks) if hc)

    constraints: tuple[Constraint, ...] = ()
    if o.raw("constraints") is not None:
        constraints, details = parse_constraints(o.raw("constraints"))
        for d in details:
            for message in d["errors"]:
                errors.add(prefix + d["path"], message)

    roles: set[str] = set()
    for path, role in o.items("acceptedResourceRoles"):
        why = _role(role) if isinstance(role, str) else "must be a string"
        if why:
            errors.add(path, why)
        else:
            roles.add(role)
    role = o.string("role")
    if role is not None and (why := _role(role)):
        o.bad("role", why)

    app = AppDefinition(
        id=app_id or "/",
        cmd=cmd,
        args=tuple(args) if args else None,
        user=o.string("user"),
        instances=o.number("instances", DEFAULT_INSTANCES, 0, integer=True),
        cpus=o.number("cpus", DEFAULT_CPUS, 0.001),
        mem=o.number("mem", DEFAULT_MEM, 0),
        disk=o.number("disk", DEFAULT_DISK, 0),
        gpus=o.number("gpus", 0, 0, integer=True),
        env=o.string_map("env", env=True),
        labels=o.string_map("labels"),
        container=container,
        health_checks=health_checks,
        constraints=constraints,
        accepted_resource_roles=tuple(sorted(roles)),
        role=role,
        dependencies=o.id_list("dependencies", home),
        upgrade_strategy=_upgrade_strategy(o),
        unreachable_strategy=_unreachable_strategy(o),
        kill_selection=o.choice("killSelection", KILL_SELECTIONS, "YOUNGEST_FIRST") or "",
        backoff_seconds=o.number("backoffSeconds", DEFAULT_BACKOFF_SECONDS, 0),
        backoff_factor=o.number("backoffFactor", DEFAULT_BACKOFF_FACTOR, 1),
        max_launch_delay_seconds=o.number("maxLaunchDelaySeconds",
                                          DEFAULT_MAX_LAUNCH_DELAY_SECONDS, 0),
        task_kill_grace_period_seconds=o.number("taskKillGracePeriodSeconds", None, 0),
        port_definitions=port_definitions,
        require_ports=o.boolean("requirePorts", False),
        networks=networks,
        port_mappings=port_mappings,
    )
    return app if errors.count == before else None


def _app_id(o: _Obj, base: str, group: str | None) -> str | None:
    raw = o.raw("id")
    if raw is None:
        o.bad("id", "is required (an app id such as /group/app)")
        return None
    try:
        app_id = _canonical(raw, group or base)
    except _BadId as e:
        o.bad("id", str(e))
        return None
    if app_id == "/":
        o.bad("id", "must not be the root group \"/\": an app id needs a name (e.g. /app)")
        return None
    if app_id.rsplit("/", 1)[1] in RESERVED_NAMES:
        o.bad("id", "must not end with any of the following reserved keywords: "
              + ", ".join(RESERVED_NAMES))
        return None
    if group is not None and _parent(app_id) != group:
        o.bad("id", f"Identifier {app_id} is not child of '{group}': an app's id must be "
              "directly under its group. Hint: use relative paths.")
        return None
    return app_id


def _container(o: _Obj) -> Container | None:
    c = o.child("container", '{"type": "DOCKER" | "MESOS", "docker": {"image": ...}}')
    if c is None:
        return None
    ctype = c.choice("type", CONTAINER_TYPES, "DOCKER")
    if c.raw("volumes"):
        c.bad("volumes", "volumes are not supported by juggler")
    if c.raw("appc") is not None:
        c.bad("appc", "appc images are not supported by juggler: use docker.image")
    if c.raw("docker") is None:
        if ctype == "DOCKER":
            c.bad("docker", "a DOCKER container needs docker.image")
        return Container(type=ctype or "MESOS")
    d = c.child("docker", '{"image": ...}')
    if d is None:
        return None
    image = d.raw("image")
    if image is None:
        d.bad("image", "is required")
    elif not isinstance(image, str) or not image:
        d.bad("image", "must be a non-empty string (an image reference, or the absolute "
              "path of a root filesystem on the agents)")
        image = None
    force = d.boolean("forcePullImage", False)
    if d.boolean("privileged", False):
        d.bad("privileged", "privileged containers are not supported by juggler")
    if d.raw("parameters"):
        d.bad("parameters", "docker parameters are not supported by juggler")
    for key in ("credential", "pullConfig"):
        if d.raw(key) is not None:
            d.bad(key, "registry credentials in an app are not supported by juggler")
    if image is None or ctype is None:
        return None
    if image.startswith("/"):
        return Container(type=ctype, rootfs=image, force_pull_image=force)
    return Container(type=ctype, image=image, force_pull_image=force)


def _port_definitions(o: _Obj, host_mode: bool) -> tuple[PortDefinition, ...]:
    if o.raw("portDefinitions") is None and o.raw("ports") is None:
        return DEFAULT_PORT_DEFINITIONS if host_mode else ()
    defs = tuple(d for d in (_port_definition(o.errors, path, item)
                             for path, item in o.items("portDefinitions")) if d)
    ports: list[int] = []
    for path, port in o.items("ports"):
        if isinstance(port, int) and not isinstance(port, bool) and 0 <= port <= 65535:
            ports.append(port)
        else:
            o.errors.add(path, "must be an integer between 0 and 65535")
    if o.raw("portDefinitions") is None:
        defs = tuple(PortDefinition(port=p) for p in ports)
    elif ports and [d.port for d in defs] != ports:
        o.bad("ports", "cannot specify both ports and port definitions")
    names = [d.name for d in defs if d.name is not None]
    if len(set(names)) != len(names):
        o.bad("portDefinitions", "Port names must be unique.")
    fixed = [d.port for d in defs if d.port != 0]
    if len(set(fixed)) != len(fixed):
        o.bad("portDefinitions", "Ports must be unique.")
    if defs and not host_mode:
        o.bad("portDefinitions" if o.raw("portDefinitions") else "ports",
              "portDefinitions are only allowed with host-networking")
    return defs


def _port_definition(errors: _Errors, path: str, item: Any) -> PortDefinition | None:
    if not isinstance(item, dict):
        errors.add(path, 'must be an object {"port", "protocol", "name", "labels"}')
        return None
    before = errors.count
    p = _Obj(item, path, errors)
    pd = PortDefinition(
        port=p.number("port", 0, 0, 65535, integer=True),
        protocol=p.choice("protocol", PORT_PROTOCOLS, "tcp") or "",
        name=p.port_name(),
        labels=p.string_map("labels"),
    )
    return pd if errors.count == before else None


def _health_check(errors: _Errors, path: str, item: Any, ports: int) -> HealthCheckDef | None:
    """One check; `ports`: how many port definitions the app has."""
    if not isinstance(item, dict):
        errors.add(path, "must be an object (a health check)")
        return None
    before = errors.count
    h = _Obj(item, path, errors)
    raw_command = h.raw("command")
    command = raw_command.get("value") if isinstance(raw_command, dict) else raw_command
    if raw_command is not None and not (isinstance(command, str) and command):
        h.bad("command", 'must be a non-empty string or {"value": "..."}')
        command = None
    if h.raw("protocol") is None:
        protocol: str | None = "COMMAND" if raw_command is not None else "HTTP"
    else:
        protocol = h.choice("protocol", (*HEALTH_PROTOCOLS, *_MESOS_PROTOCOLS), "HTTP")
        protocol = _MESOS_PROTOCOLS.get(protocol or "", protocol)
    http = protocol in ("HTTP", "HTTPS")
    networked = http or protocol == "TCP"
    if protocol == "COMMAND" and raw_command is None:
        h.bad("command", "a COMMAND health check needs a command")
    elif networked and raw_command is not None:
        h.bad("command", f"only a COMMAND health check runs a command (this one is {protocol})")

    port_index = port = None
    if networked:
        port_index = h.number("portIndex", None, 0, integer=True)
        port = h.number("port", None, 1, 65535, integer=True)
        given_index, given_port = h.raw("portIndex") is not None, h.raw("port") is not None
        if given_index and given_port:
            errors.add(path, "give port or portIndex, not both")
        elif not given_index and not given_port:
            if ports:
                port_index = 0  # Marathon's default: the first port
            else:
                errors.add(path, f"a {protocol} health check needs a port or a portIndex "
                           "(an index into portDefinitions, and the app has none)")
        elif port_index is not None and port_index >= ports:
            h.bad("portIndex", f"must index portDefinitions: the app has {ports} "
                  f"port definition{'s' if ports != 1 else ''}")
    check = HealthCheckDef(
        protocol=protocol or "",
        path=(h.string("path", "/") or "/") if http else "/",
        port_index=port_index,
        port=port,
        command=command if protocol == "COMMAND" else None,
        grace_period_seconds=h.number("gracePeriodSeconds", _HC.grace_period_seconds, 0),
        interval_seconds=h.number("intervalSeconds", _HC.interval_seconds, 0, above=True),
        timeout_seconds=h.number("timeoutSeconds", _HC.timeout_seconds, 0, above=True),
        max_consecutive_failures=h.number("maxConsecutiveFailures",
                                          _HC.max_consecutive_failures, 0, integer=True),
        delay_seconds=h.number("delaySeconds", _HC.delay_seconds, 0),
        ignore_http1xx=h.boolean("ignoreHttp1xx", False) if http else False,
    )
    return check if errors.count == before else None


def _upgrade_strategy(o: _Obj) -> UpgradeStrategy:
    d = UpgradeStrategy()
    u = o.child("upgradeStrategy", "{minimumHealthCapacity, maximumOverCapacity, ...}")
    if u is None:
        return d
    before = u.errors.count
    min_healthy = u.number("minHealthySeconds", d.min_healthy_seconds, 0)
    deadline = u.number("progressDeadlineSeconds", d.progress_deadline_seconds, 0, above=True)
    if u.errors.count == before and deadline <= min_healthy:
        u.bad("progressDeadlineSeconds", "must be greater than minHealthySeconds (an "
              "instance counts as healthy only after minHealthySeconds)")
    return UpgradeStrategy(
        minimum_health_capacity=u.number("minimumHealthCapacity", 1.0, 0, 1),
        maximum_over_capacity=u.number("maximumOverCapacity", 1.0, 0, 1),
        min_healthy_seconds=min_healthy,
        progress_deadline_seconds=deadline,
        auto_revert=u.boolean("autoRevert", True),
    )


def _unreachable_strategy(o: _Obj) -> UnreachableStrategy:
    raw = o.raw("unreachableStrategy")
    if raw == "disabled":
        return UnreachableStrategy(enabled=False)
    if raw is not None and not isinstance(raw, dict):
        o.bad("unreachableStrategy", 'must be "disabled" or an object '
              "{inactiveAfterSeconds, expungeAfterSeconds}")
        return UnreachableStrategy()
    u = o.child("unreachableStrategy", "")
    if u is None:
        return UnreachableStrategy()
    before = u.errors.count
    inactive = u.number("inactiveAfterSeconds", 0.0, 0)
    expunge = u.number("expungeAfterSeconds", 0.0, 0)
    if u.errors.count == before and inactive > expunge:
        u.bad("expungeAfterSeconds", "must be ≥ inactiveAfterSeconds")
    return UnreachableStrategy(inactive_after_seconds=inactive, expunge_after_seconds=expunge)
