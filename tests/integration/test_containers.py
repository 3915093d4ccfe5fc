"""Containers outlive the processes around them: a master failover and a
restart of the apps service (kill -9) lose no container, run none twice, and
keep every name unique. Real processes (masters on etcd, an agent, the apps
service), driven through the Docker Engine API on the service's TCP port —
the paths the `docker` client uses (tests/integration/test_docker_cli.py
drives the client itself)."""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from juggler.testing.daemons import Daemons, master_leader
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.waiting import free_port, wait_for

DEADLINE = 60.0


def api(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            raw = r.read()
            json_body = r.headers.get_content_type() == "application/json"
            return r.status, json.loads(raw) if raw and json_body else raw
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def run(url: str, name: str, rootfs: Path, cmd: list[str], **host: Any) -> str:
    status, body = api(url, "POST", f"/containers/create?name={name}",
                       {"Image": str(rootfs), "Cmd": cmd, "HostConfig": host})
    assert status == 201, body
    status, body = api(url, "POST", f"/containers/{name}/start")
    assert status == 204, body
    return body_id(url, name)


def body_id(url: str, name: str) -> str:
    return inspect(url, name)["Id"]


def inspect(url: str, name: str) -> dict[str, Any]:
    status, body = api(url, "GET", f"/containers/{name}/json")
    assert status == 200, body
    return body


def leading(url: str) -> bool:
    try:
        return api(url, "GET", "/_ping")[0] == 200 and api(url, "GET", "/containers/json")[0] \
            == 200
    except OSError:
        return False


def test_containers_keep_running_and_their_names_through_a_master_failover(
        daemons: Daemons, etcd: Any, tmp_path: Path) -> None:
    """Two masters on etcd; kill -9 the leader: the container runs on (same
    pid), its name stays taken, and stop/start after the failover finds the
    file its first run wrote."""
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    ha = ["--etcd", etcd.endpoint, "--etcd-prefix", f"/ctr-{os.getpid()}-{free_port()}/",
          "--lease-ttl", "2"]
    m1 = daemons.start_master(*ha, name="m1")
    m2 = daemons.start_master(*ha, name="m2")
    masters = f"{m1},{m2}"
    daemons.start_agent("host-1", master=masters, resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    url = daemons.start_apps(master=masters)
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
    run(url, "web", rootfs, ["sh", "-c", "echo kept > /kept; exec sleep 600"])
    wait_for(lambda: inspect(url, "web")["State"]["Running"], DEADLINE, what="web to run")
    pid = inspect(url, "web")["State"]["Pid"]
    assert pid > 0

    leader = master_leader(m1, m2)
    daemons.stop("m1" if leader == m1 else "m2", signal.SIGKILL)
    wait_for(lambda: _leader_or_none(m1, m2) not in ("", leader), DEADLINE,
             what="the other master to lead")
    status, body = api(url, "POST", "/containers/create?name=web",
                       {"Image": str(rootfs), "Cmd": ["true"]})
    assert status == 409 and 'name "/web" is already in use' in body["message"]
    state = inspect(url, "web")["State"]
    assert state["Running"] and state["Pid"] == pid, state
    os.kill(pid, 0)  # the same process, never restarted
    assert api(url, "POST", "/containers/web/stop?t=1")[0] == 204
    assert api(url, "POST", "/containers/web/start")[0] == 204
    wait_for(lambda: inspect(url, "web")["State"]["Running"], DEADLINE, what="web again")
    status, body = api(url, "POST", "/containers/web/exec",
                       {"Cmd": ["cat", "/kept"], "AttachStdout": True})
    assert status == 201, body
    names = [c["Names"] for c in api(url, "GET", "/containers/json?all=1")[1]]
    assert names == [["/web"]]


def test_containers_survive_the_apps_service_killed(daemons: Daemons, tmp_path: Path) -> None:
    """kill -9 the apps service: a running container is reconciled, not run
    again; a stopped one stays stopped; names stay unique; the service goes
    on acting on both."""
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    daemons.start_master()
    daemons.start_agent("host-1", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
    run(url, "up", rootfs, ["sleep", "600"])
    run(url, "down", rootfs, ["sleep", "600"])
    wait_for(lambda: inspect(url, "up")["State"]["Running"] and
             inspect(url, "down")["State"]["Running"], DEADLINE, what="both to run")
    assert api(url, "POST", "/containers/down/stop?t=0")[0] == 204
    assert inspect(url, "down")["State"]["Status"] == "exited"
    pid = inspect(url, "up")["State"]["Pid"]

    daemons.stop("apps", signal.SIGKILL)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service back")
    up, down = inspect(url, "up"), inspect(url, "down")
    assert up["State"]["Running"] and up["State"]["Pid"] == pid
    assert down["State"]["Status"] == "exited" and down["State"]["ExitCode"] == 137
    status, body = api(url, "POST", "/containers/create?name=up",
                       {"Image": str(rootfs), "Cmd": ["true"]})
    assert status == 409, body
    status, body = api(url, "DELETE", "/containers/up")
    assert status == 409 and "container is running" in body["message"]
    assert api(url, "DELETE", "/containers/up?force=1")[0] == 204
    wait_for(lambda: not _alive(pid), DEADLINE, what="the removed container's process to end")
    assert api(url, "POST", "/containers/down/start")[0] == 204
    assert inspect(url, "down")["State"]["Running"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True



def _leader_or_none(*masters: str) -> str:
    try:
        return master_leader(*masters)
    except AssertionError:
        return ""
