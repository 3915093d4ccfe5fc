"""Containers in Docker's JSON shapes, both ways. Pure: no I/O, `now` is given.

Out (Engine API 1.47, moby's api/types/container): `summary()` is one item
of GET /containers/json, `inspect()` is GET /containers/{id}/json,
`stats()` one sample of GET /containers/{id}/stats, `status_text()` the
STATUS column of `docker ps` (moby's container.State.String()).

In: `config_from_create()` reads the body of POST /containers/create into a
ContainerConfig. What juggler runs is taken; every other field that is set
(not null, false, 0, "", [] or {}, nor Docker's own "unset" value) is refused
with 400 naming it and the `docker run` flag that sets it: a container never
runs without something its creator asked for.

State → Docker (the contract, /tmp/h/contract.md): CREATED "created";
STARTING "created" before the first run, else "restarting"; RUNNING
"running"; RESTARTING "restarting"; EXITED "exited"; DEAD "dead". juggler
adds " (OOM-killed)" after an Exited status whose run was OOM-killed and
" (agent unreachable)" after Up while its agent cannot be reached.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from juggler.apps import docker_networks as networks
from juggler.apps import docker_process
from juggler.apps.container_tasks import mem_mib_of
from juggler.apps.containers import CS, Container, ContainerConfig, ContainerError, RestartPolicy
from juggler.apps.docker_errors import DockerError
from juggler.common import published_ports
from juggler.common.docker_units import human_duration
from juggler.v1 import agent_pb2

NEVER = "0001-01-01T00:00:00Z"   # Go's zero time.Time, as Docker writes it
MIN_MEMORY = 6 * 1024 * 1024    # moby: "Minimum memory limit allowed is 6MB"


# -- times ---------------------------------------------------------------------------------


def rfc3339(ts: float) -> str:
    """Epoch seconds → RFC 3339 in UTC with a fraction as Go's RFC3339Nano
    writes it (trailing zeros dropped; microseconds: what a float of epoch
    seconds holds); 0 → Go's zero time."""
    if ts <= 0:
        return NEVER
    whole = int(ts)
    nanos = round((ts - whole) * 1e6) * 1000
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    fraction = f"{nanos:09d}".rstrip("0")
    return f"{text}.{fraction}Z" if fraction else f"{text}Z"


# -- state -----------------------------------------------------------------------------------


def state(c: Container) -> str:
    """Docker's State.Status: created, running, restarting, exited, dead. A
    container whose starts all failed (it never ran) stays "created", as
    Docker's does."""
    if c.status == CS.STARTING:
        return "created" if c.restart_count == 0 and c.started_at == 0 else "restarting"
    if c.status == CS.EXITED and c.started_at == 0 and c.restart_count == 0 and c.exits == 0:
        return "created"
    return {CS.CREATED: "created", CS.RUNNING: "running", CS.RESTARTING: "restarting",
            CS.EXITED: "exited", CS.DEAD: "dead"}[CS(c.status)]


def status_text(c: Container, now: float) -> str:
    """`docker ps`'s STATUS (moby container.State.String), `now` in epoch s."""
    s = state(c)
    if s == "running":
        text = f"Up {human_duration(now - c.started_at)}"
        return text + " (agent unreachable)" if c.unreachable else text
    if s == "restarting":
        return f"Restarting ({c.exit_code}) {human_duration(now - c.finished_at)} ago"
    if s == "dead":
        return "Dead"
    if c.started_at == 0:
        return "Created"
    if c.finished_at == 0:
        return ""
    text = f"Exited ({c.exit_code}) {human_duration(now - c.finished_at)} ago"
    return text + " (OOM-killed)" if c.oom_killed else text


def _image(cfg: ContainerConfig) -> str:
    return cfg.image or cfg.rootfs


def _command(cfg: ContainerConfig) -> str:
    return " ".join(cfg.cmd)


