"""What container to build for a task: pure, no I/O.

`ContainerSpec.from_executor_spec` turns the agent's ExecutorSpec (a TaskInfo
plus ids and the image's layers) into plain values the launcher acts on: argv,
environment, hostname, limits, network mode, root filesystem, working
directory and user. The task is checked first by common/task_check.py, the
check the master runs in Accept; what is left here needs the agent (an image
resolved to its layers). Invalid tasks raise `SpecError`, a TaskError naming
the field, with a message a person can act on.

Limits: cpus → cpu.shares (1024 × cpus, the relative weight) *and* a hard
CFS quota of cpus × 100 ms per 100 ms period, as `docker run --cpus`; mem →
the memory limit (swap off); every container gets a pids limit, default
`DEFAULT_PIDS_MAX`, which a task may change with the label `juggler.pids_max`
(common/task_defaults.py). Labels change the rest as Docker's flags do:
`juggler.cpu_shares` is cpu.shares as given (`--cpu-shares`), whatever cpus
says; `juggler.cpu_quota=false` leaves out the CFS quota (Docker sets none
without `--cpus`); `juggler.memory_swap` is memory + swap (`--memory-swap`,
-1 for unlimited swap).

HOME is the user's home from the container's /etc/passwd, looked up by the
launcher at start (it needs the container's files; container/users.py);
`home_from_task` records that the task set HOME itself, which then wins
unless empty (runc's rule). A working directory is cleaned as Docker cleans
it (`clean_path`). A task with a terminal gets
TERM=xterm unless it (or its image) set TERM (moby's CreateDaemonEnvironment).

Privileges as Docker's flags set them (labels, common/task_defaults.py):
`juggler.init` (--init), `juggler.no_new_privileges` (--security-opt
no-new-privileges; off by default, as Docker), `juggler.cap_add` and
`juggler.cap_drop` (on Docker's default set, by moby's rule:
common/task_privileges.py), `juggler.ulimits` (--ulimit: common/ulimits.py).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field

from juggler.common import task_check, task_privileges
from juggler.common.resources import Resources
from juggler.common.task_check import TaskError
from juggler.common.task_defaults import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PIDS_MAX,
    MIN_CPU_SHARES,
    PIDS_MAX_LABEL,
)
from juggler.common.task_privileges import DEFAULT as DEFAULT_CAPABILITIES
from juggler.common.ulimits import Ulimit
from juggler.container.cgroups import Limits
from juggler.v1 import common_pb2, executor_pb2

__all__ = ["DEFAULT_GRACE_SECONDS", "DEFAULT_PATH", "DEFAULT_PIDS_MAX", "PIDS_MAX_LABEL",
           "ContainerSpec", "SpecError", "cpu_quota_us", "cpu_shares", "hostname_for"]

# Docker's PATH for a container whose image sets none (moby's DefaultPathEnv).
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CFS_PERIOD_US = 100_000
MIN_CFS_QUOTA_US = 1_000  # the kernel refuses a smaller quota
_HOSTNAME_BAD = re.compile(r"[^a-z0-9-]+")


class SpecError(TaskError):
    """The task cannot be turned into a container (`field` names the field)."""


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
    # Docker's --init: tini runs the command as its child (container/docker_init.py).
    init: bool = False
    # Docker's --security-opt no-new-privileges (off by default, as Docker's).
    no_new_privileges: bool = False
    # Capability names (no CAP_): Docker's default set ± --cap-add/--cap-drop.
    capabilities: frozenset[str] = DEFAULT_CAPABILITIES
    # Docker's --ulimit; limits not named are the agent's own.
    rlimits: tuple[Ulimit, ...] = ()
    # NETWORK_BRIDGE: the CNI network to join ("bridge": the agent's built-in
    # one), and the published ports as CNI portMappings entries
    # (container/cni_config.py port_mapping). None: no CNI network.
    cni_network: str | None = None
    port_mappings: tuple[dict[str, int | str], ...] = ()
    # No image, no rootfs: the host's filesystem stays writable (else read-only
    # apart from the sandbox and a private /tmp: container/host_view.py).
    writable_host_filesystem: bool = False

    @property
    def memory_mib(self) -> float:
        return (self.limits.memory_bytes or 0) / 2**20

    @classmethod
    def from_executor_spec(cls, spec: executor_pb2.ExecutorSpec) -> ContainerSpec:
        return cls.from_task(spec.task, tuple(spec.layers), spec.framework.user)

    @classmethod
    def from_task(cls, task: common_pb2.TaskInfo, layers: tuple[str, ...] = (),
                  framework_user: str = "") -> ContainerSpec:
        """The container for `task` (as the agent resolved it: an image task
        comes with its layers, top first, and the image's User in
        command.user when the task named none). Its user: command.user, else
        `framework_user` (FrameworkInfo.user, Mesos's rule), else root.
        Raises SpecError for everything task_check.check refuses, and for an
        image not resolved to absolute layer directories."""
        try:
            task_check.check(task)
            labels = task_check.task_labels(task.labels, task.task_id)
        except TaskError as e:
            raise SpecError(e.field, str(e)) from None
        tid = task.task_id
        command, container = task.command, task.container
        if container.image and not layers:
            raise SpecError("container.image", f"task {tid!r}: container.image "
                            f"{container.image!r} was not resolved to layers by the agent")
        if layers and container.rootfs:
            raise SpecError("container.rootfs", f"task {tid!r}: give container.image or "
                            "container.rootfs, not both")
        if any(not layer.startswith("/") for layer in layers):
            raise SpecError("container.image", f"task {tid!r}: image layers must be "
                            "absolute paths")
        argv = list(command.argv)
        if not argv:  # an image task whose config the agent did not apply
            raise SpecError("command.argv", f"task {tid!r}: the command is empty and no "
                            "image config gave one")
        if command.shell:
            argv = ["/bin/sh", "-c", argv[0]]
        hostname = container.hostname or (
            host_name() if container.network == common_pb2.NETWORK_HOST else hostname_for(tid))

        resources = Resources.from_proto(task.resources)  # checked above
        cpus, mem = resources.get("cpus"), resources.get("mem")
        shares = labels.cpu_shares or (cpu_shares(cpus) if cpus else None)
        memory = round(mem * 2**20) or None
        limits = Limits(
            cpu_shares=shares,
            cpu_quota_us=cpu_quota_us(cpus) if cpus and labels.cpu_quota else None,
            cpu_period_us=CFS_PERIOD_US,
            memory_bytes=memory,
            memory_swap_bytes=labels.memory_swap if memory else None,
            pids_max=labels.pids_max,
        )

        user = command.user or framework_user
        env = {
            "PATH": DEFAULT_PATH,
            "HOSTNAME": hostname,
            "HOME": "/root" if user in ("", "root", "0") else "/",
        }
        if container.tty:
            env["TERM"] = "xterm"  # the task's (or its image's) TERM wins, as Docker's
        env.update(command.environment)
        env["JUGGLER_TASK_ID"] = tid

        grace = DEFAULT_GRACE_SECONDS
        if task.kill_policy.HasField("grace_period_seconds"):
            grace = task.kill_policy.grace_period_seconds

        return cls(
            task_id=tid,
            argv=argv,
            env=env,
            hostname=hostname,
            limits=limits,
            network_host=container.network == common_pb2.NETWORK_HOST,
            rootfs=container.rootfs,
            layers=tuple(layers),
            working_dir=clean_path(command.working_directory or "/"),
            user=user,
            grace_seconds=grace,
            labels=dict(task.labels),
            home_from_task="HOME" in command.environment,
            init=labels.init,
            no_new_privileges=labels.no_new_privileges,
            capabilities=task_privileges.effective(labels.cap_add, labels.cap_drop),
            rlimits=labels.ulimits,
            cni_network=(container.network_name or "bridge")
            if container.network == common_pb2.NETWORK_BRIDGE else None,
            port_mappings=tuple(
                {"hostPort": m.host_port, "containerPort": m.container_port,
                 "protocol": m.protocol or "tcp"} for m in container.port_mappings)
            if container.network == common_pb2.NETWORK_BRIDGE else (),
            writable_host_filesystem=container.writable_host_filesystem,
        )


def cpu_shares(cpus: float) -> int:
    return max(MIN_CPU_SHARES, round(cpus * 1024))


def cpu_quota_us(cpus: float) -> int:
    """CFS quota per `CFS_PERIOD_US` that caps the container at `cpus` cores."""
    return max(MIN_CFS_QUOTA_US, round(cpus * CFS_PERIOD_US))


def clean_path(path: str) -> str:
    """An absolute path as Go's filepath.Clean makes it ("/srv/../x/" → "/x"):
    Docker cleans a working directory before it creates and enters it."""
    return "/" + posixpath.normpath(path).lstrip("/")


def host_name() -> str:
    """The agent host's name: a task on the host's network without a hostname of
    its own gets it, as `docker run --network host` gets the daemon host's."""
    return os.uname().nodename


def hostname_for(task_id: str) -> str:
    """A valid hostname from a task id: lowercase, other characters → '-', ≤ 63."""
    name = _HOSTNAME_BAD.sub("-", task_id.lower())[:63].strip("-")
    return name or "task"
