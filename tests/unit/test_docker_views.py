"""Containers in Docker's JSON shapes (apps/docker_views.py): times as Go
writes them, `docker ps`'s STATUS as moby's State.String() words it, the
inspect and summary shapes, filters, stats, and the create body read into a
ContainerConfig with everything juggler cannot honour refused."""

from __future__ import annotations

from typing import Any

import pytest

from juggler.apps import docker_views as views
from juggler.apps.containers import CS, Container, ContainerConfig
from juggler.apps.docker_errors import DockerError
from juggler.v1 import agent_pb2

T0 = 1_700_000_000.0


def container(status: CS = CS.RUNNING, **fields: Any) -> Container:
    config = fields.pop("config", None) or ContainerConfig(image="busybox",
                                                           cmd=["sleep", "300"])
    c = Container(id="ab" * 32, name="web", created=T0, config=config, status=status)
    for key, value in fields.items():
        setattr(c, key, value)
    return c


def test_rfc3339_as_go_writes_it() -> None:
    assert views.rfc3339(0) == "0001-01-01T00:00:00Z"
    assert views.rfc3339(T0) == "2023-11-14T22:13:20Z"
    assert views.rfc3339(T0 + 0.5) == "2023-11-14T22:13:20.5Z"
    assert views.rfc3339(T0 + 0.123456) == "2023-11-14T22:13:20.123456Z"


