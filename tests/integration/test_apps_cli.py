"""`juggler app …` against the apps service `juggler up` starts, as the README
shows it: deploy a file (JSON, then YAML) and watch its progress, list, show,
scale, restart, see the deployments and the metrics, remove. Instances run
`sleep MARKER` so the test finds exactly its own processes."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from juggler.testing.processes import marker, processes_with
from juggler.testing.waiting import wait_for
from tests.conftest import Cluster

pytestmark = [pytest.mark.root]
DEADLINE = 90.0


def test_deploy_scale_restart_and_remove_an_app_with_the_cli(cluster: Cluster,
                                                             tmp_path: Path) -> None:
    first, second = marker(), marker()
    app = {"id": "/hello", "cmd": f"exec sleep {first}", "instances": 2, "cpus": 0.1,
           "mem": 16, "upgradeStrategy": {"minHealthySeconds": 1}}
    (tmp_path / "hello.json").write_text(json.dumps(app))
    deploy = cluster.juggler("app", "deploy", str(tmp_path / "hello.json"), timeout=120)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    assert "2/2 running" in deploy.stderr, deploy.stderr  # the progress display
    assert len(processes_with(f"sleep {first}")) == 2

    ls = cluster.juggler("app", "ls")
    assert ls.returncode == 0, ls.stderr
    row = next(line for line in ls.stdout.splitlines() if line.startswith("/hello"))
    assert "2/2" in row, ls.stdout
    listed = json.loads(cluster.juggler("app", "ls", "--format", "json").stdout)
    assert [a["id"] for a in listed] == ["/hello"]

    show = cluster.juggler("app", "show", "hello")
    assert show.returncode == 0, show.stderr
    rows = [line.split() for line in show.stdout.splitlines() if line.startswith("hello.")]
    assert len(rows) == 2 and all("RUNNING" in r for r in rows), show.stdout

    scale = cluster.juggler("app", "scale", "hello", "3", timeout=120)
    assert scale.returncode == 0, scale.stdout + scale.stderr
    assert len(processes_with(f"sleep {first}")) == 3

    # A changed definition from YAML: a rolling restart to the new command.
    (tmp_path / "hello.yaml").write_text(
        f"id: /hello\ncmd: exec sleep {second}\ninstances: 3\ncpus: 0.1\nmem: 16\n"
        "upgradeStrategy:\n  minHealthySeconds: 1\n")
    roll = cluster.juggler("app", "deploy", str(tmp_path / "hello.yaml"), timeout=120)
    assert roll.returncode == 0, roll.stdout + roll.stderr
    wait_for(lambda: not processes_with(f"sleep {first}")
             and len(processes_with(f"sleep {second}")) == 3, DEADLINE,
             what="the new version only")

    restart = cluster.juggler("app", "restart", "hello", timeout=120)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    deployments = cluster.juggler("deployments", "--format", "json")
    assert json.loads(deployments.stdout) == []

    url = (cluster.home / "apps").read_text().strip()
    metrics = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    assert 'juggler_apps_instances{app="/hello",kind="running"} 3.0' in metrics, metrics
    # No health checks: 0 healthy, as /v2/apps tasksHealthy (Marathon) says.
    assert 'juggler_apps_instances{app="/hello",kind="healthy"} 0.0' in metrics, metrics
    rest_app = json.loads(urllib.request.urlopen(url + "/v2/apps/hello", timeout=10).read())
    assert rest_app["app"]["tasksHealthy"] == 0, rest_app
    assert "_created" not in metrics, metrics  # disabled in every juggler daemon
    assert "juggler_apps_deployments_total" in metrics

    rm = cluster.juggler("app", "rm", "hello", timeout=120)
    assert rm.returncode == 0, rm.stdout + rm.stderr
    wait_for(lambda: not processes_with(f"sleep {second}"), DEADLINE,
             what="the instances to be gone")
    assert "/hello" not in cluster.juggler("app", "ls").stdout


def test_a_bad_definition_is_refused_naming_each_field(cluster: Cluster,
                                                       tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps(
        {"id": "/bad", "cmd": "true", "cpus": -1, "instances": "three"}))
    r = cluster.juggler("app", "deploy", str(tmp_path / "bad.json"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert "/cpus" in r.stderr and "/instances" in r.stderr, r.stderr
    assert "/bad" not in cluster.juggler("app", "ls").stdout
