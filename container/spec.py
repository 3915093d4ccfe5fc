"""What container to build for a task: pure, no I/O.

`ContainerSpec.from_executor_spec` turns the agent's ExecutorSpec (a TaskInfo
plus ids) into plain values the launcher acts on: argv, environment, hostname,
limits, network mode, root filesystem, working directory and user. Invalid
tasks raise `SpecError` with a message a person can act on.

Limits: cpus → cpu.shares (1024 × cpus, the relative weight) *and* a hard
CFS quota of cpus × 100 ms per 100 ms period, as `docker run --cpus`; mem →
the memory limit (swap off); every container gets a pids limit, default
`DEFAULT_PIDS_MAX`, which a task may change with the label

    juggler.pids_max = "<positive integer>"

(TaskInfo has no field for it yet; a label keeps the wire format unchanged).

HOME is the user's home from the container's /etc/passwd, looked up by the
launcher at start (it needs the container's files); `home_from_task` records
that the task set HOME itself, which then wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from juggler.common.resources import ResourceError, Resources
from juggler.container.cgroups import Limits
from juggler.v1 import common_pb2, executor_pb2

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_GRACE_SECONDS = 3.0
MIN_CPU_SHARES = 2
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000  # the kernel refuses a smaller quota
DEFAULT_PIDS_MAX = 4096
PIDS_MAX_LABEL = "juggler.pids_max"
_HOSTNAME_BAD = re.compile(r"[^a-z0-9-]+")
_HOSTNAME_OK = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


class SpecError(ValueError):
    """The task cannot be turned into a container."""


@dataclass(frozen=True)
class ContainerSpec:
    task_id: str
    argv: list[str]
    env: dict[str, str]
    hostname: str
    limits: Limits
    network_host: bool = False
    rootfs: str = ""
    # An image's layer directories, top first (ExecutorSpec.layers): the lower
    # dirs of the overlay instead of `rootfs`.
    layers: tuple[str, ...] = ()
    working_dir: str = "/"
    user: str = ""
    grace_seconds: float = DEFAULT_GRACE_SECONDS
    labels: dict[str, str] = field(default_factory=dict)
    home_from_task: bool = False

    @property
    def memory_mib(self) -> float:
        return (self.limits.memory_bytes or 0) / 2**20

    @classmethod
    def from_executor_spec(cls, spec: executor_pb2.ExecutorSpec) -> ContainerSpec:
        return cls.from_task(spec.task, tuple(spec.layers))

    @classmethod
    def from_task(cls, task: common_pb2.TaskInfo,
                  layers: tuple[str, ...] = ()) -> ContainerSpec:
        if not task.task_id:
            raise SpecError("the task has no task_id")
        command = task.command
        argv = list(command.argv)
        if not argv or not argv[0]:
            raise SpecError(f"task {task.task_id!r}: the command is empty (set command.argv)")
        if command.shell:
            if len(argv) != 1:
                raise SpecError(
                    f"task {task.task_id!r}: a shell command is one string, got {len(argv)}"
                )
            argv = ["/bin/sh", "-c", argv[0]]

        container = task.container
        if container.image and not layers:
            raise SpecError(f"task {task.task_id!r}: container.image {container.image!r} was "
                            "not resolved to layers by the agent")
        if layers and container.rootfs:
            raise SpecError(f"task {task.task_id!r}: give container.image or container.rootfs, "
                            "not both")
        if any(not layer.startswith("/") for layer in layers):
            raise SpecError(f"task {task.task_id!r}: image layers must be absolute paths")
        if container.rootfs and not container.rootfs.startswith("/"):
            raise SpecError(f"task {task.task_id!r}: container.rootfs must be an absolute path, "
                            f"got {container.rootfs!r}")
        working_dir = command.working_directory or "/"
        if not working_dir.startswith("/"):
            raise SpecError(f"task {task.task_id!r}: working_directory must be absolute, "
                            f"got {working_dir!r}")

        if container.hostname:
            if not _HOSTNAME_OK.match(container.hostname):
                raise SpecError(f"task {task.task_id!r}: {container.hostname!r} is not a valid "
                                "hostname (letters, digits and '-', at most 63)")
            hostname = container.hostname
        else:
            hostname = hostname_for(task.task_id)

        try:
            resources = Resources.from_proto(task.resources)
        except ResourceError as e:
            raise SpecError(f"task {task.task_id!r}: {e}") from None
        cpus, mem = resources.get("cpus"), resources.get("mem")
        limits = Limits(
            cpu_shares=cpu_shares(cpus) if cpus else None,
            cpu_quota_us=cpu_quota_us(cpus) if cpus else None,
            cpu_period_us=CFS_PERIOD_US,
            memory_bytes=round(mem * 2**20) or None,
            pids_max=pids_max(task),
        )

        user = command.user
        env = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": hostname,
            "HOME": "/root" if user in ("", "root", "0") else "/",
        }
        env.update(command.environment)
        env["JUGGLER_TASK_ID"] = task.task_id

        grace = DEFAULT_GRACE_SECONDS
        if task.kill_policy.HasField("grace_period_seconds"):
            grace = task.kill_policy.grace_period_seconds
            if grace < 0:
                raise SpecError(f"task {task.task_id!r}: grace_period_seconds is negative")

        return cls(
            task_id=task.task_id,
            argv=argv,
            env=env,
            hostname=hostname,
            limits=limits,
            network_host=container.network == common_pb2.NETWORK_HOST,
            rootfs=container.rootfs,
            layers=tuple(layers),
            working_dir=working_dir,
            user=user,
            grace_seconds=grace,
            labels=dict(task.labels),
            home_from_task="HOME" in command.environment,
        )


def cpu_shares(cpus: float) -> int:
    return max(MIN_CPU_SHARES, round(cpus * 1024))


def cpu_quota_us(cpus: float) -> int:
    """CFS quota per `CFS_PERIOD_US` that caps the container at `cpus` cores."""
    return max(MIN_CFS_QUOTA_US, round(cpus * CFS_PERIOD_US))


def pids_max(task: common_pb2.TaskInfo) -> int:
    raw = task.labels.get(PIDS_MAX_LABEL)
    if raw is None:
        return DEFAULT_PIDS_MAX
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise SpecError(f"task {task.task_id!r}: label {PIDS_MAX_LABEL} must be a positive "
                        f"integer, got {raw!r}")
    return value


def hostname_for(task_id: str) -> str:
    """A valid hostname from a task id: lowercase, other characters → '-', ≤ 63."""
    name = _HOSTNAME_BAD.sub("-", task_id.lower())[:63].strip("-")
    return name or "task"
