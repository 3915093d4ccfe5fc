"""The Grafana dashboard against a real Prometheus scraping a real cluster.

`juggler up` (one master, one agent, the apps service) on free ports; a real
Prometheus (Debian's) finds every endpoint through the master's
/prometheus/targets (HTTP service discovery, as deploy/prometheus/prometheus.yml
does), scrapes each second and loads deploy/prometheus/alerts.yml. Once it has
scraped them all, the cluster gets work: a quota and a weight (registry
writes), an app with cpus and mem, an app no agent can take (its offers are
declined, its instances wanted but not running), a container held to a
tenth of a core while it spins (throttled), one whose child is OOM-killed
and a task whose pid 1 is (it ends: the ended-tasks panels). Then every PromQL expression of
every panel, with Grafana's variables at "All", must return a value that is a
number (histogram quantiles need launches, cycles and writes inside the rate
window: they happen after scraping began). The alert rules evaluate without
error on the real series, none fires, and the unplaceable app makes
JugglerAppUnderReplicated pending.

Panels that show 0 rather than nothing when nothing happened use
`or vector(0)` in the dashboard itself. Exempted here: none.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from juggler.testing import dashboard as board
from juggler.testing import secure
from juggler.testing.processes import marker, processes_with
from juggler.testing.prometheus_server import (
    PrometheusNotInstalled,
    prometheus_binary,
    prometheus_server,
)
from juggler.testing.waiting import free_ports, wait_for
from tests.conftest import juggler_up, needs_root

pytestmark = [pytest.mark.root]
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
DEADLINE = 60.0
# Panels (by title) exempted from "returns data", each with the reason; empty:
# every panel must.
EXEMPT: dict[str, str] = {}
JOBS = {"juggler-master", "juggler-agent", "juggler-apps"}


def http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def scraped_jobs(prom: Any) -> set[str]:
    """Jobs of which every discovered target has been scraped healthy."""
    targets = prom.api("targets", state="active")["activeTargets"]
    jobs = {t["labels"]["job"] for t in targets}
    bad = {t["labels"]["job"] for t in targets if t["health"] != "up"}
    return jobs - bad


def numbers(samples: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in samples if not math.isnan(float(s["value"][1]))]


def test_every_panel_shows_data_from_a_real_cluster(tmp_path: Path) -> None:
    needs_root()
    try:
        prometheus_binary()
    except PrometheusNotInstalled as e:
        pytest.skip(str(e))
    port, metrics, apps_port = free_ports(1, 1, 1)
    apps = secure.url(f"127.0.0.1:{apps_port}")
    with juggler_up("--agents", "1", "--port", str(port), "--metrics-port", str(metrics),
                    "--apps-port", str(apps_port), "--work-dir", str(tmp_path / "work"),
                    "--docker-socket", str(tmp_path / "docker.sock"),
                    home=tmp_path / "home") as (_up, line):
        master = line.split("master at ", 1)[1].split()[0]
        env_home = tmp_path / "home"
        sd = secure.url(f"127.0.0.1:{metrics}/prometheus/targets")

        def discovered() -> set[str]:
            try:
                with urllib.request.urlopen(sd, timeout=5) as r:
                    return {g["labels"]["job"] for g in json.load(r) if g["targets"]}
            except OSError:
                return set()

        # The agent's metrics address and the apps service's URL reach the
        # master after registration and subscription.
        wait_for(lambda: discovered() == JOBS, DEADLINE, what=f"{sd} to list {JOBS}")
        rules = tmp_path / "prometheus" / "alerts.yml"
        rules.parent.mkdir()
        shutil.copy(ALERTS, rules)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s",
                       "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [{"job_name": "juggler", "http_sd_configs": [
                {"url": sd, "refresh_interval": "1s", **_tls_config()}], **_https_scrapes()}],
        }
        with prometheus_server(tmp_path / "prometheus", config) as prom:
            wait_for(lambda: scraped_jobs(prom) == JOBS, DEADLINE,
                     what="Prometheus to scrape every juggler target")
            _make_work(master, apps, env_home, tmp_path / "docker.sock")
            # $__rate_interval (Grafana derives it from the range and the scrape
            # interval): a window that holds the work's launches and writes.
            queries = [(q.where, board.fill_variables(q.expr, rate_interval="2m"))
                       for q in board.queries(board.load())]

            def empty() -> list[str]:
                return [f"{where}: {expr}" for where, expr in queries
                        if not any(f"{title!r}" in where for title in EXEMPT)
                        and not numbers(prom.query(expr))]

            with contextlib.suppress(AssertionError):   # the assertion below names them
                wait_for(lambda: not empty(), DEADLINE, interval=0.5,
                         what="every panel to show data")
            assert empty() == []
            # No daemon exports prometheus_client's `*_created` series.
            assert prom.query('count by (job, __name__) ({__name__=~".+_created"})') == []
            # What an operator reads off some of them: the app that runs and the
            # two containers, the spinner throttled, the OOM kill, why /h2-picky waits.
            def read() -> dict[str, dict[str, float]]:
                return {title: _shown(prom, title, queries) for title in (
                    "Tasks running", "CPU throttled by task (s/s)", "OOM kills by task",
                    "Containers by state", "Offers declined by apps, by reason / s",
                    "Tasks ended by state and reason", "OOM-killed tasks")}

            def expected(shown: dict[str, dict[str, float]]) -> bool:
                return (shown["Tasks running"] == {"": 3.0}
                        and max(shown["CPU throttled by task (s/s)"].values()) > 0
                        and max(shown["OOM kills by task"].values()) >= 1
                        and shown["Tasks ended by state and reason"].get("TASK_FAILED", 0) > 0
                        and shown["OOM-killed tasks"][""] >= 1
                        and shown["Containers by state"]["running"] == 2
                        and set(shown["Offers declined by apps, by reason / s"])
                        == {"UnfulfilledConstraint"})

            with contextlib.suppress(AssertionError):   # the assertion below shows them
                wait_for(lambda: expected(read()), DEADLINE, interval=0.5,
                         what="the panels to show the work")
            shown = read()
            assert expected(shown), shown

            evaluated = wait_for(lambda: _rules_evaluated(prom), DEADLINE,
                                 what="every alert rule to be evaluated")
            assert [(r["name"], r.get("lastError")) for r in evaluated
                    if r["health"] != "ok"] == []
            wait_for(lambda: _alerts(prom, "pending") == {("JugglerAppUnderReplicated",
                                                            "/h2-picky")},
                     DEADLINE, what="the unplaceable app's alert to be pending")
            assert _alerts(prom, "firing") == set()


def _tls_config() -> dict[str, Any]:
    """Prometheus's tls_config for the cluster's HTTPS servers in the suite's
    TLS mode (the session CA, admin's certificate), else nothing."""
    made = secure.session()
    if made is None:
        return {}
    return {"tls_config": {"ca_file": str(made.admin.ca), "cert_file": str(made.admin.cert),
                           "key_file": str(made.admin.key)}}


def _https_scrapes() -> dict[str, Any]:
    """In the TLS mode: scrape the masters and apps services over HTTPS; the
    agents' /metrics stays plain HTTP on their --host (prometheus_client's
    server), so their job keeps http."""
    if secure.session() is None:
        return {}
    return {"scheme": "https", **_tls_config(),
            "relabel_configs": [{"source_labels": ["job"], "regex": "juggler-agent",
                                 "target_label": "__scheme__", "replacement": "http"}]}


def _shown(prom: Any, title: str, queries: list[tuple[str, str]]) -> dict[str, float]:
    """The values panel `title` shows, by the label its legend names first."""
    out = {}
    for where, expr in queries:
        if f"{title!r}" in where:
            for s in prom.query(expr):
                m = s["metric"]
                key = next((m[k] for k in ("task", "state", "reason", "kind") if k in m), "")
                out[key] = float(s["value"][1])
    return out


def _alerts(prom: Any, state: str) -> set[tuple[str, str]]:
    """(alert name, app label) of the alerts in `state` (pending, firing)."""
    return {(a["labels"]["alertname"], a["labels"].get("app", ""))
            for a in prom.api("alerts")["alerts"] if a["state"] == state}


def _rules_evaluated(prom: Any) -> list[dict[str, Any]]:
    rules = [r for g in prom.api("rules")["groups"] for r in g["rules"]]
    if rules and all(not r["lastEvaluation"].startswith("0001") for r in rules):
        return rules
    return []


def _make_work(master: str, apps: str, home: Path, docker: Path) -> None:
    """Registry writes, a running app, an app no agent takes, a throttled container."""
    env = dict(os.environ, JUGGLER_HOME=str(home), JUGGLER_APPS=apps,
               JUGGLER_DOCKER=f"unix://{docker}")

    def juggler(*args: str) -> str:
        r = subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"juggler {' '.join(args)}: {r.stdout}{r.stderr}"
        return r.stdout

    seconds = marker()
    app = {"id": "/h2-sleeper", "cmd": f"exec sleep {seconds}", "instances": 1, "cpus": 0.1,
           "mem": 16, "upgradeStrategy": {"minHealthySeconds": 0}}
    http("POST", f"{apps}/v2/apps", app)
    http("POST", f"{apps}/v2/apps", {**app, "id": "/h2-picky", "cmd": f"exec sleep {marker()}",
                                     "constraints": [["hostname", "LIKE", "no-such-host"]]})
    juggler("run", "-d", "--name", "h2-spinner", "--cpus", "0.1", "--mem", "32M", "--",
            "sh", "-c", "while :; do :; done")
    # Its child is OOM-killed; the shell lives on, and so does the cgroup's count.
    juggler("run", "-d", "--name", "h2-oom", "--mem", "32M", "--", "sh", "-c",
            f'python3 -c "bytearray(200*2**20)"; exec sleep {marker()}')
    # Its pid 1 is OOM-killed: the task ends TASK_FAILED with the memory reason
    # (the master's ended-task counter; its agent series end with its cgroup).
    r = subprocess.run([sys.executable, "-m", "juggler.cli.main", "run", "--name", "h2-oom-pid1",
                        "--mem", "32M", "--", "python3", "-c", "bytearray(200*2**20)"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 137, r.stdout + r.stderr
    wait_for(lambda: processes_with(f"sleep {seconds}"), DEADLINE, what="the app to run")
    # Last: registry writes inside the latency panel's rate window.
    juggler("quota", "--master", master, "h2-ops", "cpus:1;mem:64")
    juggler("weights", "--master", master, "h2-ops=2")
