"""An app instance's task, as the apps service asks the master for it. Pure.

From Marathon's model to juggler's TaskInfo:

- `cmd` runs with `/bin/sh -c`, `args` as argv; neither: the image's own
  command;
- the environment is the app's `env` plus what Marathon sets for every task
  (docs "Task Environment Variables"): MARATHON_APP_ID, MARATHON_APP_VERSION,
  MARATHON_APP_RESOURCE_CPUS/MEM/DISK, MARATHON_APP_LABELS and
  MARATHON_APP_LABEL_<NAME>, MESOS_TASK_ID, HOST, and for the task's host
  ports PORT0…, PORT, PORTS, PORT_<NAME> (common/port_env.py), and on a
  container network PORT_<containerPort> (apps/ports.py);
- the network: the app's (`networks`; host by default, as Marathon's), its
  host ports as the "ports" resource and as port mappings (apps/ports.py);
- the first (only) health check runs on the agent by the executor, killing
  the task once unhealthy, as Marathon kills unhealthy instances (unless its
  maxConsecutiveFailures is 0, Marathon's "never kill").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from juggler.apps import ports
from juggler.apps.definition import AppDefinition, HealthCheckDef
from juggler.apps.instances import instance_id_prefix
from juggler.apps.plan import Versioned
from juggler.common.port_env import port_environment
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb


def _label_env(name: str) -> str:
    return "MARATHON_APP_LABEL_" + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def environment(v: Versioned, task_id: str, hostname: str,
                host_ports: Sequence[int] = ()) -> dict[str, str]:
    """The task's environment; `host_ports` in host_port_requests' order."""
    d = v.app
    env = dict(d.env)
    labels = dict(d.labels)
    env.update({
        "MARATHON_APP_ID": d.id,
        "MARATHON_APP_VERSION": v.version,
        "MARATHON_APP_RESOURCE_CPUS": f"{d.cpus:g}",
        "MARATHON_APP_RESOURCE_MEM": f"{d.mem:g}",
        "MARATHON_APP_RESOURCE_DISK": f"{d.disk:g}",
        "MARATHON_APP_LABELS": " ".join(sorted(labels)),
        "MESOS_TASK_ID": task_id,
        "HOST": hostname,
    })
    for name, value in labels.items():
        env[_label_env(name)] = value
    if not ports.host_networking(d):
        # Marathon's PORT_<containerPort>: the host port a container port is
        # published on.
        for inside, host in zip(ports.container_ports(d, host_ports), host_ports,
                                strict=True):
            env[f"PORT_{inside}"] = str(host)
    env.update(port_environment(host_ports, hostname, ports.port_names(d)))
    return env


def health_check(d: AppDefinition, check: HealthCheckDef,
                 host_ports: Sequence[int] = ()) -> pb.HealthCheck:
    """The app's check as the executor runs it, in the task's network
    namespace: a portIndex names the port there (apps/ports.py index_port).
    Raises ValueError for an HTTP/TCP check whose port cannot be known."""
    # Marathon runs HTTP, HTTPS and TCP checks itself, from the start (within
    # the grace period); delaySeconds applies to the checks Mesos runs, as
    # COMMAND (Marathon's docs "Health Checks"). Here the agent runs them all.
    protocol = check.protocol.removeprefix("MESOS_")
    delay = check.delay_seconds if protocol == "COMMAND" else 0.0
    hc = pb.HealthCheck(
        delay_seconds=delay or 1e-3,  # 0 is "the default" in the proto: a tiny delay
        interval_seconds=check.interval_seconds,
        timeout_seconds=check.timeout_seconds,
        # Marathon's maxConsecutiveFailures 0: never kill for it (the check
        # still reports health, turning unhealthy at Mesos's default count).
        consecutive_failures=check.max_consecutive_failures or 0,
        grace_period_seconds=check.grace_period_seconds,
        kill_when_unhealthy=check.max_consecutive_failures > 0)
    if protocol == "COMMAND":
        hc.command.argv.append(check.command or "")
        hc.command.shell = True
        return hc
    port = check.port
    if port is None and check.port_index is not None:
        try:
            port = ports.index_port(d, check.port_index, host_ports)
        except (IndexError, ValueError):
            port = None
    if not port:
        raise ValueError("the health check's port is not known: its portIndex names no "
                         "port of the task (give healthChecks[0].port or a portIndex)")
    if protocol in ("HTTP", "HTTPS"):
        hc.http.port = port
        hc.http.path = check.path or "/"
        hc.http.scheme = "https" if protocol == "HTTPS" else "http"
    else:
        hc.tcp.port = port
    return hc


def task_for(v: Versioned, task_id: str, offer: pb.Offer,
             host_ports: Sequence[int] = ()) -> pb.TaskInfo:
    """The TaskInfo of one instance of `v` on `offer`'s agent, given its
    host ports (apps/ports.py pick_host_ports, in host_port_requests' order)."""
    d = v.app
    task = pb.TaskInfo(name=d.id.strip("/") or d.id, task_id=task_id, agent_id=offer.agent_id,
                       resources=Resources({"cpus": d.cpus, "mem": d.mem, "disk": d.disk},
                                           ports=Ranges.of((p, p) for p in host_ports)
                                           ).to_proto())
    if d.cmd is not None:
        task.command.argv.append(d.cmd)
        task.command.shell = True
    elif d.args:
        task.command.argv.extend(d.args)
    task.command.environment.update(environment(v, task_id, offer.hostname, host_ports))
    if d.user:
        task.command.user = d.user
    task.container.network, task.container.network_name = ports.network_of(d)
    task.container.port_mappings.extend(ports.task_port_mappings(d, host_ports))
    if d.container is not None:
        if d.container.image:
            task.container.image = d.container.image
        elif d.container.rootfs:
            task.container.rootfs = d.container.rootfs
    if d.task_kill_grace_period_seconds is not None:
        task.kill_policy.grace_period_seconds = d.task_kill_grace_period_seconds
    if d.health_checks:
        task.health_check.CopyFrom(health_check(d, d.health_checks[0], host_ports))
    task.labels.update(dict(d.labels))
    return task


# Where a task field comes from in the app definition, for 422's paths.
_FIELD_PATHS = (("command.argv", "/cmd"), ("command.user", "/user"),
                ("command.environment", "/env"),
                ("container.image", "/container/docker/image"),
                ("container.rootfs", "/container/docker/image"),
                ("health_check", "/healthChecks(0)"), ("labels", "/labels"),
                ("resources", "/cpus"))


def check_tasks(v: Versioned) -> None:
    """Refuse (InvalidDefinition, Marathon's 422) an app whose tasks the master
    would refuse in Accept: the same check (common/task_check.py), run on the
    task an instance would get, so that a bad app is refused when it is
    deployed rather than failing at every launch."""
    from juggler.apps.definition import InvalidDefinition
    from juggler.common.task_check import TaskError, check

    offer = pb.Offer(id="check", agent_id="check", hostname="check")
    task_id = instance_id_prefix(v.app.id) + "00000000-0000-0000-0000-000000000000"
    wanted = ports.host_port_requests(v.app)
    spare = iter(p for p in range(31000, 65536) if p not in wanted)
    host_ports = [p or next(spare) for p in wanted]  # stand-ins for the offer's
    try:
        check(task_for(v, task_id, offer, host_ports))
    except ValueError as e:
        field = getattr(e, "field", "")
        path = next((p for f, p in _FIELD_PATHS if field.startswith(f)), "/")
        if not isinstance(e, TaskError):
            path = "/healthChecks(0)"
        raise InvalidDefinition([{"path": path, "errors": [str(e)]}]) from None
