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
  client attaches (or 10 s pass), so the client gets every byte, as Docker's;
- the network: `none` (NETWORK_NONE), `host`, `bridge` (NETWORK_BRIDGE on the
  agent's built-in network "bridge") or a CNI network's name (NETWORK_BRIDGE
  with network_name); published ports (common/published_ports.py) become
  `port_mappings`, their host ports the run's "ports" resources: the fixed
  ones are needed from the offer, the others picked from it at launch
  (`take_from`, into `Container.host_ports`);
- a run with published ports has Marathon's PORT0…, PORT, PORTS and HOST in
  its environment (common/port_env.py), the ports in publishing order: Docker
  sets none of them (an intended difference: a process can learn its random
  host port); the container's own `-e` values win.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from juggler.apps.containers import DEFAULT_STOP_TIMEOUT, Container, ContainerConfig
from juggler.common import published_ports, task_privileges, task_states, ulimits
from juggler.common.port_env import port_environment
from juggler.common.published_ports import PortBinding
from juggler.common.ranges import Ranges
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


def bindings_of(config: ContainerConfig) -> list[PortBinding]:
    """The ports a run of `config` publishes (published_ports.published)."""
    return published_ports.published(
        config.network, [PortBinding.from_record(r) for r in config.ports], config.exposed,
        config.publish_all)


def needed(config: ContainerConfig) -> Resources:
    """What an offer must hold for one run (cores, MiB, its fixed host ports;
    the "any" ones are picked from the offer at launch)."""
    return Resources({"cpus": cpus_of(config), "mem": mem_mib_of(config)},
                     ports=published_ports.fixed_ports(bindings_of(config)))


def take_from(c: Container, available: Resources, rng: random.Random) -> Resources | None:
    """What a run of `c` takes from an offer's `available` resources (its
    cores, MiB and host ports), the host ports given set in `c.host_ports`;
    None when it does not fit (published_ports.assign)."""
    need = needed(c.config)
    if not available.contains(need):
        return None
    bindings = bindings_of(c.config)
    host_ports = published_ports.assign(bindings, available.ports, rng)
    if host_ports is None:
        return None
    c.host_ports = [{**b.record(), "hostPort": port}
                    for b, port in zip(bindings, host_ports, strict=True)]
    return need.scalars() + Resources(ports=Ranges.single(*host_ports))


def ports_unavailable(c: Container, agents: Iterable[tuple[str, Ranges, Ranges]]) -> str:
    """Why `c`'s run cannot have its fixed host ports on any of `agents`
    ((name, total ports, allocated ports): the agents it may run on), as the
    start's error; "" when one may still give them. dockerd's words when every
    agent that has them has them allocated (Docker 28: "failed to set up
    container networking: driver failed programming external connectivity on
    endpoint NAME (ID): Bind for 0.0.0.0:PORT failed: port is already
    allocated"); published_ports.unavailable's when no agent offers them."""
    why = published_ports.unavailable(needed(c.config).ports, agents)
    if why.startswith("Bind for"):
        return (f"{NETWORKING_FAILED}: driver failed programming external "
                f"connectivity on endpoint {c.name} ({c.id}): {why}")
    return f"cannot start container {c.name}: {why}" if why else ""


def end_error(status: pb.TaskStatus) -> str:
    """Docker's State.Error for a run that ended with terminal `status`: its
    message when the container did not end by itself — it never ran (a launch
    failure), or the platform ended it (a limitation other than memory: the
    agent's port watch, REASON_CONTAINER_LIMITATION; its executor or agent
    lost; a drain; a failed health check) — else "". dockerd sets State.Error to its own
    errors (a start that failed, a restart it could not make) and leaves it ""
    for a process's exit, an OOM kill included (State.OOMKilled says that)."""
    if task_states.never_ran(status):
        return status.message
    if status.state != pb.TASK_FINISHED and (status.reason in _PLATFORM_ENDS
                                             or status.state in _LOST_BY_PLATFORM):
        return status.message or pb.Reason.Name(status.reason)
    return ""


# Ends the platform caused (not the command, not a user's kill, not memory:
# dockerd reports an OOM kill with OOMKilled and no Error).
_PLATFORM_ENDS = frozenset({
    pb.REASON_CONTAINER_LIMITATION, pb.REASON_CONTAINER_LIMITATION_PIDS,
    pb.REASON_EXECUTOR_TERMINATED, pb.REASON_EXECUTOR_UNREACHABLE, pb.REASON_AGENT_REMOVED,
    pb.REASON_AGENT_DISCONNECTED, pb.REASON_AGENT_RESTARTED, pb.REASON_AGENT_UNREACHABLE,
    pb.REASON_AGENT_DRAINING, pb.REASON_TASK_UNHEALTHY})
# States only the platform gives (a reconciliation's answers among them).
_LOST_BY_PLATFORM = frozenset({pb.TASK_GONE, pb.TASK_GONE_BY_OPERATOR, pb.TASK_LOST})
NETWORKING_FAILED = "failed to set up container networking"
_NETWORKS = {"none": pb.NETWORK_NONE, "host": pb.NETWORK_HOST}


def task_for(c: Container, agent_id: str, *, hold_output: bool = False) -> pb.TaskInfo:
    """The TaskInfo of `c`'s current run (`c.task_id`) on `agent_id`, its
    ports those of `c.host_ports` (assigned at launch; none in a probe);
    `hold_output`: a client waits to attach to it (label juggler.hold_output,
    unless its labels say otherwise)."""
    cfg = c.config
    mapped = [PortBinding.from_record(r) for r in c.host_ports]
    resources = needed(cfg).scalars() + Resources(
        ports=published_ports.fixed_ports(mapped))
    task = pb.TaskInfo(name=c.name, task_id=c.task_id, agent_id=agent_id,
                       resources=resources.to_proto())
    task.command.argv.extend(cfg.cmd)
    if mapped:
        task.command.environment.update(port_environment([b.host_port for b in mapped],
                                                         c.hostname))
    task.command.environment.update(cfg.env)
    task.command.user = cfg.user
    task.command.working_directory = cfg.working_dir
    ci = task.container
    ci.image = cfg.image
    ci.rootfs = cfg.rootfs
    ci.network = _NETWORKS.get(cfg.network, pb.NETWORK_BRIDGE)
    if ci.network == pb.NETWORK_BRIDGE:
        ci.network_name = "" if cfg.network == "bridge" else cfg.network
        for b in mapped:
            ci.port_mappings.add(host_port=b.host_port, container_port=b.container_port,
                                 protocol=b.protocol)
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
