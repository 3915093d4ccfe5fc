"""What an operator reads off a real cluster's /metrics (`juggler up`, the
session's `cluster`): a task with cpu and memory limits runs; the master's
endpoint says it leads, counts the launch, and shows the agent's resources
(total as registered, used while the task runs); the agent's endpoint, found
as GetAgents' info.metrics_address, shows the task's cgroup usage. The apps
service's framework carries its REST URL (webui_url). With three masters
on a real etcd, a standby says it does not lead and shows no cluster gauges,
and a deposed leader, restarted as a standby, still counts its lost term."""

from __future__ import annotations

import signal
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.testing import secure
from juggler.testing.waiting import wait_for
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc
from tests.conftest import Cluster
from tests.framework_client import Client, run, task
from tests.integration import test_ha
from tests.integration.test_ha import DEADLINE, HA, log_events

pytestmark = [pytest.mark.root]
ha = test_ha.ha  # the fixture: three masters on a real etcd
S = common_pb2.TaskState
MiB = 2**20


def scrape(address: str, scheme: str = "") -> dict[tuple, float]:
    """GET SCHEME://ADDRESS/metrics, parsed: (name, (label, value)…) → value.
    The scheme defaults to the masters' (https in the suite's TLS mode); an
    agent's /metrics is plain HTTP."""
    with urllib.request.urlopen(f"{scheme or secure.scheme()}://{address}/metrics",
                                timeout=10) as r:
        text = r.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, *sorted(s.labels.items()))] = s.value
    return out


def operator(cluster: Cluster) -> operator_pb2_grpc.OperatorStub:
    return operator_pb2_grpc.OperatorStub(servers.sync_channel(cluster.master))


def test_master_and_agent_metrics_of_a_running_task(cluster: Cluster) -> None:
    master = f"127.0.0.1:{cluster.metrics_port}"

    async def body() -> None:
        async with Client(cluster, "metrics") as c:
            offer = await c.offer(Resources({"cpus": 0.5, "mem": 64}))
            await c.fw.launch([offer.id], [task(
                "metrics-a", 0.5, 64, "sh", "-c",
                "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 600")])
            await c.until("metrics-a", S.TASK_RUNNING)
            agents = operator(cluster).GetAgents(operator_pb2.GetAgentsRequest(), timeout=10)
            view = next(a for a in agents.agents if a.info.id == offer.agent_id)
            assert view.info.metrics_address, "the agent told the master no metrics address"

            got = scrape(master)
            assert got[("juggler_master_is_leader",)] == 1
            assert got[("juggler_master_task_launch_seconds_count",)] >= 1
            assert got[("juggler_master_registry_write_seconds_count",)] >= 1
            for a in agents.agents:  # each agent's total is what it registered
                cpus = Resources.from_proto(a.info.resources).get("cpus")
                assert got[("juggler_master_agent_cpus", ("agent", a.info.id),
                            ("hostname", a.info.hostname), ("kind", "total"))] == cpus
            used = ("juggler_master_agent_memory_bytes", ("agent", view.info.id),
                    ("hostname", view.info.hostname), ("kind", "used"))
            assert got[used] >= 64 * MiB

            key = (("framework", c.fw.framework_id), ("task", "metrics-a"))
            on_agent = scrape(view.info.metrics_address, "http")
            assert on_agent[("juggler_agent_task_memory_bytes", *key)] > 0
            assert on_agent[("juggler_agent_task_cpu_seconds_total", *key)] > 0
            assert ("juggler_agent_status_updates_pending",) in on_agent

            await c.fw.kill("metrics-a")
            await c.until("metrics-a", S.TASK_KILLED)
            # Once ended, the task's series go from the agent's endpoint.
            wait_for(lambda: ("juggler_agent_task_memory_bytes", *key)
                     not in scrape(view.info.metrics_address, "http"),
                     timeout=60, what="the ended task's series to go")

    run(body)


def test_the_apps_framework_names_its_rest_url(cluster: Cluster) -> None:
    apps = wait_for(lambda: [f for f in operator(cluster).GetFrameworks(
        operator_pb2.GetFrameworksRequest(), timeout=10).frameworks
        if f.info.name == "juggler-apps"], timeout=60, what="the apps framework")
    url = apps[0].info.webui_url
    assert url.startswith(f"{secure.scheme()}://"), url
    with urllib.request.urlopen(f"{url}/v2/apps", timeout=10) as r:
        assert r.status == 200


def test_standbys_and_a_deposed_leader_report_leadership(ha: HA) -> None:
    ha.start_masters(3, "--metrics-port", "0")
    old, _ = wait_for(ha.leader, DEADLINE, what="a leader")

    def metrics_of(name: str, starts: int = 1) -> dict[tuple, float]:
        started = wait_for(lambda: len(found := log_events(
            ha.work / f"{name}.log", "master started")) >= starts and found,
            DEADLINE, what=f"{name} to start")
        return scrape(f"127.0.0.1:{started[-1]['metrics_port']}")

    standby = next(n for n in ha.masters if n != old)
    got = metrics_of(old)
    assert got[("juggler_master_is_leader",)] == 1
    assert got[("juggler_master_elections_total",)] == 1
    assert ("juggler_master_offers_outstanding",) in got
    got = metrics_of(standby)
    assert got[("juggler_master_is_leader",)] == 0
    assert got[("juggler_master_elections_total",)] == 0
    assert ("juggler_master_offers_outstanding",) not in got

    ha.send(old, signal.SIGSTOP)
    new, _ = wait_for(lambda: (lead := ha.leader()) and lead[0] != old and lead, DEADLINE,
                      what="another master to take over")
    ha.send(old, signal.SIGCONT)
    # The old leader finds its term over and starts again as a standby (same pid).
    got = wait_for(lambda: (m := metrics_of(old, starts=2)) and m, DEADLINE)
    assert got[("juggler_master_is_leader",)] == 0
    assert got[("juggler_master_leadership_lost_total",)] == 1
    assert got[("juggler_master_elections_total",)] == 1
    assert metrics_of(new)[("juggler_master_is_leader",)] == 1
