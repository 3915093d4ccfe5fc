"""Containers as Docker has them, on a cluster: what one is, its lifecycle, its
restart policy. Pure, no I/O; containers_state.py moves them.

A container is a record that outlives its processes: an id (64 hex, shown as
12), a unique name, the config it was created with, the agent it is bound to
once it first ran (its writable layer lives there: `ContainerInfo.
writable_layer`), and what became of its last run (exit code, OOM flag,
times, restart count). Each run is one task of the apps service's framework,
`<id12>.<generation>`.

Lifecycle (Container.status; Docker's states, plus STARTING: a task is
launched and not running yet, shown to Docker clients as "created" before the
first run and "restarting" after it):

    CREATED    → STARTING
    STARTING   → RUNNING, RESTARTING, EXITED, DEAD
    RUNNING    → RUNNING, RESTARTING, EXITED, DEAD
    RESTARTING → STARTING, EXITED, DEAD
    EXITED     → STARTING
    terminal: DEAD

RESTARTING: the run ended and the restart policy starts it again after its
backoff delay. DEAD: its agent is gone, and its writable layer with it.
Docker's `paused` and `removing` are not states here (no `docker pause`; a
removal deletes the record at once).

Restart policies (Docker's `--restart`, docs "Start containers
automatically"): `no`; `on-failure[:N]` (a non-zero exit, at most N times);
`always`; `unless-stopped`. A container stopped by its user is not restarted
by its policy; `always` starts such a container again when the service
starts (Docker: "when the daemon restarts"), `unless-stopped` does not. The
delay before a restart starts at 100 ms and doubles each time, up to 1
minute; it is reset once a run lasted 10 s (moby's restartmanager).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from juggler.common.lifecycle import Lifecycle, Step, new_story

__all__ = ["CONTAINER", "CS", "Container", "ContainerConfig", "ContainerError",
           "RestartPolicy", "check_name", "next_delay", "restart_wanted"]


class CS(enum.IntEnum):
    """A container's state (Container.status)."""

    CREATED = 1
    STARTING = 2
    RUNNING = 3
    RESTARTING = 4
    EXITED = 5
    DEAD = 6


CONTAINER = Lifecycle("container", "status", {
    CS.CREATED: {CS.STARTING},
    CS.STARTING: {CS.RUNNING, CS.RESTARTING, CS.EXITED, CS.DEAD},
    CS.RUNNING: {CS.RUNNING, CS.RESTARTING, CS.EXITED, CS.DEAD},
    CS.RESTARTING: {CS.STARTING, CS.EXITED, CS.DEAD},
    CS.EXITED: {CS.STARTING},
    CS.DEAD: set(),
}, lambda s: CS(s).name)


