"""`juggler up --hosts 2`: two agents as separate network-namespace hosts on a
lab bridge, the masters and the apps service in the root namespace.

What a user of the lab checks: each agent registered with its host's own
address; a server on one host answers the other host at the first one's
address; the partition command `juggler up` prints makes the host's tasks
UNREACHABLE past the (shortened) ping timeout, the apps service replaces them
on the other host, and after the heal command the old instance is killed (its
app's unreachableStrategy expunged it) and the app is back at its count; and
when `juggler up` ends nothing of the lab is left. The app is a host-network
`python3 -m http.server` on the agents' filesystem (no image).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from juggler.cli import lab_hosts
from juggler.testing import app_ports
from tests.conftest import LabCluster, juggler_lab, wait_for

pytestmark = [pytest.mark.root]
DEADLINE = 60.0
PING = ("--agent-ping-timeout", "1", "--max-agent-ping-timeouts", "3")  # UNREACHABLE after 3 s
WEB_PORT = 31555


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabCluster]:
    with juggler_lab(tmp_path_factory.mktemp("lab"), 2, *PING) as cluster:
        yield cluster


def api(url: str, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def tasks(lab: LabCluster, app_id: str) -> list[dict[str, Any]]:
    return api(lab.apps, "GET", f"/v2/apps{app_id}?embed=apps.tasks")["app"]["tasks"]


def master_state(lab: LabCluster, task_id: str) -> str:
    """The task's state as the master has it ("" when it has none)."""
    from juggler.cli import operator
    from juggler.v1 import common_pb2, operator_pb2

    got = operator.call(lab.master, "GetState", operator_pb2.GetStateRequest(), timeout=10)
    return next((common_pb2.TaskState.Name(t.state)
                 for t in [*got.tasks, *got.completed_tasks] if t.info.task_id == task_id), "")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def refused(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.URLError as e:
        return isinstance(e.reason, ConnectionRefusedError)
    return False


def sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True, timeout=30)


def test_up_prints_each_host_and_its_partition_and_heal_commands(lab: LabCluster) -> None:
    for h in lab.hosts:
        (line,) = [x for x in lab.lines if x.startswith(f"juggler: {h.name} at ")]
        assert h.address in line and h.netns in line
        assert f"partition: {h.partition_command};" in line
        assert f"heal: {h.heal_command}" in line
    assert lab.master == f"{lab.lab.gateway}:{lab.master.rsplit(':', 1)[1]}"


def test_each_agent_registers_with_its_hosts_address(lab: LabCluster) -> None:
    from juggler.cli import operator
    from juggler.v1 import operator_pb2

    got = operator.call(lab.master, "GetAgents", operator_pb2.GetAgentsRequest(), timeout=10)
    # Its hostname is its address too: what a framework (and a load balancer
    # fed from /v2/tasks) reaches its tasks at, with no DNS in the lab.
    assert sorted((a.info.hostname, a.info.address) for a in got.agents) == [
        (h.address, h.agent_address) for h in lab.hosts]
    assert all(a.state == operator_pb2.AGENT_ACTIVE for a in got.agents)