def _network(cfg: ContainerConfig) -> str:
    return cfg.network or "none"


def summary(c: Container, now: float) -> dict[str, Any]:
    """One item of GET /containers/json (Docker's container.Summary)."""
    running = state(c) == "running"
    return {
        "Id": c.id, "Names": [f"/{c.name}"], "Image": _image(c.config), "ImageID": "",
        "Command": _command(c.config), "Created": int(c.created),
        "Ports": published_ports.summary_ports(*networks.ports_now(c, running)),
        "Labels": dict(c.config.labels), "State": state(c), "Status": status_text(c, now),
        "HostConfig": {"NetworkMode": _network(c.config)},
        "NetworkSettings": {"Networks": networks.endpoints(c, running)}, "Mounts": [],
    }


def _host_of(address: str) -> str:
    if not address:
        return ""
    return urlsplit("//" + address).hostname or ""


def inspect(c: Container, framework_id: str) -> dict[str, Any]:
    """GET /containers/{id}/json: Docker's ContainerJSON, plus Swarm classic's
    "Node" (the agent) and "Juggler" (task, framework, agent, desired state)."""
    cfg = c.config
    s = state(c)
    running = s == "running"
    return {
        "Id": c.id,
        "Created": rfc3339(c.created),
        "Path": cfg.cmd[0] if cfg.cmd else "",
        "Args": list(cfg.cmd[1:]),
        "State": {
            "Status": s, "Running": running, "Paused": False,
            "Restarting": s == "restarting", "OOMKilled": c.oom_killed, "Dead": s == "dead",
            "Pid": c.pid if running else 0, "ExitCode": c.exit_code, "Error": c.error,
            "StartedAt": rfc3339(c.started_at), "FinishedAt": rfc3339(c.finished_at),
        },
        "Image": _image(cfg),
        "ResolvConfPath": "", "HostnamePath": "", "HostsPath": "", "LogPath": "",
        "Name": f"/{c.name}",
        "RestartCount": c.restart_count,
        "Driver": "overlay2" if cfg.image or cfg.rootfs else "",
        "Platform": "linux",
        "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": {
            "NetworkMode": _network(cfg),
            "RestartPolicy": {"Name": cfg.restart.name, "MaximumRetryCount": cfg.restart.max_retry},
            "AutoRemove": cfg.auto_remove,
            # What the cgroup holds: juggler's default when none was given (README).
            "Memory": cfg.memory or round(mem_mib_of(cfg) * 2**20),
            "MemorySwap": cfg.memory_swap or 0,
            "CpuShares": cfg.cpu_shares or 0,
            "NanoCpus": round((cfg.cpus or 0) * 1e9),
            "PidsLimit": cfg.pids_limit,
            **docker_process.host_config(cfg),
            "Privileged": False, "ReadonlyRootfs": False,
            "PortBindings": published_ports.to_docker(
                published_ports.PortBinding.from_record(r) for r in cfg.ports)[1],
            "PublishAllPorts": cfg.publish_all,
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "GraphDriver": {"Name": "overlay2", "Data": None},
        "Mounts": [],
        "Config": {
            "Hostname": cfg.hostname or c.short_id, "Domainname": "", "User": cfg.user,
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
            "Tty": cfg.tty, "OpenStdin": cfg.open_stdin, "StdinOnce": cfg.stdin_once,
            "Env": [f"{k}={v}" for k, v in cfg.env.items()],
            "Cmd": list(cfg.cmd) or None,
            "Image": _image(cfg), "Volumes": None, "WorkingDir": cfg.working_dir,
            "Entrypoint": None, "OnBuild": None, "Labels": dict(cfg.labels),
            **({"ExposedPorts": {key: {} for key in cfg.exposed}} if cfg.exposed else {}),
            **({"StopSignal": cfg.stop_signal} if cfg.stop_signal else {}),
            **({"StopTimeout": _seconds(cfg.stop_timeout)} if cfg.stop_timeout is not None
               else {}),
        },
        "NetworkSettings": networks.network_settings(c, running),
        "Node": {"ID": c.agent_id, "Name": c.hostname, "Addr": c.agent_address,
                 "IP": _host_of(c.agent_address)},
        "Juggler": {"TaskId": c.task_id, "FrameworkId": framework_id, "AgentId": c.agent_id,
                    "Desired": c.desired, "Unreachable": c.unreachable},
    }


def _seconds(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# -- /containers/json filters -------------------------------------------------------------

FILTERS = ("id", "name", "status", "label", "exited", "ancestor")
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def parse_filters(text: str) -> dict[str, list[str]]:
    """Docker's `filters` query value: {"name": {"web": true}} (or the older
    {"name": ["web"]}). Raises DockerError 400 for bad JSON or a filter this
    server does not know (moby: "invalid filter 'x'")."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise DockerError(400, f"invalid filter: {e}") from None
    if not isinstance(raw, dict):
        raise DockerError(400, "invalid filter: not a JSON object")
    out: dict[str, list[str]] = {}
    for key, values in raw.items():
        if key not in FILTERS:
            raise DockerError(400, f"invalid filter '{key}'")
        if isinstance(values, dict):
            out[key] = [v for v, on in values.items() if on]
        elif isinstance(values, list):
            out[key] = [str(v) for v in values]
        else:
            raise DockerError(400, f"invalid filter '{key}': {values!r}")
    for value in out.get("status", []):
        if value not in STATUSES:
            raise DockerError(400, f"invalid filter 'status={value}'")
    for value in out.get("exited", []):
        if not value.lstrip("-").isdigit():
            raise DockerError(400, f"invalid filter 'exited={value}'")
    return out


def matches(c: Container, filters: dict[str, list[str]]) -> bool:
    """Whether `c` passes every filter (values of one filter are alternatives,
    as Docker's; `name` and `id` are regular expressions searched in the name,
    with or without its "/", and in the id (moby's filters.Match); `label` is
    "key" or "key=value")."""
    for key, values in filters.items():
        if not values:
            continue
        if key == "id" and not any(_search(v, c.id) for v in values):
            return False
        if key == "name" and not any(_search(v, c.name) or _search(v, f"/{c.name}")
                                     for v in values):
            return False
        if key == "status" and state(c) not in values:
            return False
        if key == "exited" and not (state(c) == "exited"
                                    and any(int(v) == c.exit_code for v in values)):
            return False
        if key == "ancestor" and _image(c.config) not in values:
            return False
        if key == "label" and not all(_has_label(c, v) for v in values):
            return False
    return True


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return False


def _has_label(c: Container, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in c.config.labels:
        return False
    return not sep or c.config.labels[key] == value


# -- stats ---------------------------------------------------------------------------------


def _cpu(usage: agent_pb2.TaskUsage | None, online_cpus: int) -> dict[str, Any]:
    if usage is None:
        return {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0,
                              "usage_in_usermode": 0},
                "system_cpu_usage": 0, "online_cpus": online_cpus,
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {
        "cpu_usage": {"total_usage": int(usage.cpu_seconds * 1e9),
                      "usage_in_kernelmode": int(usage.cpu_system_seconds * 1e9),
                      "usage_in_usermode": int(usage.cpu_user_seconds * 1e9)},
        # The agent reports no host total; wall-clock time × cpus stands for it,
        # so that Docker's formula (Δcpu / Δsystem × online_cpus) gives the
        # share of one cpu, as it does on Docker.
        "system_cpu_usage": int(usage.timestamp * 1e9) * online_cpus,
        "online_cpus": online_cpus,
        "throttling_data": {"periods": usage.cpu_periods,
                            "throttled_periods": usage.cpu_throttled_periods,
                            "throttled_time": int(usage.cpu_throttled_seconds * 1e9)},
    }


def stats(c: Container, usage: agent_pb2.TaskUsage | None, pre: agent_pb2.TaskUsage | None,
          *, online_cpus: int, mem_total: int, now: float) -> dict[str, Any]:
    """One sample of Docker's stats JSON from the agent's GetUsage (None: the
    container does not run: zeros, as Docker). `pre` is the previous sample
    (precpu_stats). `mem_total`: the agent's memory in bytes, the limit when
    the container has none."""
    limit = (usage.memory_limit_bytes if usage is not None and usage.memory_limit_bytes
             else c.config.memory or mem_total)
    memory: dict[str, Any] = {}
    if usage is not None:
        memory = {"usage": usage.memory_bytes, "max_usage": usage.memory_peak_bytes,
                  "limit": limit, "stats": {}, "failcnt": usage.oom_kills}
    return {
        "read": rfc3339(usage.timestamp if usage is not None else now),
        "preread": rfc3339(pre.timestamp) if pre is not None else NEVER,
        "id": c.id, "name": f"/{c.name}",
        "num_procs": 0,
        "pids_stats": ({"current": usage.pids, **({"limit": c.config.pids_limit}
                                                  if c.config.pids_limit else {})}
                       if usage is not None else {}),
        "blkio_stats": {"io_service_bytes_recursive": None, "io_serviced_recursive": None,
                        "io_queue_recursive": None, "io_service_time_recursive": None,
                        "io_wait_time_recursive": None, "io_merged_recursive": None,
                        "io_time_recursive": None, "sectors_recursive": None},
        "storage_stats": {},
        "cpu_stats": _cpu(usage, online_cpus),
        "precpu_stats": _cpu(pre, online_cpus) if pre is not None else {
            "cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": memory,
    }


# -- POST /containers/create -------------------------------------------------------------

# Config fields read into the ContainerConfig, or about attaching (the
# attach request says what it attaches) and so not part of it.
_CONFIG_TAKEN = frozenset({
    "Image", "Cmd", "Env", "WorkingDir", "User", "Hostname", "Labels", "Tty", "OpenStdin",
    "ExposedPorts",
    "StopSignal", "StopTimeout", "AttachStdin", "AttachStdout", "AttachStderr", "StdinOnce",
    "HostConfig", "NetworkingConfig"})
_HOST_TAKEN = frozenset({
    "Memory", "MemorySwap", "CpuShares", "NanoCpus", "PidsLimit", "RestartPolicy",
    "AutoRemove", "NetworkMode", "ConsoleSize", "LogConfig", "ContainerIDFile",
    "Init", "SecurityOpt", "CapAdd", "CapDrop", "Ulimits", "PortBindings", "PublishAllPorts"})
# Fields whose empty list is a request, not "unset": the docker CLI sends
# MaskedPaths: [] and ReadonlyPaths: [] for --security-opt systempaths=unconfined.
_SET_WHEN_EMPTY = frozenset({"MaskedPaths", "ReadonlyPaths"})
# Values Docker's clients send for "not set" beside null/false/0/""/[]/{}.
_UNSET = {"MemorySwappiness": -1, "OomScoreAdj": 0}
# The docker run flag behind a field, for the refusal's message.
_FLAGS = {
    "Entrypoint": "--entrypoint", "Volumes": "-v/--volume", "ExposedPorts": "--expose/-p",
    "Domainname": "--domainname", "Healthcheck": "--health-cmd", "MacAddress": "--mac-address",
    "Binds": "-v/--volume", "Mounts": "--mount", "Tmpfs": "--tmpfs", "VolumesFrom":
    "--volumes-from", "VolumeDriver": "--volume-driver", "PortBindings": "-p/--publish",
    "PublishAllPorts": "-P/--publish-all", "Privileged": "--privileged", "CapAdd": "--cap-add",
    "CapDrop": "--cap-drop", "Devices": "--device", "Dns": "--dns", "DnsOptions": "--dns-option",
    "DnsSearch": "--dns-search", "ExtraHosts": "--add-host", "GroupAdd": "--group-add",
    "IpcMode": "--ipc", "PidMode": "--pid", "UTSMode": "--uts", "UsernsMode": "--userns",
    "CgroupnsMode": "--cgroupns", "SecurityOpt": "--security-opt", "ReadonlyRootfs":
    "--read-only", "ShmSize": "--shm-size", "Ulimits": "--ulimit", "Sysctls": "--sysctl",
    "Links": "--link", "Init": "--init", "Runtime": "--runtime", "CpuPeriod": "--cpu-period",
    "CpuQuota": "--cpu-quota", "CpusetCpus": "--cpuset-cpus", "CpusetMems": "--cpuset-mems",
    "MemoryReservation": "--memory-reservation", "MemorySwappiness": "--memory-swappiness",
    "OomKillDisable": "--oom-kill-disable", "OomScoreAdj": "--oom-score-adj",
    "BlkioWeight": "--blkio-weight", "CgroupParent": "--cgroup-parent", "Isolation":
    "--isolation", "DeviceRequests": "--gpus", "StorageOpt": "--storage-opt",
    "Annotations": "--annotation", "KernelMemory": "--kernel-memory",
    "MaskedPaths": "--security-opt systempaths=unconfined",
    "ReadonlyPaths": "--security-opt systempaths=unconfined",
}


def _is_set(key: str, value: Any) -> bool:
    if key in _SET_WHEN_EMPTY:
        return value is not None
    if value is None or value is False or value == 0 or value in ("", [], {}):
        return False
    return not (key in _UNSET and value == _UNSET[key])


def _refuse(where: str, key: str, why: str = "") -> DockerError:
    flag = _FLAGS.get(key)
    name = f"{where}.{key}" if where else key
    return DockerError(400, f"juggler cannot honour {name}" + (f" ({flag})" if flag else "")
                       + (f": {why}" if why else ""))


def _typed(body: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = "") -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise DockerError(400, f"{where + '.' if where else ''}{key}: wrong type "
                               f"({type(value).__name__})")
    return value


def _int(body: dict[str, Any], key: str) -> int:
    value = body.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise DockerError(400, f"HostConfig.{key}: must be an integer")
    return value


def config_from_create(body: Any) -> ContainerConfig:
    """The body of POST /containers/create as a ContainerConfig. `Image`: a
    reference, or an absolute path, which is a root filesystem (as `juggler
    run --rootfs`). Raises DockerError 400 naming the first field juggler
    cannot honour, or a bad value (moby's messages for memory limits)."""
    if not isinstance(body, dict):
        raise DockerError(400, "the request body must be a JSON object (Docker's container "
                               "config)")
    host = _typed(body, "HostConfig", dict) or {}
    for key, value in host.items():
        if key not in _HOST_TAKEN and _is_set(key, value):
            raise _refuse("HostConfig", key)
    for key, value in body.items():
        if key not in _CONFIG_TAKEN and _is_set(key, value):
            raise _refuse("", key)
    log_type = (host.get("LogConfig") or {}).get("Type") or ""
    if log_type not in ("", "json-file", "local"):
        raise _refuse("HostConfig", "LogConfig", f"log driver {log_type!r}; juggler keeps "
                                                 "the output in the task's sandbox")

    image = _typed(body, "Image", str) or ""
    cmd = _typed(body, "Cmd", list) or []
    env_list = _typed(body, "Env", list) or []
    labels = _typed(body, "Labels", dict) or {}
    env: dict[str, str] = {}
    for item in env_list:
        name, sep, value = str(item).partition("=")
        if not name:
            raise DockerError(400, f"invalid environment variable: {item}")
        if sep:
            env[name] = value
    working_dir = _typed(body, "WorkingDir", str) or ""
    if working_dir and not working_dir.startswith("/"):
        # moby's verifyContainerSettings, word for word
        raise DockerError(400, f"the working directory '{working_dir}' is invalid, it needs "
                               "to be an absolute path")
    cfg = ContainerConfig(
        image="" if image.startswith("/") else image,
        rootfs=image if image.startswith("/") else "",
        cmd=[str(a) for a in cmd], env=env,
        working_dir=working_dir,
        user=_typed(body, "User", str) or "",
        hostname=_typed(body, "Hostname", str) or "",
        labels={str(k): str(v) for k, v in labels.items()},
        tty=bool(body.get("Tty")), open_stdin=bool(body.get("OpenStdin")),
        stdin_once=bool(body.get("StdinOnce")),
        stop_signal=_typed(body, "StopSignal", str) or "",
        stop_timeout=(float(body["StopTimeout"]) if body.get("StopTimeout") is not None
                      else None),
        auto_remove=bool(host.get("AutoRemove")),
    )
    try:
        ports = published_ports.from_docker(_typed(host, "PortBindings", dict, "HostConfig"))
        exposed = published_ports.exposed_from_docker(_typed(body, "ExposedPorts", dict))
    except published_ports.PortSpecError as e:
        raise DockerError(400, str(e)) from None
    cfg.ports = [b.record() for b in ports]
    cfg.exposed = list(dict.fromkeys([*exposed, *(b.key for b in ports)]))
    cfg.publish_all = bool(host.get("PublishAllPorts"))
    cfg.network = networks.network_mode(_typed(host, "NetworkMode", str, "HostConfig") or "",
                               publishing=bool(ports) or cfg.publish_all)
    _networking(body.get("NetworkingConfig"), host.get("NetworkMode") or "default")
    _resources(cfg, host)
    docker_process.read(cfg, host)
    policy = _typed(host, "RestartPolicy", dict, "HostConfig") or {}
    try:
        cfg.restart = RestartPolicy.of(str(policy.get("Name") or "no"),
                                       int(policy.get("MaximumRetryCount") or 0))
    except ContainerError as e:
        raise DockerError(e.status, e.message) from None
    return cfg


def _resources(cfg: ContainerConfig, host: dict[str, Any]) -> None:
    memory, swap = _int(host, "Memory"), _int(host, "MemorySwap")
    cpu_shares, nano_cpus = _int(host, "CpuShares"), _int(host, "NanoCpus")
    pids = _int(host, "PidsLimit")
    # moby daemon/daemon_unix.go verifyPlatformContainerResources
    if memory and memory < MIN_MEMORY:
        raise DockerError(400, "Minimum memory limit allowed is 6MB")
    if swap and not memory:
        raise DockerError(400, "You should always set the Memory limit when using Memoryswap "
                               "limit, see usage")
    if swap > 0 and swap < memory:
        raise DockerError(400, "Minimum memoryswap limit should be larger than memory limit, "
                               "see usage")
    if memory < 0 or cpu_shares < 0 or nano_cpus < 0:
        raise DockerError(400, "resource limits cannot be negative")
    cfg.memory = memory or None
    cfg.memory_swap = swap or None
    cfg.cpu_shares = cpu_shares or None
    cfg.cpus = nano_cpus / 1e9 if nano_cpus else None
    cfg.pids_limit = pids if pids > 0 else None


def _networking(networking: Any, mode: str) -> None:
    """NetworkingConfig may name the mode's own network with nothing set in
    it (what the docker CLI sends); any other endpoint is refused."""
    endpoints = (networking or {}).get("EndpointsConfig") or {} if isinstance(
        networking, dict) else {}
    for name, settings in endpoints.items():
        if name != mode:
            raise _refuse("NetworkingConfig", "EndpointsConfig", f"network {name!r}")
        for key, value in (settings or {}).items():
            if _is_set(key, value):
                raise _refuse(f"NetworkingConfig.EndpointsConfig.{name}", key)