@pytest.mark.parametrize("seconds,text", [
    (0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (180, "3 minutes"), (3599, "59 minutes"),
    (3600, "About an hour"), (5 * 3600, "5 hours"), (47 * 3600, "47 hours"),
    (3 * 86400, "3 days"), (15 * 86400, "2 weeks"), (90 * 86400, "3 months"),
    (3 * 365 * 86400, "3 years")])
def test_human_duration(seconds: float, text: str) -> None:
    assert views.human_duration(seconds) == text


def test_states_and_status_text() -> None:
    now = T0 + 1000
    assert views.status_text(container(CS.CREATED), now) == "Created"
    assert views.state(container(CS.STARTING)) == "created"
    again = container(CS.STARTING, started_at=T0, finished_at=T0 + 10, exit_code=1)
    assert views.state(again) == "restarting"
    assert views.status_text(again, now) == "Restarting (1) 16 minutes ago"
    running = container(CS.RUNNING, started_at=now - 180)
    assert views.status_text(running, now) == "Up 3 minutes"
    running.unreachable = True
    assert views.status_text(running, now) == "Up 3 minutes (agent unreachable)"
    exited = container(CS.EXITED, started_at=T0, finished_at=now - 65, exit_code=137)
    assert views.status_text(exited, now) == "Exited (137) About a minute ago"
    exited.oom_killed = True
    assert views.status_text(exited, now) == "Exited (137) About a minute ago (OOM-killed)"
    assert views.status_text(container(CS.DEAD), now) == "Dead"
    assert views.status_text(container(CS.RESTARTING, finished_at=now - 2, exit_code=1),
                             now) == "Restarting (1) 2 seconds ago"


def test_summary_and_inspect_shapes() -> None:
    cfg = ContainerConfig(image="busybox", cmd=["sh", "-c", "exit 3"], env={"A": "1"},
                          labels={"k": "v"}, memory=64 * 2**20, cpus=0.5, cpu_shares=256,
                          stop_timeout=3)
    c = container(CS.EXITED, config=cfg, started_at=T0 + 1, finished_at=T0 + 2, exit_code=3,
                  agent_id="agent-1", hostname="h1", agent_address="10.0.0.5:5051",
                  task_id="abababababab.1", pid=0)
    s = views.summary(c, T0 + 10)
    assert s["Names"] == ["/web"] and s["Command"] == "sh -c exit 3"
    assert s["State"] == "exited" and s["Status"] == "Exited (3) 8 seconds ago"
    assert s["Created"] == int(T0) and s["Ports"] == [] and s["Labels"] == {"k": "v"}
    i = views.inspect(c, "fw-1")
    assert i["Name"] == "/web" and i["Path"] == "sh" and i["Args"] == ["-c", "exit 3"]
    assert i["State"]["ExitCode"] == 3 and i["State"]["Running"] is False
    assert i["State"]["FinishedAt"] == "2023-11-14T22:13:22Z"
    assert i["HostConfig"]["NanoCpus"] == 500_000_000 and i["HostConfig"]["CpuShares"] == 256
    assert i["Config"]["Env"] == ["A=1"] and i["Config"]["StopTimeout"] == 3
    assert i["Config"]["Hostname"] == "abababababab"
    assert i["Node"] == {"ID": "agent-1", "Name": "h1", "Addr": "10.0.0.5:5051",
                         "IP": "10.0.0.5"}
    assert i["Juggler"]["TaskId"] == "abababababab.1" and i["Juggler"]["FrameworkId"] == "fw-1"
    rooted = container(config=ContainerConfig(rootfs="/srv/root", cmd=["true"]))
    assert views.inspect(rooted, "")["Config"]["Image"] == "/srv/root"


def test_filters() -> None:
    web = container(CS.RUNNING, config=ContainerConfig(image="busybox", cmd=["x"],
                                                       labels={"tier": "front"}))
    assert views.matches(web, views.parse_filters('{"name": {"^web$": true}}'))
    assert views.matches(web, views.parse_filters('{"name": ["^/web$"]}'))
    assert not views.matches(web, views.parse_filters('{"name": {"^we$": true}}'))
    assert views.matches(web, views.parse_filters('{"id": {"abab": true}}'))
    assert views.matches(web, views.parse_filters('{"status": {"running": true}}'))
    assert not views.matches(web, views.parse_filters('{"status": {"exited": true}}'))
    assert views.matches(web, views.parse_filters('{"label": {"tier": true}}'))
    assert not views.matches(web, views.parse_filters('{"label": {"tier=back": true}}'))
    assert views.matches(web, views.parse_filters('{"ancestor": {"busybox": true}}'))
    for bad in ('{"volume": {"x": true}}', '{"status": {"sleeping": true}}', "nope"):
        with pytest.raises(DockerError) as e:
            views.parse_filters(bad)
        assert e.value.status == 400


def test_stats_give_docker_s_cpu_percent() -> None:
    c = container(CS.RUNNING, config=ContainerConfig(image="x", cmd=["x"], memory=2**27))
    pre = agent_pb2.TaskUsage(timestamp=T0, cpu_seconds=1.0)
    now = agent_pb2.TaskUsage(timestamp=T0 + 2, cpu_seconds=1.5, memory_bytes=2**20,
                              memory_peak_bytes=2**21, pids=4)
    s = views.stats(c, now, pre, online_cpus=4, mem_total=2**30, now=T0 + 2)
    cpu, precpu = s["cpu_stats"], s["precpu_stats"]
    # The docker CLI's formula: Δcpu / Δsystem × online cpus × 100.
    percent = ((cpu["cpu_usage"]["total_usage"] - precpu["cpu_usage"]["total_usage"])
               / (cpu["system_cpu_usage"] - precpu["system_cpu_usage"]) * 4 * 100)
    assert percent == pytest.approx(25.0)     # half a second of cpu in two seconds
    assert s["memory_stats"]["usage"] == 2**20 and s["memory_stats"]["limit"] == 2**27
    assert s["pids_stats"] == {"current": 4} and s["name"] == "/web"
    idle = views.stats(c, None, None, online_cpus=4, mem_total=2**30, now=T0)
    assert idle["memory_stats"] == {} and idle["cpu_stats"]["cpu_usage"]["total_usage"] == 0


# What `docker run` 28 sends for `docker run -d busybox sleep 300` (captured).
CLI_BODY: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None,
    "Cmd": ["sleep", "300"], "Image": "busybox", "Volumes": {}, "WorkingDir": "",
    "Entrypoint": None, "OnBuild": None, "Labels": {},
    "HostConfig": {
        "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}},
        "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
        "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [40, 120], "CapAdd": None,
        "CapDrop": None, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": None, "GroupAdd": None, "IpcMode": "", "Cgroup": "", "Links": None,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
        "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
        "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": None, "DeviceRequests": None, "MemoryReservation": 0,
        "MemorySwap": 0, "MemorySwappiness": -1, "OomKillDisable": False, "PidsLimit": 0,
        "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None},
    "NetworkingConfig": {"EndpointsConfig": {"default": {
        "IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
        "GwPriority": 0, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "DNSNames": None}}},
}


def with_host(**host: Any) -> dict[str, Any]:
    return {**CLI_BODY, "HostConfig": {**CLI_BODY["HostConfig"], **host}}


def test_what_the_docker_cli_sends_is_taken() -> None:
    cfg = views.config_from_create(CLI_BODY)
    assert cfg.image == "busybox" and cfg.cmd == ["sleep", "300"]
    assert cfg.network == "none" and cfg.restart.name == "no"
    assert (cfg.memory, cfg.cpus, cfg.cpu_shares, cfg.pids_limit) == (None, None, None, None)
    host = views.config_from_create({**with_host(NetworkMode="host"),
                                     "NetworkingConfig": {"EndpointsConfig": {}}})
    assert host.network == "host"


@pytest.mark.parametrize("body,words", [
    ({**CLI_BODY, "Entrypoint": ["sh"]}, "Entrypoint (--entrypoint)"),
    ({**CLI_BODY, "Volumes": {"/data": {}}}, "Volumes (-v/--volume)"),
    ({**CLI_BODY, "Healthcheck": {"Test": ["CMD", "true"]}}, "Healthcheck (--health-cmd)"),
    (with_host(Binds=["/a:/b"]), "HostConfig.Binds (-v/--volume)"),
    (with_host(PortBindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "80"}]}),
     "juggler cannot publish on host IP 127.0.0.1 (80/tcp)"),
    (with_host(PortBindings={"80/sctp": [{"HostPort": "80"}]}),
     "juggler cannot publish sctp ports (80/sctp)"),
    (with_host(Privileged=True), "HostConfig.Privileged (--privileged)"),
    (with_host(CapAdd=["NET_FOO"]), 'unknown capability: "CAP_NET_FOO"'),
    (with_host(SecurityOpt=["seccomp={}"]), "juggler applies no seccomp filter"),
    (with_host(SecurityOpt=["no-new-privileges=maybe"]), "invalid --security-opt 2"),
    (with_host(MaskedPaths=[], ReadonlyPaths=[]), "systempaths=unconfined"),
    (with_host(Ulimits=[{"Name": "nofile", "Soft": 20, "Hard": 10}]), "20 > 10"),
    (with_host(Ulimits=[{"Name": "as", "Soft": 1, "Hard": 1}]), "invalid ulimit type: as"),
    (with_host(MemorySwappiness=10), "HostConfig.MemorySwappiness"),
    (with_host(Init="yes"), "HostConfig.Init"),
    (with_host(LogConfig={"Type": "syslog", "Config": {}}), "HostConfig.LogConfig"),
    (with_host(NetworkMode="container:db"), "NetworkMode=container:db"),
    ({**CLI_BODY, "NetworkingConfig": {"EndpointsConfig": {"other": {}}}}, "network 'other'"),
    ({**CLI_BODY, "WorkingDir": "rel"},
     "the working directory 'rel' is invalid, it needs to be an absolute path"),
])
def test_what_juggler_cannot_honour_is_refused_by_name(body: dict[str, Any], words: str) -> None:
    with pytest.raises(DockerError) as e:
        views.config_from_create(body)
    assert e.value.status == 400 and words in e.value.message