def test_a_second_lab_of_the_same_number_is_refused(lab: LabCluster, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "juggler.cli.main", "up", "--hosts", "1",
                          "--lab", str(lab.lab.index), "--work-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out
    assert "in use by another `juggler up --hosts`" in out.stderr
    # The running lab is untouched.
    from pyroute2 import netns

    assert {h.netns for h in lab.hosts} <= set(netns.listnetns())
    assert lab.process.poll() is None


@dataclass
class Web:
    """The app /lab/web: one instance, `task`, on host `a`; `b` the other host."""

    app_id: str
    task: dict[str, Any]
    a: lab_hosts.LabHost
    b: lab_hosts.LabHost

    @property
    def url_a(self) -> str:
        return f"http://{self.a.address}:{WEB_PORT}/"


@pytest.fixture(scope="module")
def web(lab: LabCluster) -> Iterator[Web]:
    app_id = "/lab/web"
    api(lab.apps, "POST", "/v2/apps", {
        "id": app_id, "cmd": f"exec python3 -m http.server {WEB_PORT} --bind 0.0.0.0",
        # Its port, as a host-network task must hold the ports it listens on.
        "portDefinitions": [{"port": WEB_PORT}], "requirePorts": True,
        "instances": 1, "cpus": 0.1, "mem": 32, "backoffSeconds": 1, "backoffFactor": 1.0,
        "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 2}})
    (task,) = wait_for(lambda: [t for t in tasks(lab, app_id) if t["state"] == "TASK_RUNNING"],
                       DEADLINE, what="the app's instance to run")
    (a,) = [h for h in lab.hosts if h.address == task["host"]]
    (b,) = [h for h in lab.hosts if h is not a]
    yield Web(app_id, task, a, b)
    api(lab.apps, "DELETE", f"/v2/apps{app_id}?force=true")


def test_a_server_on_one_host_answers_the_other_at_its_address(lab: LabCluster, web: Web) -> None:
    # From inside host B, at A's address: over the lab bridge, as between two hosts.
    wait_for(lambda: subprocess.run(
        ["ip", "netns", "exec", web.b.netns, sys.executable, "-c",
         f"import urllib.request; urllib.request.urlopen({web.url_a!r}, timeout=2)"],
        capture_output=True, timeout=30).returncode == 0, DEADLINE,
        what=f"{web.url_a} to answer host {web.b.name}")
    # The CLI, in the root namespace, reaches the task through A's agent: the
    # server logged B's request from B's address, and the task sees A's eth0.
    logs = lab.juggler("logs", web.task["id"])
    assert logs.returncode == 0, logs
    assert f"{web.b.address} - - " in logs.stderr and '"GET / HTTP/1.1" 200' in logs.stderr
    ip = lab.juggler("exec", web.task["id"], "--", "ip", "-4", "-o", "addr", "show", "eth0")
    assert ip.returncode == 0, ip
    assert f"inet {web.a.address}/24" in ip.stdout


def test_partition_replaces_the_hosts_task_and_heal_kills_the_old_one(
        lab: LabCluster, web: Web) -> None:
    first, a, b, url_a = web.task, web.a, web.b, web.url_a
    app_id = web.app_id
    wait_for(lambda: answers(url_a), DEADLINE, what=f"{url_a} to answer")
    sh(a.partition_command)
    try:
        wait_for(lambda: master_state(lab, first["id"]) == "TASK_UNREACHABLE", DEADLINE,
                 what=f"{first['id']} on the partitioned {a.name} to be UNREACHABLE")
        (second,) = wait_for(lambda: [t for t in tasks(lab, app_id)
                                      if t["state"] == "TASK_RUNNING" and t["host"] == b.address],
                             DEADLINE, what=f"a replacement to run on {b.name}")
        wait_for(lambda: answers(f"http://{b.address}:{WEB_PORT}/"), DEADLINE,
                 what="the replacement to answer")
        # Heal only once the old instance is expunged (expungeAfterSeconds):
        # back before that, it would count again and the scale-down would
        # kill the youngest instance, the replacement (Marathon's killSelection).
        wait_for(lambda: first["id"] not in [t["id"] for t in tasks(lab, app_id)], DEADLINE,
                 what=f"the unreachable {first['id']} to be expunged")
    finally:
        sh(a.heal_command)
    # Back: the master re-drives the kill the apps service asked for when it
    # expunged the unreachable instance; nothing listens on A any more.
    wait_for(lambda: master_state(lab, first["id"]) == "TASK_KILLED", DEADLINE,
             what=f"the old instance on {a.name} to be killed")
    assert refused(url_a)
    assert [(t["id"], t["state"]) for t in tasks(lab, app_id)] == [
        (second["id"], "TASK_RUNNING")]


def test_an_app_published_on_each_host_answers_from_the_other(lab: LabCluster) -> None:
    """The issue's two-host case: 2 instances, hostname:UNIQUE, on the bridge
    network with hostPort 0; each published address (its host's address and
    the host port the apps API shows) answers a request made from the other
    host."""
    app_id = "/lab/published"
    api(lab.apps, "POST", "/v2/apps", app_ports.http_app(
        app_id, 2, constraints=[["hostname", "UNIQUE"]], env={"HTTP_PORT": "8080"},
        portDefinitions=[], networks=[{"mode": "container/bridge"}],
        container={"type": "MESOS", "portMappings": [
            {"containerPort": 8080, "hostPort": 0, "name": "http"}]}))
    try:
        running = wait_for(lambda: len(got := app_ports.published(lab.apps, app_id)) == 2
                           and got, DEADLINE, what="both instances to run")
        # A task's host is its agent's hostname: in the lab, the host's address.
        by_address = {h.address: h for h in lab.hosts}
        assert sorted(t["host"] for t in running) == sorted(by_address), running
        for task in running:
            here, other = by_address[task["host"]], next(h for h in lab.hosts
                                                         if h.address != task["host"])
            url = f"http://{here.address}:{task['ports'][0]}/"
            assert task["ipAddresses"], task   # its address on its host's bridge network

            def from_other(url: str = url, other: lab_hosts.LabHost = other) -> str:
                done = subprocess.run(
                    ["ip", "netns", "exec", other.netns, sys.executable, "-c",
                     "import urllib.request,sys; sys.stdout.write(urllib.request.urlopen("
                     f"{url!r}, timeout=2).read().decode())"],
                    capture_output=True, text=True, timeout=30)
                return done.stdout if done.returncode == 0 else ""
            assert wait_for(from_other, DEADLINE, what=f"{url} to answer {other.name}") \
                == task["id"]
    finally:
        api(lab.apps, "DELETE", f"/v2/apps{app_id}?force=true")