class ContainerError(Exception):
    """A request about containers is refused and nothing was changed. `status`
    is the HTTP status Docker's Engine API answers with (400 bad parameter,
    404 no such container, 409 conflict, 500 server), `message` Docker's text
    where Docker has one."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# Docker's rule for container names (moby daemon/names: validContainerNamePattern).
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")

# Docker's restart backoff (moby restartmanager: backoffMultiplier 2, defaultTimeout
# 100 ms, maxRestartTimeout 1 min); a run of 10 s resets it (its "successful start").
FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0
DEFAULT_STOP_TIMEOUT = 10.0   # docker stop's default grace period (seconds)


def check_name(name: str) -> str:
    """The name without Docker's leading '/'. Raises ContainerError(400)."""
    if not NAME_RE.match(name):
        raise ContainerError(400, f"Invalid container name ({name}), only "
                                  "[a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
    return name.lstrip("/")


@dataclass(frozen=True)
class RestartPolicy:
    """Docker's HostConfig.RestartPolicy: Name "" or "no", "on-failure",
    "always", "unless-stopped"; MaximumRetryCount only with on-failure (0:
    no limit)."""

    name: str = "no"
    max_retry: int = 0

    NAMES = ("no", "on-failure", "always", "unless-stopped")

    @classmethod
    def parse(cls, text: str) -> RestartPolicy:
        """`--restart` as the docker CLI reads it: "no", "always",
        "unless-stopped", "on-failure[:N]". Raises ContainerError(400)."""
        name, sep, count = text.partition(":")
        if not sep:
            return cls.of(name or "no", 0)
        if name != "on-failure":
            raise ContainerError(400, f"invalid restart policy: maximum retry count can only "
                                      f"be used with 'on-failure' ({text})")
        try:
            n = int(count)
        except ValueError:
            raise ContainerError(400, f"invalid restart policy format: maximum retry count "
                                      f"must be an integer ({text})") from None
        return cls.of(name, n)

    @classmethod
    def of(cls, name: str, max_retry: int = 0) -> RestartPolicy:
        """From the API's fields. Raises ContainerError(400) as dockerd does."""
        name = name or "no"
        if name not in cls.NAMES:
            raise ContainerError(400, f"invalid restart policy: unknown policy '{name}'; use "
                                      "one of 'no', 'always', 'on-failure', or 'unless-stopped'")
        if max_retry < 0:
            raise ContainerError(400, "invalid restart policy: maximum retry count cannot be "
                                      "negative")
        if max_retry and name != "on-failure":
            raise ContainerError(400, "invalid restart policy: maximum retry count can only "
                                      "be used with 'on-failure'")
        return cls(name, max_retry)

    def text(self) -> str:
        if self.name == "on-failure" and self.max_retry:
            return f"on-failure:{self.max_retry}"
        return self.name


def restart_wanted(policy: RestartPolicy, exit_code: int, restart_count: int,
                   stopped_by_user: bool) -> bool:
    """Whether a run that ended with `exit_code` is followed by another
    (moby restartmanager.ShouldRestart)."""
    if stopped_by_user or policy.name == "no":
        return False
    if policy.name == "on-failure":
        return exit_code != 0 and (policy.max_retry == 0 or restart_count < policy.max_retry)
    return True   # always, unless-stopped


def next_delay(previous: float, ran_seconds: float) -> float:
    """The delay before the next restart: 100 ms, doubled each time, at most 1
    minute; back to 100 ms after a run of at least 10 s."""
    if previous <= 0 or ran_seconds >= RESET_AFTER:
        return FIRST_DELAY
    return min(MAX_DELAY, previous * 2)


@dataclass
class ContainerConfig:
    """What a container was created with (Docker's Config and HostConfig, the
    parts juggler runs). Sizes in bytes, cpus in cores. `cmd` empty: the
    image's Cmd. Either `image` or `rootfs` (a directory on the agent), or
    neither: the agent host's filesystem, as a Mesos command task."""

    image: str = ""
    rootfs: str = ""
    cmd: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = ""
    user: str = ""
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    open_stdin: bool = False
    stdin_once: bool = False           # the first attach's EOF closes its stdin (docker run -i)
    cpus: float | None = None          # --cpus (NanoCpus / 1e9): a hard cap
    cpu_shares: int | None = None      # --cpu-shares: a relative weight, 1024 = one cpu
    memory: int | None = None          # -m/--memory, bytes
    memory_swap: int | None = None     # --memory-swap, bytes of memory+swap; -1: unlimited
    pids_limit: int | None = None
    # none | host | bridge | a CNI network's name (docker_networks.network_mode)
    network: str = "none"
    # -p: common/published_ports.PortBinding records (hostPort 0: any, picked at each start)
    ports: list[dict[str, Any]] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)        # Config.ExposedPorts, "80/tcp"
    publish_all: bool = False                                # -P
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    auto_remove: bool = False          # --rm
    stop_signal: str = ""              # default: the image's StopSignal, else SIGTERM
    stop_timeout: float | None = None  # default 10 s
    role: str = "*"
    init: bool | None = None           # --init (None: not given, as Docker's *bool)
    security_opt: list[str] = field(default_factory=list)   # --security-opt, as given
    cap_add: list[str] = field(default_factory=list)        # --cap-add, as given
    cap_drop: list[str] = field(default_factory=list)       # --cap-drop, as given
    ulimits: list[str] = field(default_factory=list)        # --ulimit, "name=soft:hard"

    def record(self) -> dict[str, Any]:
        r = asdict(self)
        r["restart"] = {"name": self.restart.name, "max_retry": self.restart.max_retry}
        return r

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> ContainerConfig:
        r = dict(r)
        restart = r.pop("restart", None) or {}
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in r.items() if k in known},
                   restart=RestartPolicy(restart.get("name", "no"), restart.get("max_retry", 0)))