def test_limits_and_policies_as_dockerd_checks_them() -> None:
    cfg = views.config_from_create(with_host(
        Memory=64 * 2**20, MemorySwap=-1, CpuShares=512, NanoCpus=1_500_000_000, PidsLimit=-1,
        RestartPolicy={"Name": "on-failure", "MaximumRetryCount": 3}, AutoRemove=False))
    assert (cfg.memory, cfg.memory_swap, cfg.cpu_shares, cfg.cpus, cfg.pids_limit) == \
        (64 * 2**20, -1, 512, 1.5, None)
    assert cfg.restart.text() == "on-failure:3"
    for host, words in [({"Memory": 2**20}, "Minimum memory limit allowed is 6MB"),
                        ({"Memory": 2**27, "MemorySwap": 2**26}, "larger than memory limit"),
                        ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}},
                         "only be used with 'on-failure'"),
                        ({"Memory": "lots"}, "must be an integer")]:
        with pytest.raises(DockerError) as e:
            views.config_from_create(with_host(**host))
        assert words in e.value.message, host
    rooted = views.config_from_create({"Image": "/srv/rootfs", "Cmd": ["true"]})
    assert (rooted.image, rooted.rootfs) == ("", "/srv/rootfs")
    with pytest.raises(DockerError):
        views.config_from_create(["not", "an", "object"])
