"""A container's run as a task, and a run's end as Docker reports it. Pure.

From Docker's model to juggler's TaskInfo (common.proto):

- `cmd` is argv after the image's Entrypoint (the agent applies the image's
  config: images/config.py); empty: the image's Cmd;
- resources: `--cpus` (else `--cpu-shares` / 1024, else 0.1) cores and
  `--memory` (else 128 MiB) for the offer; limits through the labels
  `juggler.cpu_shares`, `juggler.cpu_quota`, `juggler.memory_swap`,
  `juggler.pids_max` (common/task_defaults.py). Docker sets no memory limit
  by default; juggler's offers need one, so a container without `-m` gets
  juggler run's default of 128 MiB (an intended difference);
- the hostname defaults to the id's first 12 characters, as Docker's (with
  `--network host`, the agent host's name, as Docker's);
- the writable layer is kept by the agent under the container's id, so a
  `start` after `stop` finds the files the last run wrote;
- a kill waits `StopTimeout` (10 s, docker stop's default) after the stop
  signal (the image's StopSignal, else SIGTERM: the agent fills it in);
- `--init`, `--security-opt no-new-privileges`, `--cap-add`, `--cap-drop`
  and `--ulimit` become the labels `juggler.init`, `juggler.no_new_privileges`,
  `juggler.cap_add`, `juggler.cap_drop`, `juggler.ulimits`;
- a run launched while a client waits to attach to it (`docker run`, `docker
  start -a`, `juggler run`: the client attaches before it starts) has the label
  `juggler.hold_output`: the executor reads none of its output until that
  client attaches (or 10 s pass), so the client gets every byte, as Docker's.
"""

from __future__ import annotations

from juggler.apps.containers import DEFAULT_STOP_TIMEOUT, Container, ContainerConfig
from juggler.common import task_privileges, ulimits
from juggler.common.resources import Resources
from juggler.common.task_defaults import (
    DEFAULT_HOLD_OUTPUT_SECONDS,
    HOLD_OUTPUT_LABEL,
    INTERACTIVE_LABEL,
    PIDS_MAX_LABEL,
)
from juggler.v1 import common_pb2 as pb

DEFAULT_CPUS = 0.1
DEFAULT_MEM_MIB = 128.0
CPU_SHARES_LABEL = "juggler.cpu_shares"
CPU_QUOTA_LABEL = "juggler.cpu_quota"
MEMORY_SWAP_LABEL = "juggler.memory_swap"



def cpus_of(config: ContainerConfig) -> float:
    if config.cpus:
        return config.cpus
    if config.cpu_shares:
        return config.cpu_shares / 1024
    return DEFAULT_CPUS


def mem_mib_of(config: ContainerConfig) -> float:
    return config.memory / 2**20 if config.memory else DEFAULT_MEM_MIB


def needed(config: ContainerConfig) -> Resources:
    """What an offer must hold for one run (cores, MiB)."""
    return Resources({"cpus": cpus_of(config), "mem": mem_mib_of(config)})


def task_for(c: Container, agent_id: str, *, hold_output: bool = False) -> pb.TaskInfo:
    """The TaskInfo of `c`'s current run (`c.task_id`) on `agent_id`;
    `hold_output`: a client waits to attach to it (label juggler.hold_output,
    unless its labels say otherwise)."""
    cfg = c.config
    task = pb.TaskInfo(name=c.name, task_id=c.task_id, agent_id=agent_id,
                       resources=needed(cfg).to_proto())
    task.command.argv.extend(cfg.cmd)
    task.command.environment.update(cfg.env)
    task.command.user = cfg.user
    task.command.working_directory = cfg.working_dir
    ci = task.container
    ci.image = cfg.image
    ci.rootfs = cfg.rootfs
    ci.network = pb.NETWORK_HOST if cfg.network == "host" else pb.NETWORK_NONE
    # With the host's network, the host's name (the agent gives it), as Docker's.
    ci.hostname = cfg.hostname or ("" if cfg.network == "host" else c.short_id)
    ci.tty = cfg.tty
    if cfg.image or cfg.rootfs:
        ci.writable_layer = c.id
    task.kill_policy.grace_period_seconds = (DEFAULT_STOP_TIMEOUT if cfg.stop_timeout is None
                                             else cfg.stop_timeout)
    if cfg.stop_signal:
        task.kill_policy.signal = cfg.stop_signal
    task.labels.update(cfg.labels)
    if hold_output:
        task.labels.setdefault(HOLD_OUTPUT_LABEL, str(DEFAULT_HOLD_OUTPUT_SECONDS))
    if cfg.open_stdin:
        task.labels[INTERACTIVE_LABEL] = "true"
    if cfg.cpu_shares:
        task.labels[CPU_SHARES_LABEL] = str(cfg.cpu_shares)
        if not cfg.cpus:
            task.labels[CPU_QUOTA_LABEL] = "false"   # --cpu-shares alone caps nothing
    if cfg.memory_swap is not None:
        task.labels[MEMORY_SWAP_LABEL] = str(cfg.memory_swap)
    if cfg.pids_limit is not None and cfg.pids_limit > 0:
        task.labels[PIDS_MAX_LABEL] = str(cfg.pids_limit)
    # Checked when the container was created (docker_views.config_from_create).
    task.labels.update(task_privileges.task_labels(
        init=bool(cfg.init), security_opt=cfg.security_opt, cap_add=cfg.cap_add,
        cap_drop=cfg.cap_drop, ulimit_list=[ulimits.parse(u) for u in cfg.ulimits]))
    return task
