"""An app as Marathon's JSON describes it: the model, its defaults, validation, rendering.

Pure: no I/O. `parse_app(json_object)` turns a Marathon app definition (a dict
as json.loads gives it) into an `AppDefinition` with Marathon's defaults
applied, or raises `InvalidDefinition` listing every bad field in Marathon's 422
shape. `render_app(app)` gives the JSON object back, Marathon-shaped.

Defaults are Marathon's (AppDefinition.scala, docs "Application Basics",
"Health Checks", "Upgrade Strategy"): instances 1, cpus 1, mem 128 (MiB),
disk 0 (MiB), backoffSeconds 1, backoffFactor 1.15, maxLaunchDelaySeconds 300,
upgradeStrategy {minimumHealthCapacity 1, maximumOverCapacity 1}, health
checks gracePeriodSeconds 300, intervalSeconds 60, timeoutSeconds 20,
maxConsecutiveFailures 3, delaySeconds 15; killSelection YOUNGEST_FIRST;
unreachableStrategy {inactiveAfterSeconds 300, expungeAfterSeconds 600}
(docs "Task Handling Configuration"); no
`portDefinitions` and no `ports` given: one port, `[{"port": 0, "protocol":
"tcp", "name": "default"}]` (Marathon's host-networking default; a port 0 is
assigned from the agent's port resources once ports are resources, the
networking issue: until then $PORT0 is set only for fixed ports);
`"portDefinitions": []` asks for none. A `null` field is a field left out,
as in Marathon (Marathon's own Python client sends nulls for every unset field
when asked for a non-minimal body).

Beyond Marathon (Nomad's deployment safety), in `upgradeStrategy`:
`minHealthySeconds` (10: a new instance counts only after being healthy that
long), `progressDeadlineSeconds` (600: a deployment with no instance turning
healthy for that long fails) and `autoRevert` (true: a failed deployment rolls
the app back to its last version that deployed). They are rendered only when
they differ from these defaults, so that Marathon's own clients, which refuse
keys they do not know, read every app that uses only Marathon's fields.

The container: Marathon's `{"type": "MESOS" | "DOCKER", "docker": {"image":
REF}}` (type DOCKER when left out, as in Marathon); an `image` that is an
absolute path names a root filesystem directory on the agents (juggler's
`--rootfs`) instead of an image. No container: the task shares the agent's
filesystem, as Marathon's command apps do.

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
                        readinessChecks, residency, storeUrls, ipAddress, a
                        network other than host, container volumes and port
                        mappings, appc, docker parameters/credentials, privileged,
                        executors other than //cmd: refused, never ignored
    ignored             every other key this module does not know (as Marathon
                        ignores unknown keys), and container.docker.network
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from juggler.apps.constraints import Constraint, parse_constraints
from juggler.common import ids

DEFAULT_INSTANCES = 1
DEFAULT_CPUS = 1.0
DEFAULT_MEM = 128.0
DEFAULT_DISK = 0.0
DEFAULT_BACKOFF_SECONDS = 1.0
DEFAULT_BACKOFF_FACTOR = 1.15
DEFAULT_MAX_LAUNCH_DELAY_SECONDS = 300.0
DEFAULT_MIN_HEALTHY_SECONDS = 10.0
DEFAULT_PROGRESS_DEADLINE_SECONDS = 600.0


class InvalidDefinition(ValueError):
    """A definition Marathon would answer with 422. `details` is Marathon's
    list: [{"path": "/cpus", "errors": ["must be ≥ 0"]}, …], one entry per bad
    field (JSON-pointer-like paths; "/" for the object as a whole)."""

    def __init__(self, details: list[dict[str, Any]], message: str = "Object is not valid") -> None:
        super().__init__(message + ": " + "; ".join(
            f"{d['path']}: {', '.join(d['errors'])}" for d in details))
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """Marathon's 422 body: {"message": "Object is not valid", "details": [...]}."""
        return {"message": self.message, "details": self.details}


