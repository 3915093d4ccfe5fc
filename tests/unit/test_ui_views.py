"""What the master's web UI and its service discovery show, from the Operator
API's state (master/ui_views.py, master/http_sd.py): pure."""

from __future__ import annotations

from juggler.common.resources import Resources
from juggler.master import http_sd, ui_views
from juggler.v1 import common_pb2, operator_pb2


def _state() -> operator_pb2.GetStateResponse:
    total = Resources.parse("cpus:4;mem:1024;disk:2048;ports:[31000-31009]").to_proto()
    used = Resources.parse("cpus:1;mem:256;ports:[31000-31000]").to_proto()
    agents = [
        operator_pb2.AgentView(
            info=common_pb2.AgentInfo(id="a1", hostname="host-b", address="10.0.0.2:5051",
                                      metrics_address="10.0.0.2:5056"),
            state=operator_pb2.AGENT_ACTIVE, maintenance=operator_pb2.MAINTENANCE_DRAINING,
            total=total, allocated=used),
        operator_pb2.AgentView(
            info=common_pb2.AgentInfo(id="a0", hostname="host-a"),
            state=operator_pb2.AGENT_GONE, total=total),
    ]
    frameworks = [operator_pb2.FrameworkView(
        info=common_pb2.FrameworkInfo(id="f1", name="juggler-apps", roles=["web"],
                                      webui_url="javascript:alert(1)"),
        state=operator_pb2.FRAMEWORK_SUBSCRIBED, active_tasks=1, allocated=used)]
    running = operator_pb2.TaskView(
        info=common_pb2.TaskInfo(task_id="t/1", name="<b>web</b>"), framework_id="f1",
        agent_id="a1", agent_hostname="host-b", agent_address="10.0.0.2:5051",
        state=common_pb2.TASK_RUNNING,
        status=common_pb2.TaskStatus(state=common_pb2.TASK_RUNNING, healthy=True))
    failed = operator_pb2.TaskView(
        info=common_pb2.TaskInfo(task_id="t2"), framework_id="f1", agent_id="a1",
        agent_address="10.0.0.2:5051", state=common_pb2.TASK_FAILED,
        status=common_pb2.TaskStatus(state=common_pb2.TASK_FAILED,
                                     reason=common_pb2.REASON_COMMAND_EXITED,
                                     message="exited with status 3"))
    return operator_pb2.GetStateResponse(
        agents=agents, frameworks=frameworks, tasks=[running], completed_tasks=[failed],
        leader=operator_pb2.GetLeaderResponse(address="m1:5050", self="m1:5050",
                                              is_leader=True))


def test_state_shows_agents_frameworks_tasks_and_cluster_resources() -> None:
    out = ui_views.state_json(_state(), self_address="m1:5050", masters=["m1:5050", "m2:5050"])
    assert out["master"] == {"self": "m1:5050", "leader": "m1:5050", "is_leader": True,
                             "masters": ["m1:5050", "m2:5050"], "answered_by": "m1:5050"}
    # The GONE agent counts for nothing.
    assert out["resources"]["total"] == {"cpus": 4, "mem": 1024, "disk": 2048, "ports": 10}
    assert out["resources"]["used"] == {"cpus": 1, "mem": 256, "disk": 0, "ports": 1}
    host_a, host_b = out["agents"]
    assert (host_a["hostname"], host_a["state"], host_a["metrics_url"]) == ("host-a", "GONE", "")
    assert (host_b["state"], host_b["maintenance"]) == ("ACTIVE", "DRAINING")
    assert host_b["metrics_url"] == "http://10.0.0.2:5056/metrics"
    (fw,) = out["frameworks"]
    assert fw["state"] == "SUBSCRIBED" and fw["tasks"] == {"FAILED": 1, "RUNNING": 1}
    assert fw["webui_url"] == ""  # not http(s): never a link
    running, failed = out["tasks"]
    assert (running["name"], running["state"], running["healthy"]) == ("<b>web</b>", "RUNNING",
                                                                       True)
    assert running["framework_name"] == "juggler-apps" and not running["completed"]
    assert running["logs_url"] == "/api/tasks/t%2F1/logs?framework=f1&stream=stdout&tail=200"
    assert (failed["state"], failed["reason"], failed["message"], failed["completed"]) == (
        "FAILED", "COMMAND_EXITED", "exited with status 3", True)


def test_a_standby_shows_the_leaders_state_as_the_leaders() -> None:
    out = ui_views.state_json(_state(), self_address="m2:5050", masters=[])
    assert out["master"]["is_leader"] is False
    assert out["master"]["answered_by"] == "m1:5050"
    assert out["master"]["masters"] == ["m1:5050"]


def test_apps_and_deployments_from_the_marathon_answers() -> None:
    apps = {"apps": [{"id": "/web", "instances": 3, "tasksRunning": 2, "tasksStaged": 1,
                      "tasksHealthy": 0, "tasksUnhealthy": 0, "version": "v1",
                      "deployments": [{"id": "d1"}]}]}
    deployments = [{"id": "d1", "affectedApps": ["/web"], "currentStep": 1, "totalSteps": 2,
                    "currentActions": [{"action": "ScaleApplication", "app": "/web"}]}]
    out = ui_views.apps_json("http://x:8080", apps, deployments)
    assert out["apps"] == [{"id": "/web", "instances": 3, "running": 2, "staged": 1,
                            "healthy": 0, "unhealthy": 0, "deployments": ["d1"],
                            "version": "v1"}]
    assert out["deployments"] == [{"id": "d1", "apps": ["/web"], "step": 1, "steps": 2,
                                   "actions": ["ScaleApplication /web"],
                                   "instances": [{"app": "/web", "running": 2,
                                                  "wanted": 3}]}]


def test_service_discovery_groups_every_master_agent_and_apps_service() -> None:
    masters = http_sd.master_http_addresses(["10.0.0.1:5050", "10.0.0.2:5051"],
                                            "10.0.0.1:5050", 5055)
    assert masters == ["10.0.0.1:5055", "10.0.0.2:5056"]
    assert http_sd.master_http_addresses([], "127.0.0.1:7000", 7100) == ["127.0.0.1:7100"]
    assert http_sd.targets(masters, ["10.0.0.3:5056", ""], ["http://10.0.0.4:8080/",
                                                            "https://apps.example"]) == [
        {"targets": ["10.0.0.1:5055", "10.0.0.2:5056"], "labels": {"job": "juggler-master"}},
        {"targets": ["10.0.0.3:5056"], "labels": {"job": "juggler-agent"}},
        {"targets": ["10.0.0.4:8080", "apps.example:443"], "labels": {"job": "juggler-apps"}},
    ]
    assert http_sd.url_target("ftp://x") == "" and http_sd.url_target("not a url") == ""