@dataclass(eq=False)
class Container:
    """One container. Times are seconds since the epoch (0: never)."""

    id: str
    name: str
    created: float
    config: ContainerConfig
    status: int = CS.CREATED
    # What the user wants: "running" or "stopped" (desired state, re-driven).
    desired: str = "stopped"
    stopped_by_user: bool = False
    agent_id: str = ""
    hostname: str = ""
    agent_address: str = ""
    task_id: str = ""
    generation: int = 0
    launched: bool = False        # the current task went out in an Accept
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    restart_count: int = 0
    exits: int = 0                 # runs ended so far (for wait?condition=next-exit)
    delay: float = 0.0             # the last restart delay (seconds)
    restart_at: float = 0.0        # monotonic time of the next policy restart
    restart_after_stop: bool = False   # `restart`: start again once stopped
    unreachable: bool = False
    drops: int = 0                 # launches refused in a row (TASK_DROPPED)
    restart_on_recovery: bool = False  # `always`, stopped by its user, at a service start
    # The last kill asked for: re-sent until the run's end is seen.
    kill_grace: float | None = None
    kill_signal: str = ""
    kill_sent: bool = False
    # The current (or last) run's published ports, published_ports.PortBinding
    # records with the host ports given; its IP on its CNI network.
    host_ports: list[dict[str, Any]] = field(default_factory=list)
    ip_address: str = ""
    story: deque[Step] = field(default_factory=new_story)

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def live(self) -> bool:
        """A task of it may run now (launched and not ended)."""
        return self.status in (CS.STARTING, CS.RUNNING) and self.launched

    def move(self, new: CS, stimulus: str, at: float) -> None:
        CONTAINER.move(self, self.id, new, stimulus, at)

    def record(self) -> dict[str, Any]:
        """What the store keeps (JSON)."""
        return {"id": self.id, "name": self.name, "created": self.created,
                "config": self.config.record(), "status": CS(self.status).name.lower(),
                "desired": self.desired, "stoppedByUser": self.stopped_by_user,
                "agentId": self.agent_id, "hostname": self.hostname,
                "agentAddress": self.agent_address, "taskId": self.task_id,
                "generation": self.generation, "launched": self.launched, "pid": self.pid,
                "exitCode": self.exit_code, "oomKilled": self.oom_killed, "error": self.error,
                "startedAt": self.started_at, "finishedAt": self.finished_at,
                "restartCount": self.restart_count, "exits": self.exits, "delay": self.delay,
                "killGrace": self.kill_grace, "killSignal": self.kill_signal,
                "hostPorts": self.host_ports, "ipAddress": self.ip_address}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Container:
        return cls(
            id=r["id"], name=r["name"], created=r["created"],
            config=ContainerConfig.from_record(r["config"]),
            status=CS[r["status"].upper()], desired=r["desired"],
            stopped_by_user=r.get("stoppedByUser", False), agent_id=r.get("agentId", ""),
            hostname=r.get("hostname", ""), agent_address=r.get("agentAddress", ""),
            task_id=r.get("taskId", ""), generation=r.get("generation", 0),
            launched=r.get("launched", False), pid=r.get("pid", 0),
            exit_code=r.get("exitCode", 0), oom_killed=r.get("oomKilled", False),
            error=r.get("error", ""), started_at=r.get("startedAt", 0.0),
            finished_at=r.get("finishedAt", 0.0), restart_count=r.get("restartCount", 0),
            exits=r.get("exits", 0), delay=r.get("delay", 0.0),
            kill_grace=r.get("killGrace"), kill_signal=r.get("killSignal", ""),
            host_ports=list(r.get("hostPorts") or []), ip_address=r.get("ipAddress", ""))