@dataclass(frozen=True)
class HealthCheckDef:
    """One of Marathon's healthChecks. `protocol`: COMMAND, HTTP, HTTPS, TCP
    (MESOS_HTTP/MESOS_HTTPS/MESOS_TCP are accepted as their plain forms: the
    check always runs on the agent, by the executor). HTTP/TCP checks name
    their port with `port` or `port_index` (into portDefinitions)."""

    protocol: str = "HTTP"
    path: str = "/"
    port_index: int | None = None
    port: int | None = None
    command: str | None = None
    grace_period_seconds: float = 300.0
    interval_seconds: float = 60.0
    timeout_seconds: float = 20.0
    max_consecutive_failures: int = 3
    delay_seconds: float = 15.0
    ignore_http1xx: bool = False


@dataclass(frozen=True)
class UpgradeStrategy:
    minimum_health_capacity: float = 1.0
    maximum_over_capacity: float = 1.0
    min_healthy_seconds: float = DEFAULT_MIN_HEALTHY_SECONDS
    progress_deadline_seconds: float = DEFAULT_PROGRESS_DEADLINE_SECONDS
    auto_revert: bool = True


@dataclass(frozen=True)
class UnreachableStrategy:
    """`enabled` False is Marathon's "disabled"."""

    enabled: bool = True
    inactive_after_seconds: float = 300.0
    expunge_after_seconds: float = 600.0


@dataclass(frozen=True)
class PortDefinition:
    port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Container:
    """`image` an image reference, or None with `rootfs` an absolute path."""

    type: str = "MESOS"
    image: str | None = None
    rootfs: str | None = None
    force_pull_image: bool = False


@dataclass(frozen=True)
class AppDefinition:
    """An app with every default applied. `id` is absolute and normalised
    ("/group/app"); `env` and `labels` are sorted tuples so that the object
    is hashable and two equal definitions compare equal."""

    id: str
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    user: str | None = None
    instances: int = DEFAULT_INSTANCES
    cpus: float = DEFAULT_CPUS
    mem: float = DEFAULT_MEM
    disk: float = DEFAULT_DISK
    gpus: int = 0
    env: tuple[tuple[str, str], ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    container: Container | None = None
    health_checks: tuple[HealthCheckDef, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    accepted_resource_roles: tuple[str, ...] = ()
    role: str | None = None
    dependencies: tuple[str, ...] = ()
    upgrade_strategy: UpgradeStrategy = field(default_factory=UpgradeStrategy)
    unreachable_strategy: UnreachableStrategy = field(default_factory=UnreachableStrategy)
    kill_selection: str = "YOUNGEST_FIRST"
    backoff_seconds: float = DEFAULT_BACKOFF_SECONDS
    backoff_factor: float = DEFAULT_BACKOFF_FACTOR
    max_launch_delay_seconds: float = DEFAULT_MAX_LAUNCH_DELAY_SECONDS
    task_kill_grace_period_seconds: float | None = None
    port_definitions: tuple[PortDefinition, ...] = ()
    require_ports: bool = False

    def without_instances(self) -> AppDefinition:
        """The definition with `instances` left out of the comparison: two
        definitions that differ only in instances are a scale, not a restart."""
        from dataclasses import replace

        return replace(self, instances=0)


# What parse_app gives an app that names neither portDefinitions nor ports.
DEFAULT_PORT_DEFINITIONS = (PortDefinition(port=0, protocol="tcp", name="default"),)
HEALTH_PROTOCOLS = ("HTTP", "HTTPS", "TCP", "COMMAND")
KILL_SELECTIONS = ("YOUNGEST_FIRST", "OLDEST_FIRST")
CONTAINER_TYPES = ("DOCKER", "MESOS")
PORT_PROTOCOLS = ("tcp", "udp", "tcp,udp", "udp,tcp")
# Last segments an app id may not have: they are routes under /v2/apps/{id}.
RESERVED_NAMES = ("restart", "tasks", "versions")

_MESOS_PROTOCOLS = {"MESOS_HTTP": "HTTP", "MESOS_HTTPS": "HTTPS", "MESOS_TCP": "TCP"}
_SEGMENT = re.compile(
    r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])")
_INT32_MAX = 2**31 - 1
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
    "ipAddress": "ipAddress (an IP per task) is not supported by juggler: apps use host "
                 "networking",
}


