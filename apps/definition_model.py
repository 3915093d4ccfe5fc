"""The app model: `AppDefinition` and its parts (frozen dataclasses, every
default applied), Marathon's defaults, app and group ids (`normalize_id`), and
`InvalidDefinition`, Marathon's 422. Pure: no I/O. Read through
definition.py; parsing is definition_parse.py, rendering definition_render.py.

Defaults are Marathon's (AppDefinition.scala, docs "Application Basics",
"Health Checks", "Upgrade Strategy"): instances 1, cpus 1, mem 128 (MiB),
disk 0 (MiB), backoffSeconds 1, backoffFactor 1.15, maxLaunchDelaySeconds 300,
upgradeStrategy {minimumHealthCapacity 1, maximumOverCapacity 1}, health
checks gracePeriodSeconds 300, intervalSeconds 60, timeoutSeconds 20,
maxConsecutiveFailures 3, delaySeconds 15; killSelection YOUNGEST_FIRST;
unreachableStrategy {inactiveAfterSeconds 300, expungeAfterSeconds 600}
(docs "Task Handling Configuration"); no
`portDefinitions` and no `ports` given: one port, `[{"port": 0, "protocol":
"tcp", "name": "default"}]` (Marathon's host-networking default);
`"portDefinitions": []` asks for none; `networks` `[{"mode": "host"}]`.
How ports are assigned (service ports, host ports) is apps/ports.py.

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

`_BadId`, `_canonical`, `_parent` and `_INT32_MAX` are shared with the
parsers and the renderer (definition_fields.py, definition_parse.py,
definition_render.py, groups.py), not with the rest of juggler.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from juggler.apps.constraints import Constraint

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
class PortMapping:
    """One of Marathon's `container.portMappings` (container networking).
    `host_port` None: not published on the agent (Marathon's `container`
    mode without hostPort); 0: any port of the offer. `container_port` 0:
    the same number as the host port (Marathon's docs "Ports").
    `service_port` 0 until the apps service assigns one (apps/ports.py)."""

    container_port: int = 0
    host_port: int | None = 0
    service_port: int = 0
    protocol: str = "tcp"
    name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Network:
    """One of Marathon's `networks`: `mode` "host", "container/bridge" (the
    agent's built-in bridge network) or "container" (the CNI network named
    `name`)."""

    mode: str = "host"
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
    networks: tuple[Network, ...] = (Network(),)
    port_mappings: tuple[PortMapping, ...] = ()

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
NETWORK_MODES = ("host", "container/bridge", "container")
# Last segments an app id may not have: they are routes under /v2/apps/{id}.
RESERVED_NAMES = ("restart", "tasks", "versions")

_SEGMENT = re.compile(
    r"(([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])\.)*([a-z0-9]|[a-z0-9][a-z0-9\-]*[a-z0-9])")
_INT32_MAX = 2**31 - 1


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
