"""`juggler status` (cli/status.py) from protos, and `juggler up`'s endpoint
lines (cli/up_endpoints.py); the real commands are tested in
tests/integration/test_up_safety.py."""

from __future__ import annotations

from juggler.cli import status, up_endpoints
from juggler.cli.status import MasterSeen
from juggler.common.resources import Resources
from juggler.v1 import common_pb2, operator_pb2

Leader = operator_pb2.GetLeaderResponse


def _state() -> operator_pb2.GetStateResponse:
    total = Resources.parse("cpus:4;mem:1024;disk:100;ports:[31000-31009]").to_proto()
    used = Resources.parse("cpus:1;mem:256").to_proto()
    agent = operator_pb2.AgentView(
        info=common_pb2.AgentInfo(id="a1", hostname="node-1", metrics_address="127.0.0.1:9100"),
        state=operator_pb2.AGENT_ACTIVE, total=total, allocated=used,
        maintenance=operator_pb2.MAINTENANCE_DRAINING)
    fw = operator_pb2.FrameworkView(info=common_pb2.FrameworkInfo(
        id="f", webui_url="http://127.0.0.1:8080"), state=operator_pb2.FRAMEWORK_SUBSCRIBED)
    tasks = [operator_pb2.TaskView(state=common_pb2.TASK_RUNNING),
             operator_pb2.TaskView(state=common_pb2.TASK_RUNNING),
             operator_pb2.TaskView(state=common_pb2.TASK_STAGING)]
    return operator_pb2.GetStateResponse(agents=[agent], frameworks=[fw], tasks=tasks)


def test_a_master_that_says_it_leads_is_the_leader() -> None:
    seen = [MasterSeen("m1:1", Leader(address="m2:1", self="m1:1")),
            MasterSeen("m2:1", Leader(address="m2:1", self="m2:1", is_leader=True))]
    assert status.leader_of(seen) == "m2:1"
    assert status.leader_of([MasterSeen("m1:1", None, "refused"),
                             MasterSeen("m3:1", Leader(address="m2:1"))]) == "m2:1"
    assert status.leader_of([MasterSeen("m1:1", None, "refused")]) == ""


def test_screen_has_leader_masters_agents_resources_tasks_and_endpoints() -> None:
    seen = [MasterSeen("m1:1", Leader(address="m1:1", self="m1:1", is_leader=True)),
            MasterSeen("m2:1", None, "connection refused")]
    record = {"endpoints": ["http://127.0.0.1:5055/", "http://127.0.0.1:8080"]}
    s = status.summarize(seen, _state(), record, "unix:///run/d.sock")
    assert s.leader == "m1:1"
    assert s.masters == [("m1:1", "leader"), ("m2:1", "not answering: connection refused")]
    assert s.agents == [("node-1", "ACTIVE", "DRAINING", "1/4", "256/1024", "127.0.0.1:9100")]
    assert ("ports", "10", "0", "0") in s.resources
    assert s.tasks == {"RUNNING": 2, "STAGING": 1}
    assert s.endpoints == [("web UI", "http://127.0.0.1:5055/"),
                           ("metrics", "http://127.0.0.1:5055/metrics"),
                           ("apps REST", "http://127.0.0.1:8080"),
                           ("apps metrics", "http://127.0.0.1:8080/metrics"),
                           ("Docker API", "unix:///run/d.sock")]
    text = status.render(s)
    assert text.startswith("leader: m1:1\n")
    assert "tasks: 3 (RUNNING 2, STAGING 1)" in text
    assert "frameworks: 1 (SUBSCRIBED 1)" in text
    assert "node-1" in text and "127.0.0.1:9100" in text
    assert all(line == line.rstrip() for line in text.splitlines())


def test_up_prints_each_endpoint() -> None:
    got = up_endpoints.lines(masters=["h:1", "h:2"], http=["http://h:5/", "http://h:6/"],
                             agents=[("n2", ""), ("n1", "h:9")], apps=["http://h:8"],
                             docker="unix:///d")
    assert got == [
        "master-1 gRPC h:1; web UI http://h:5/; metrics http://h:5/metrics",
        "master-2 gRPC h:2; web UI http://h:6/; metrics http://h:6/metrics",
        "agent n1 metrics http://h:9/metrics",
        "agent n2 metrics not reported (see its log)",
        "apps service (Marathon's REST API) at http://h:8; metrics http://h:8/metrics",
        "Docker Engine API at unix:///d; for the docker client: export DOCKER_HOST=unix:///d"]


def test_each_masters_endpoints_say_whose_and_a_silent_apps_service_says_so() -> None:
    seen = [MasterSeen("h:1", Leader(address="h:2", self="h:1")),
            MasterSeen("h:2", Leader(address="h:2", self="h:2", is_leader=True))]
    record = {"master": "h:1,h:2", "endpoints": ["http://h:5/", "http://h:6/"]}
    s = status.summarize(seen, _state(), record, "",
                         silent=frozenset({"http://127.0.0.1:8080"}))
    assert s.endpoints == [("web UI (h:1)", "http://h:5/"),
                           ("metrics (h:1)", "http://h:5/metrics"),
                           ("web UI (h:2, leader)", "http://h:6/"),
                           ("metrics (h:2, leader)", "http://h:6/metrics"),
                           ("apps REST", "http://127.0.0.1:8080 (not answering)"),
                           ("apps metrics", "http://127.0.0.1:8080/metrics (not answering)")]