# -- ids ----------------------------------------------------------------------------


class _BadId(ValueError):
    pass


def _canonical(raw: Any, base: str) -> str:
    """`raw` resolved under the canonical absolute `base`, as Marathon's
    PathId.canonicalPath does ("." skipped, ".." drops a segment, never above
    the root). Raises _BadId with the reason."""
    if not isinstance(raw, str):
        raise _BadId("must be a string")
    if not raw:
        raise _BadId("must not be empty")
    parts = [] if raw.startswith("/") else [s for s in base.split("/") if s]
    for seg in raw.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
            continue
        if not _SEGMENT.fullmatch(seg):
            raise _BadId(
                f"{raw!r} is not a valid id: segment {seg!r} may only contain lowercase "
                "letters, digits, '-' and '.', with a letter or digit at each end and on "
                "both sides of every '.'")
        parts.append(seg)
    return "/" + "/".join(parts)


def _parent(path_id: str) -> str:
    """"/a/b" → "/a"; "/a" → "/"."""
    return path_id.rsplit("/", 1)[0] or "/"


def normalize_id(raw: str, base: str = "/") -> str:
    """`raw` as an absolute app or group id: relative ids are taken under
    `base`; "." and ".." segments are resolved; no trailing "/". Raises
    InvalidDefinition (path "/id") for an empty id or a segment that is not
    Marathon's (lowercase letters, digits, '-' and '.'; no '-' next to a '.'
    or at either end):
    `^(([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])\\.)*([a-z0-9]|[a-z0-9][a-z0-9\\-]*[a-z0-9])$`.

    "/" (the root group) is a valid result: parse_app refuses it as an app id."""
    try:
        return _canonical(raw, _canonical(base, "/"))
    except _BadId as e:
        raise InvalidDefinition([{"path": "/id", "errors": [str(e)]}]) from None


# -- reading JSON, collecting every error -------------------------------------------------


