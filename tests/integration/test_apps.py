"""The apps service for real: `juggler master`, agents and `juggler apps` as
processes, instances as real tasks, driven through the REST API, Marathon's own
Python client (`marathon` from PyPI) and the `juggler app` CLI.

Instances run `sleep MARKER` on the agents' filesystem (no image), so a test
finds exactly its own processes (juggler/testing/processes.py) and command
health checks can look at files the test makes. Health checks are fast (1 s
interval, no grace) and `minHealthySeconds` small; every wait has a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from juggler.testing import secure
from juggler.testing.daemons import Daemons, master_leader
from juggler.testing.processes import marker, processes_with
from juggler.testing.waiting import free_port, wait_for

pytestmark = [pytest.mark.root]
DEADLINE = 90.0


def api(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else None


def get(url: str, path: str) -> Any:
    status, body = api(url, "GET", path)
    assert status == 200, (status, body)
    return body


def juggler(apps_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, JUGGLER_APPS=apps_url)
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def check(path: Path, grace: float = 0) -> dict[str, Any]:
    """A command check healthy while `path` does not exist (an unhealthy
    instance is killed, as Marathon's are; failures before the first success
    are ignored for `grace` seconds)."""
    return {"protocol": "COMMAND", "command": {"value": f"test ! -e {path}"},
            "gracePeriodSeconds": grace, "intervalSeconds": 1, "timeoutSeconds": 20,
            "maxConsecutiveFailures": 1, "delaySeconds": 0}


def definition(app_id: str, seconds: str, instances: int = 1, **kw: Any) -> dict[str, Any]:
    d = {"id": app_id, "cmd": f"exec sleep {seconds}", "instances": instances,
         "cpus": 0.1, "mem": 16, "backoffSeconds": 1, "backoffFactor": 1.0,
         "upgradeStrategy": {"minimumHealthCapacity": 1, "maximumOverCapacity": 1,
                             "minHealthySeconds": 1}}
    d.update(kw)
    return d


def app_of(url: str, app_id: str) -> dict[str, Any]:
    return get(url, f"/v2/apps{app_id}?embed=apps.tasks")["app"]


def deployed(url: str, app_id: str) -> bool:
    return not get(url, "/v2/deployments") and not get(url, f"/v2/apps{app_id}")["app"][
        "deployments"]


def leading(url: str) -> bool:
    """The apps service answers with a leader (404 until it subscribed)."""
    status, body = api(url, "GET", "/v2/leader")
    return status == 200 and bool(body.get("leader"))


def running(url: str, app_id: str) -> list[dict[str, Any]]:
    return [t for t in app_of(url, app_id)["tasks"] if t["state"] == "TASK_RUNNING"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemons, str]]:
    """A master, three agents (host-1..3, rack r1, r1, r2) and the apps service."""
    if os.geteuid() != 0:
        pytest.skip("requires root (namespaces, cgroups, mounts)")
    d = Daemons(tmp_path_factory.mktemp("apps"))
    try:
        d.start_master()
        for i, rack in ((1, "r1"), (2, "r1"), (3, "r2")):
            d.start_agent(f"host-{i}", "--attributes", f"rack:{rack}",
                          resources="cpus:2;mem:1024;disk:1024")
        d.wait_agents(3)
        url = d.start_apps()
        wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
        yield d, url
    finally:
        d.close()


def remove(url: str, app_id: str) -> None:
    api(url, "DELETE", f"/v2/apps{app_id}?force=true")
    wait_for(lambda: api(url, "GET", f"/v2/apps{app_id}")[0] == 404, DEADLINE,
             what=f"{app_id} to be removed")


def test_instances_spread_by_unique_hostname_and_a_killed_one_is_replaced(
        lab: tuple[Daemons, str]) -> None:
    _, url = lab
    seconds = marker()
    status, body = api(url, "POST", "/v2/apps", definition(
        "/spread", seconds, 3, constraints=[["hostname", "UNIQUE"]]))
    assert status == 201, body
    wait_for(lambda: deployed(url, "/spread") and len(running(url, "/spread")) == 3, DEADLINE,
             what="3 instances running")
    tasks = running(url, "/spread")
    assert sorted(t["host"] for t in tasks) == ["host-1", "host-2", "host-3"]
    pids = wait_for(lambda: (p := processes_with(f"sleep {seconds}")) and len(p) == 3 and p,
                    DEADLINE, what="three processes")
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: app_of(url, "/spread").get("lastTaskFailure") or None, DEADLINE,
             what="the failure to be seen")
    wait_for(lambda: len(running(url, "/spread")) == 3
             and len(processes_with(f"sleep {seconds}")) == 3, DEADLINE,
             what="the instance to be replaced")
    after = {t["id"] for t in running(url, "/spread")}
    assert len(after - {t["id"] for t in tasks}) == 1
    assert sorted(t["host"] for t in running(url, "/spread")) == ["host-1", "host-2", "host-3"]
    remove(url, "/spread")
    wait_for(lambda: not processes_with(f"sleep {seconds}"), DEADLINE,
             what="the instances to be gone")


def test_a_rolling_restart_keeps_the_minimum_healthy_at_every_moment(
        lab: tuple[Daemons, str], tmp_path: Path) -> None:
    _, url = lab
    old, new = marker(), marker()
    hc = [check(tmp_path / "never")]
    status, body = api(url, "PUT", "/v2/apps/roll", definition("/roll", old, 3,
                                                                healthChecks=hc))
    assert status in (200, 201), body
    wait_for(lambda: deployed(url, "/roll") and app_of(url, "/roll")["tasksHealthy"] == 3,
             DEADLINE, what="3 healthy instances")
    status, body = api(url, "PUT", "/v2/apps/roll", {"cmd": f"exec sleep {new}"})
    assert status == 200, body
    samples = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        app = app_of(url, "/roll")
        samples.append(app["tasksHealthy"])
        if not app["deployments"]:
            break
        time.sleep(0.05)
    assert not app["deployments"], "the deployment did not finish"
    assert min(samples) >= 3, samples
    assert len(samples) > 5, "sampled during the deployment"
    wait_for(lambda: not processes_with(f"sleep {old}")
             and len(processes_with(f"sleep {new}")) == 3, DEADLINE,
             what="only the new instances to run")
    remove(url, "/roll")


def test_a_version_whose_health_check_fails_is_rolled_back_while_the_old_one_serves(
        lab: tuple[Daemons, str], host_dir: Path) -> None:
    _, url = lab
    good, bad = marker(), marker()
    sick = host_dir / "sick"   # where the checks see it: an instance's /tmp is its own
    sick.touch()
    strategy = {"minimumHealthCapacity": 1, "maximumOverCapacity": 1, "minHealthySeconds": 1,
                "progressDeadlineSeconds": 8}
    status, _ = api(url, "PUT", "/v2/apps/revert", definition(
        "/revert", good, 2, healthChecks=[check(host_dir / "fine")], upgradeStrategy=strategy))
    wait_for(lambda: deployed(url, "/revert") and app_of(url, "/revert")["tasksHealthy"] == 2,
             DEADLINE, what="2 healthy instances")
    serving = {t["id"] for t in running(url, "/revert")}
    first_version = app_of(url, "/revert")["version"]
    status, body = api(url, "PUT", "/v2/apps/revert", {
        "cmd": f"exec sleep {bad}", "healthChecks": [check(sick)]})
    assert status == 200, body
    failed = body["deploymentId"]
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        app = app_of(url, "/revert")
        assert {t["id"] for t in app["tasks"]} >= serving, "an old instance was stopped"
        if app["version"] != body["version"] and not app["deployments"]:
            break
        time.sleep(0.1)
    app = app_of(url, "/revert")
    assert app["cmd"] == f"exec sleep {good}", "rolled back to the good version"
    assert app["version"] not in (first_version, body["version"])
    assert {t["id"] for t in running(url, "/revert")} == serving
    assert not any(d["id"] == failed for d in get(url, "/v2/deployments"))
    wait_for(lambda: not processes_with(f"sleep {bad}"), DEADLINE,
             what="the bad instances to be gone")
    remove(url, "/revert")


def test_dependencies_start_in_order(lab: tuple[Daemons, str], host_dir: Path) -> None:
    _, url = lab
    db, web = marker(), marker()
    down = host_dir / "db-down"   # where db's check sees it: its /tmp is its own
    down.touch()
    status, body = api(url, "POST", "/v2/groups", {"id": "/shop", "apps": [
        definition("db", db, 1, healthChecks=[check(down, grace=300)]),
        definition("web", web, 1, dependencies=["db"])]})
    assert status == 201, body
    wait_for(lambda: running(url, "/shop/db"), DEADLINE, what="db to run")
    # db runs, unhealthy (its failures inside the grace period): the deployment
    # stays at its first step and web is not started. Absence needs a window:
    # a few of db's 1 s checks.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        (d,) = get(url, "/v2/deployments")
        assert d["currentStep"] == 1 and d["totalSteps"] == 2, d
        assert app_of(url, "/shop/web")["instances"] == 0
        assert not processes_with(f"sleep {web}")
        time.sleep(0.2)
    down.unlink()
    wait_for(lambda: processes_with(f"sleep {web}"), DEADLINE, what="web to start after db")
    wait_for(lambda: not get(url, "/v2/deployments"), DEADLINE, what="the deployment to end")
    api(url, "DELETE", "/v2/groups/shop?force=true")
    wait_for(lambda: not processes_with(f"sleep {db}") and not processes_with(f"sleep {web}"),
             DEADLINE, what="the group's instances to be gone")


def test_app_why_names_the_constraint_that_blocks_an_app(lab: tuple[Daemons, str]) -> None:
    _, url = lab
    seconds = marker()
    api(url, "POST", "/v2/apps", definition("/picky", seconds, 2,
                                            constraints=[["rack", "CLUSTER", "r9"]]))
    wait_for(lambda: get(url, "/v2/queue")["queue"]
             and get(url, "/v2/queue")["queue"][0]["processedOffersSummary"]
             ["unusedOffersCount"] > 0, DEADLINE, what="offers to be declined")
    why = juggler(url, "app", "why", "/picky")
    assert why.returncode == 0, why.stderr
    assert "rack:CLUSTER:r9" in why.stdout, why.stdout
    assert not processes_with(f"sleep {seconds}")
    remove(url, "/picky")


def test_the_marathon_client_lists_creates_scales_and_deletes_apps(
        lab: tuple[Daemons, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import collections
    import collections.abc

    # marathon 0.13 (the last release) names collections.Iterable, gone since
    # Python 3.10, when it encodes nested models: give it back for its sake.
    monkeypatch.setattr(collections, "Iterable", collections.abc.Iterable, raising=False)
    from marathon.models import MarathonApp

    _, url = lab
    seconds = marker()
    client = secure.marathon_client(url)
    client.create_app("/client", MarathonApp(cmd=f"exec sleep {seconds}", instances=1,
                                             cpus=0.1, mem=16))
    wait_for(lambda: client.get_app("/client").tasks_running == 1
             and not client.list_deployments(), DEADLINE,
             what="the client's app to run, deployed (as Marathon, a scale during its "
                  "deployment would be refused with 409)")
    assert "/client" in [a.id for a in client.list_apps()]
    client.scale_app("/client", instances=2)
    wait_for(lambda: client.get_app("/client").tasks_running == 2
             and len(processes_with(f"sleep {seconds}")) == 2, DEADLINE,
             what="two instances")
    tasks = client.list_tasks("/client")
    assert len(tasks) == 2 and all(t.app_id == "/client" for t in tasks)
    client.delete_app("/client", force=True)
    wait_for(lambda: "/client" not in [a.id for a in client.list_apps()]
             and not processes_with(f"sleep {seconds}"), DEADLINE, what="the app to be gone")


def test_the_event_stream_delivers_a_deployment_s_events_in_order(
        lab: tuple[Daemons, str]) -> None:
    _, url = lab
    seconds = marker()
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def read() -> None:
        req = urllib.request.Request(url + "/v2/events",
                                     headers={"Accept": "text/event-stream"})
        with urllib.request.urlopen(req, timeout=DEADLINE) as r:
            for raw in r:
                line = raw.decode().rstrip("\n")
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    wait_for(lambda: any(e["eventType"] == "event_stream_attached" for e in events), DEADLINE,
             what="the stream to attach")
    _status, body = api(url, "POST", "/v2/apps", definition("/events", seconds, 1))
    deployment = body["deployments"][0]["id"]
    mine = lambda: [e["eventType"] for e in events  # noqa: E731
                    if (e.get("plan") or {}).get("id") == deployment or e.get("id") == deployment]
    wait_for(lambda: "deployment_success" in mine(), DEADLINE, what="deployment_success")
    assert mine()[0] == "deployment_info"
    assert mine().index("deployment_step_success") < mine().index("deployment_success")
    assert any(e["eventType"] == "status_update_event" and e.get("appId") == "/events"
               and e["taskStatus"] == "TASK_RUNNING" for e in events)
    stop.set()
    remove(url, "/events")


def test_a_deployment_survives_the_master_and_the_apps_service_killed(
        daemons: Daemons) -> None:
    """kill -9 the master mid-deployment (it comes back on its port with its
    registry), then the apps service: the deployment completes, and exactly
    the wanted instances run — none twice, none orphaned."""
    port = free_port()
    daemons.start_master(port=port)
    daemons.start_agent("host-1", resources="cpus:2;mem:1024;disk:1024")
    daemons.start_agent("host-2", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(2)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
    seconds = marker()
    slow = {"minimumHealthCapacity": 1, "maximumOverCapacity": 1, "minHealthySeconds": 6}
    status, body = api(url, "POST", "/v2/apps", definition("/sturdy", seconds, 4,
                                                           upgradeStrategy=slow))
    assert status == 201, body
    wait_for(lambda: len(processes_with(f"sleep {seconds}")) >= 2, DEADLINE,
             what="instances to start")
    assert get(url, "/v2/deployments"), "still deploying"
    daemons.stop("master", signal.SIGKILL)
    daemons.start_master(port=port)
    daemons.stop("apps", signal.SIGKILL)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service back")
    wait_for(lambda: not get(url, "/v2/deployments"), DEADLINE * 2,
             what="the deployment to complete")
    wait_for(lambda: len(running(url, "/sturdy")) == 4, DEADLINE, what="4 running")
    time.sleep(2)  # anything duplicated or orphaned would show now
    assert len(processes_with(f"sleep {seconds}")) == 4
    assert len(app_of(url, "/sturdy")["tasks"]) == 4


def test_apps_services_elect_a_leader_standbys_proxy_and_a_new_leader_takes_over(
        daemons: Daemons, etcd: Any) -> None:
    """Two masters and two apps services on one etcd: one apps service leads,
    the other answers with the leader's address and proxies the API to it.
    kill -9 the leading master mid-deployment, then the leading apps service:
    the standby takes over, the deployment completes, nothing runs twice."""
    ha = ["--etcd", etcd.endpoint, "--etcd-prefix", f"/apps-ha-{marker()}/",
          "--lease-ttl", "2"]
    m1 = daemons.start_master(*ha, name="m1")
    m2 = daemons.start_master(*ha, name="m2")
    masters = f"{m1},{m2}"
    daemons.start_agent("host-1", master=masters, resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    a1 = daemons.start_apps(*ha, name="apps-1", master=masters)
    wait_for(lambda: leading(a1), DEADLINE, what="the first apps service to lead")
    a2 = daemons.start_apps(*ha, name="apps-2", master=masters)
    wait_for(lambda: api(a2, "GET", "/v2/leader") == (200, {"leader": a1.split("://", 1)[1]}),
             DEADLINE, what="the standby to name the leader")
    seconds = marker()
    slow = {"minimumHealthCapacity": 1, "maximumOverCapacity": 1, "minHealthySeconds": 8}
    status, body = api(a2, "POST", "/v2/apps", definition("/ha", seconds, 3,
                                                          upgradeStrategy=slow))
    assert status == 201, body  # through the standby, to the leader
    assert get(a1, "/v2/apps/ha")["app"]["instances"] == 3
    wait_for(lambda: len(processes_with(f"sleep {seconds}")) == 3, DEADLINE,
             what="instances to start")
    assert get(a2, "/v2/deployments"), "still deploying"
    leader = master_leader(m1, m2)
    daemons.stop("m1" if leader == m1 else "m2", signal.SIGKILL)
    daemons.stop("apps-1", signal.SIGKILL)
    wait_for(lambda: api(a2, "GET", "/v2/leader") == (200, {"leader": a2.split("://", 1)[1]}),
             DEADLINE, what="the standby apps service to lead")
    wait_for(lambda: not get(a2, "/v2/deployments"), DEADLINE * 2,
             what="the deployment to complete")
    wait_for(lambda: len(running(a2, "/ha")) == 3, DEADLINE, what="3 running")
    time.sleep(2)  # anything duplicated or orphaned would show now
    assert len(processes_with(f"sleep {seconds}")) == 3
    assert len(app_of(a2, "/ha")["tasks"]) == 3


def test_a_torn_down_framework_id_in_the_store_is_replaced_by_a_new_one(
        lab: tuple[Daemons, str]) -> None:
    """The store names a framework the master tore down (its failover timeout
    passed while no apps service ran): the service subscribes anew instead of
    failing forever."""
    import asyncio

    from juggler.sdk import Framework
    from juggler.store.embedded import EmbeddedStore
    from juggler.v1 import common_pb2

    daemons, _ = lab

    async def torn_down() -> str:
        fw = Framework(daemons.master, common_pb2.FrameworkInfo(name="gone", roles=["*"]))
        await fw.subscribe()
        await fw.teardown()
        await fw.close()
        return fw.framework_id

    with secure.as_principal("apps"):   # as the service's own framework was
        old_id = asyncio.run(torn_down())
    work = daemons.work / "apps-torn"

    async def remember() -> None:
        store = EmbeddedStore(work)
        await store.put("framework_id", old_id.encode())
        await store.close()

    asyncio.run(remember())
    url = daemons.start_apps(name="apps-torn")  # its store: the work dir above
    wait_for(lambda: leading(url), DEADLINE, what="the service to lead as a new framework")
    info = get(url, "/v2/info")
    assert info["frameworkId"] and info["frameworkId"] != old_id
    daemons.stop("apps-torn")


def test_adding_a_health_check_keeps_the_old_instances_serving(
        lab: tuple[Daemons, str], tmp_path: Path) -> None:
    """A version without checks, then one that adds a check: the old
    instances (running is healthy for them) stay until the new ones pass.
    Sampled continuously: serving = old instances running, plus new ones
    whose check passed."""
    _, url = lab
    old, new = marker(), marker()
    api(url, "PUT", "/v2/apps/addcheck", definition("/addcheck", old, 2))
    wait_for(lambda: deployed(url, "/addcheck") and len(running(url, "/addcheck")) == 2,
             DEADLINE, what="2 instances")
    first = app_of(url, "/addcheck")["versionInfo"]["lastConfigChangeAt"]
    status, body = api(url, "PUT", "/v2/apps/addcheck", {
        "cmd": f"exec sleep {new}", "healthChecks": [check(tmp_path / "never")]})
    assert status == 200, body

    def serving(app: dict[str, Any]) -> int:
        return sum(1 for t in app["tasks"] if t["state"] == "TASK_RUNNING" and (
            t["version"] == first or any(r["alive"] for r in t["healthCheckResults"])))

    samples = []
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        app = app_of(url, "/addcheck")
        samples.append(serving(app))
        if not app["deployments"]:
            break
        time.sleep(0.05)
    assert not app["deployments"], "the deployment did not finish"
    assert min(samples) >= 2, samples
    wait_for(lambda: not processes_with(f"sleep {old}"), DEADLINE, what="the old ones gone")
    remove(url, "/addcheck")