class _Errors:
    """Marathon's 422 details, one entry per path, in the order found."""

    def __init__(self) -> None:
        self.by_path: dict[str, list[str]] = {}
        self.count = 0

    def add(self, path: str, message: str) -> None:
        self.by_path.setdefault(path or "/", []).append(message)
        self.count += 1

    def raise_any(self) -> None:
        if self.by_path:
            raise InvalidDefinition([{"path": p, "errors": e} for p, e in self.by_path.items()])


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class _Obj:
    """One JSON object at `path`: typed reads of its fields. A bad field is
    recorded in `errors` and read as its default, so that reading goes on and
    every bad field is reported. A null field is a field left out."""

    def __init__(self, obj: dict[str, Any], path: str, errors: _Errors) -> None:
        self.obj, self.path, self.errors = obj, path, errors

    def at(self, key: str) -> str:
        return f"{self.path}/{key}"

    def bad(self, key: str, message: str) -> None:
        self.errors.add(self.at(key), message)

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def child(self, key: str, what: str) -> _Obj | None:
        """The object at `key` (None when left out or not an object)."""
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.bad(key, f"must be an object {what}")
            return None
        return _Obj(value, self.at(key), self.errors)

    def string(self, key: str, default: str | None = None, *,
               nonempty: bool = False) -> str | None:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or (nonempty and not value):
            self.bad(key, "must be a non-empty string" if nonempty else "must be a string")
            return default
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str | None:
        """The value, one of `choices`; None (recorded) when it is not."""
        value = self.obj.get(key)
        if value is None:
            return default
        if value not in choices:
            self.bad(key, "must be one of " + ", ".join(choices))
            return None
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.obj.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.bad(key, "must be true or false")
            return default
        return value

    def number(self, key: str, default: Any, lo: float, hi: float | None = None, *,
               above: bool = False, integer: bool = False) -> Any:
        """A finite number ≥ lo (> lo when `above`) and ≤ hi, at most 2^31-1
        (Marathon's int32; no count, MiB or seconds of an app comes near it);
        an int when `integer` (2.0 reads as 2, as in Marathon)."""
        value = self.obj.get(key)
        if value is None:
            return default
        kind = "an integer" if integer else "a number"
        if hi is not None:
            rule = f"must be {kind} between {_fmt(lo)} and {_fmt(hi)}"
        else:
            rule = f"must be {kind} {'>' if above else '≥'} {_fmt(lo)}"
        # An int is compared as an int: JSON's integers have no size limit,
        # and float(10**400) raises.
        ok = (isinstance(value, int | float) and not isinstance(value, bool)
              and (isinstance(value, int) or math.isfinite(value))
              and (value > lo if above else value >= lo)
              and (hi is None or value <= hi)
              and (not integer or isinstance(value, int) or value.is_integer()))
        if not ok:
            self.bad(key, rule)
            return default
        if value > _INT32_MAX:
            self.bad(key, f"must be at most {_INT32_MAX}")
            return default
        return int(value) if integer else float(value)

    def strings(self, key: str) -> list[str] | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            self.bad(key, "must be an array of strings")
            return None
        return value

    def string_map(self, key: str, *, env: bool = False) -> tuple[tuple[str, str], ...]:
        """A {name: string} object as a sorted tuple of pairs."""
        value = self.obj.get(key)
        if value is None:
            return ()
        if not isinstance(value, dict):
            self.bad(key, "must be an object of string values")
            return ()
        pairs = []
        for name, item in value.items():
            if not isinstance(name, str) or not name:
                self.bad(key, "names must be non-empty strings")
            elif isinstance(item, str):
                pairs.append((name, item))
            elif env and isinstance(item, dict) and "secret" in item:
                self.errors.add(f"{self.at(key)}/{name}", "secrets are not supported by "
                                "juggler: give the variable's value as a string")
            else:
                self.errors.add(f"{self.at(key)}/{name}", "must be a string")
        return tuple(sorted(pairs))

    def items(self, key: str) -> list[tuple[str, Any]]:
        """The elements of the array at `key` with their paths ("/key(0)")."""
        value = self.obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.bad(key, "must be an array")
            return []
        return [(f"{self.at(key)}({i})", item) for i, item in enumerate(value)]

    def id_list(self, key: str, base: str) -> tuple[str, ...]:
        """An array of ids resolved under `base`, sorted and without repeats
        (Marathon keeps dependencies as a set)."""
        out = set()
        for path, raw in self.items(key):
            try:
                out.add(_canonical(raw, base))
            except _BadId as e:
                self.errors.add(path, str(e))
        return tuple(sorted(out))


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
    for path, net in o.items("networks"):
        if not (isinstance(net, dict) and net.get("mode", "host") == "host"):
            errors.add(path, 'only host networking ({"mode": "host"}) is supported by juggler')

    port_definitions = _port_definitions(o)
    checks = o.items("healthChecks")
    if len(checks) > 1:
        o.bad("healthChecks", "juggler runs one health check per task: give at most one "
              f"(got {len(checks)})")
    health_checks = tuple(hc for hc in (_health_check(errors, path, item, len(port_definitions))
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
    if c.raw("portMappings"):
        c.bad("portMappings", "port mappings are not supported by juggler: use "
              "portDefinitions (host networking)")
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
    if d.raw("portMappings"):
        d.bad("portMappings", "port mappings are not supported by juggler: use "
              "portDefinitions (host networking)")
    for key in ("credential", "pullConfig"):
        if d.raw(key) is not None:
            d.bad(key, "registry credentials in an app are not supported by juggler")
    if image is None or ctype is None:
        return None
    if image.startswith("/"):
        return Container(type=ctype, rootfs=image, force_pull_image=force)
    return Container(type=ctype, image=image, force_pull_image=force)


def _port_definitions(o: _Obj) -> tuple[PortDefinition, ...]:
    if o.raw("portDefinitions") is None and o.raw("ports") is None:
        return DEFAULT_PORT_DEFINITIONS
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
        name=p.string("name", nonempty=True),
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


# -- rendering ----------------------------------------------------------------------


def _num(x: float) -> int | float:
    """Whole numbers as JSON integers (Marathon's int fields, and 128 rather
    than 128.0); parse_app reads either back as the same float."""
    return int(x) if float(x).is_integer() and abs(x) <= _INT32_MAX else x


def render_app(app: AppDefinition) -> dict[str, Any]:
    """The definition as Marathon's JSON, every Marathon field present with
    its value (juggler's extensions only when they are not the default).
    parse_app(render_app(a)) == a.

    Fields with no value (cmd, args, user, container, role,
    taskKillGracePeriodSeconds; acceptedResourceRoles when empty) are left
    out, as Marathon ≥ 1.4 leaves out unset options. Every key is one
    Marathon's Python client (`marathon.models.MarathonApp`) accepts."""
    out: dict[str, Any] = {"id": app.id}
    if app.cmd is not None:
        out["cmd"] = app.cmd
    if app.args is not None:
        out["args"] = list(app.args)
    if app.user is not None:
        out["user"] = app.user
    out.update(instances=app.instances, cpus=_num(app.cpus), mem=_num(app.mem),
               disk=_num(app.disk), gpus=app.gpus, env=dict(app.env), labels=dict(app.labels))
    if app.container is not None:
        out["container"] = _render_container(app.container)
    out["healthChecks"] = [_render_health_check(hc) for hc in app.health_checks]
    out["constraints"] = [c.render() for c in app.constraints]
    if app.accepted_resource_roles:
        out["acceptedResourceRoles"] = list(app.accepted_resource_roles)
    if app.role is not None:
        out["role"] = app.role
    out["dependencies"] = list(app.dependencies)
    out["upgradeStrategy"] = _render_upgrade_strategy(app.upgrade_strategy)
    u = app.unreachable_strategy
    out["unreachableStrategy"] = {
        "inactiveAfterSeconds": _num(u.inactive_after_seconds),
        "expungeAfterSeconds": _num(u.expunge_after_seconds),
    } if u.enabled else "disabled"
    out["killSelection"] = app.kill_selection
    out["backoffSeconds"] = _num(app.backoff_seconds)
    out["backoffFactor"] = _num(app.backoff_factor)
    out["maxLaunchDelaySeconds"] = _num(app.max_launch_delay_seconds)
    if app.task_kill_grace_period_seconds is not None:
        out["taskKillGracePeriodSeconds"] = _num(app.task_kill_grace_period_seconds)
    out["portDefinitions"] = [
        {"port": p.port, "protocol": p.protocol}
        | ({"name": p.name} if p.name is not None else {}) | {"labels": dict(p.labels)}
        for p in app.port_definitions]
    out["requirePorts"] = app.require_ports
    return out


def _render_container(c: Container) -> dict[str, Any]:
    out: dict[str, Any] = {"type": c.type, "volumes": []}
    image = c.image if c.image is not None else c.rootfs
    if image is not None:
        out["docker"] = {"image": image, "forcePullImage": c.force_pull_image,
                         "privileged": False, "parameters": []}
    return out


def _render_health_check(hc: HealthCheckDef) -> dict[str, Any]:
    out: dict[str, Any] = {"protocol": hc.protocol}
    if hc.protocol == "COMMAND":
        out["command"] = {"value": hc.command}
    if hc.protocol in ("HTTP", "HTTPS"):
        out["path"] = hc.path
    if hc.port_index is not None:
        out["portIndex"] = hc.port_index
    if hc.port is not None:
        out["port"] = hc.port
    out.update(gracePeriodSeconds=_num(hc.grace_period_seconds),
               intervalSeconds=_num(hc.interval_seconds),
               timeoutSeconds=_num(hc.timeout_seconds),
               maxConsecutiveFailures=hc.max_consecutive_failures,
               delaySeconds=_num(hc.delay_seconds))
    if hc.protocol in ("HTTP", "HTTPS"):
        out["ignoreHttp1xx"] = hc.ignore_http1xx
    return out


def _render_upgrade_strategy(s: UpgradeStrategy) -> dict[str, Any]:
    out: dict[str, Any] = {"minimumHealthCapacity": _num(s.minimum_health_capacity),
                           "maximumOverCapacity": _num(s.maximum_over_capacity)}
    if s.min_healthy_seconds != DEFAULT_MIN_HEALTHY_SECONDS:
        out["minHealthySeconds"] = _num(s.min_healthy_seconds)
    if s.progress_deadline_seconds != DEFAULT_PROGRESS_DEADLINE_SECONDS:
        out["progressDeadlineSeconds"] = _num(s.progress_deadline_seconds)
    if not s.auto_revert:
        out["autoRevert"] = False
    return out


# -- PATCH --------------------------------------------------------------------------


def patch_app(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """PATCH /v2/apps/{id} and PUT with partial=true: the fields of `patch`
    replace those of `current` (both Marathon JSON objects). Raises
    InvalidDefinition when `patch` is not an object.

    Shallow: a field given replaces the whole field (`env`, `container`, …).
    A null field is a field left out (Marathon's AppUpdate), so it keeps the
    current value. Giving `cmd` drops the current `args` and giving `args`
    drops the current `cmd` (an app has one or the other). Neither argument
    is changed."""
    if not isinstance(patch, dict):
        raise InvalidDefinition([{"path": "/", "errors": ["must be a JSON object"]}])
    given = {k: v for k, v in patch.items() if v is not None}
    out = dict(current)
    if "cmd" in given and "args" not in given:
        out.pop("args", None)
    if "args" in given and "cmd" not in given:
        out.pop("cmd", None)
    out.update(given)
    return out


# -- groups -------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupDefinition:
    """A group of POST/PUT /v2/groups: its absolute id, its apps, its
    subgroups and its dependencies."""

    id: str
    apps: tuple[AppDefinition, ...] = ()
    groups: tuple[GroupDefinition, ...] = ()
    dependencies: tuple[str, ...] = ()

    def all_apps(self) -> list[AppDefinition]:
        out = list(self.apps)
        for g in self.groups:
            out.extend(g.all_apps())
        return out


def parse_group(obj: Any, *, base: str = "/") -> GroupDefinition:
    """A Marathon group object → GroupDefinition; apps' relative ids and
    dependencies are resolved against their group. Raises InvalidDefinition.

    `{"id", "apps": [...], "groups": [...], "dependencies": [...]}`: the id is
    taken under `base` ("/" when the body has none: the group is `base`
    itself, as for PUT /v2/groups/{id}); a subgroup's id is taken under its
    parent and must be a direct child of it; an app's id likewise (error path
    "/apps(0)/id", "/groups(1)/apps(0)/cpus", …). The group's dependencies
    are resolved under the group's id, as Marathon does. An app and a group
    with the same id, or two of either, are refused."""
    errors = _Errors()
    group = _group(obj, normalize_id(base), errors, "", parent=None)
    errors.raise_any()
    assert group is not None
    return group


def _group(obj: Any, base: str, errors: _Errors, prefix: str,
           parent: str | None) -> GroupDefinition | None:
    if not isinstance(obj, dict):
        errors.add(prefix, "must be a JSON object (a group)")
        return None
    before = errors.count
    o = _Obj(obj, prefix, errors)
    gid: str | None = base
    if o.raw("id") is None:
        if parent is not None:
            o.bad("id", "is required")
            gid = None
    else:
        try:
            gid = _canonical(o.raw("id"), parent or base)
        except _BadId as e:
            o.bad("id", str(e))
            gid = None
        if gid is not None and parent is not None and (gid == "/" or _parent(gid) != parent):
            o.bad("id", f"Identifier {gid} is not child of '{parent}'. Hint: use relative "
                  "paths.")
            gid = None
    if o.raw("pods"):
        o.bad("pods", "pods are not supported by juggler")
    home = gid or parent or base
    apps = [(path, _app(item, home, errors, path, group=home))
            for path, item in o.items("apps")]
    groups = [(path, _group(item, home, errors, path, parent=home))
              for path, item in o.items("groups")]
    seen: set[str] = set()
    for path, member in [*apps, *groups]:
        if member is None:
            continue
        if member.id in seen:
            errors.add(path + "/id", f"{member.id} is given twice: groups and apps may not "
                       "have the same identifier")
        seen.add(member.id)
    dependencies = o.id_list("dependencies", home)
    if errors.count != before or gid is None:
        return None
    return GroupDefinition(
        id=gid,
        apps=tuple(a for _, a in apps if a is not None),
        groups=tuple(g for _, g in groups if g is not None),
        dependencies=dependencies,
    )
