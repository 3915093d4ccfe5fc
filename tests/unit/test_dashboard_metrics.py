"""deploy/grafana: every PromQL query of the dashboard, and every alert of
deploy/prometheus, names only metrics juggler exports (a renamed or removed
metric fails here, before an operator finds an empty panel or an alert that
cannot fire), and the dashboard and its provisioning files hang together: one
data source variable, the template variables the queries use, panels that do
not overlap, Prometheus discovering juggler through the masters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from juggler.testing import dashboard as board

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BUILTIN_VARIABLES = {"__rate_interval", "__interval", "__range"}


def unknown_metrics(queries: list[board.Query], exported: set[str]) -> dict[str, set[str]]:
    """Per query (by where it is), the metric names it uses that are not exported;
    a query naming no metric at all maps to {"<no metric read>"}."""
    out = {}
    for q in queries:
        names = board.metric_names(q.expr)
        missing = (names - exported - board.PROMETHEUS_SERIES) if names else {"<no metric read>"}
        if missing:
            out[f"{q.where}: {q.expr}"] = missing
    return out


@pytest.fixture(scope="module")
def exported() -> set[str]:
    return board.exported_names()


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return board.load()


def test_every_query_names_metrics_juggler_exports(dashboard: dict[str, Any],
                                                  exported: set[str]) -> None:
    queries = board.queries(dashboard)
    assert len(queries) > 40
    assert unknown_metrics(queries, exported) == {}


def test_every_alert_names_metrics_juggler_exports(exported: set[str]) -> None:
    # An alert on a renamed metric would never fire: worse than an empty panel.
    groups = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
    alerts = [board.Query(f"alert {r['alert']}", r["expr"]) for g in groups for r in g["rules"]]
    assert unknown_metrics(alerts, exported) == {}


def test_a_renamed_metric_is_caught(dashboard: dict[str, Any], exported: set[str]) -> None:
    # As if juggler_master_task_launch_seconds were renamed: its panel is named.
    renamed = {n for n in exported if not n.startswith("juggler_master_task_launch_seconds")}
    found = unknown_metrics(board.queries(dashboard), renamed)
    assert found and all("Launch latency" in where for where in found), found
    assert set().union(*found.values()) == {"juggler_master_task_launch_seconds_bucket"}


def test_the_exported_names_are_the_contracts(exported: set[str]) -> None:
    # One of each kind of source: a plain metric, a scrape-time collector's
    # leader-only gauge, a counter, a histogram, an agent collector's per-task
    # series, the apps service's own registry, the process collector.
    assert {"juggler_master_agents", "juggler_master_agent_cpus",
            "juggler_master_elections_total", "juggler_master_task_launch_seconds_bucket",
            "juggler_agent_task_oom_kills_total", "juggler_apps_deployments_total",
            "process_resident_memory_bytes"} <= exported


@pytest.mark.parametrize(("expr", "names"), [
    ('histogram_quantile(0.99, sum by (le) (rate(a_seconds_bucket{x=~"$v"}[$__rate_interval])))',
     {"a_seconds_bucket"}),
    ("sum(a{state=\"S\"} and on(instance) (b == 1)) or vector(0)", {"a", "b"}),
    ("a / ignoring(kind) b{kind=\"total\"}", {"a", "b"}),
    ("increase(a_total[10m]) > 0 or (a_total unless a_total offset 10m)", {"a_total"}),
    ('count(up{job="j"}) > 0 and on() absent(c == 1)', {"up", "c"}),
    ('sum by (app, kind) (d{app="sum(x)"}) * 1e3', {"d"}),
])
def test_the_reader_finds_every_metric_and_nothing_else(expr: str, names: set[str]) -> None:
    assert board.metric_names(expr) == names


def test_variables_fill_in_as_grafana_does_for_all() -> None:
    assert board.fill_variables('rate(a{i=~"$instance", r=~"${role}"}[$__rate_interval])') == \
        'rate(a{i=~".*", r=~".*"}[1m])'


def test_the_dashboard_hangs_together(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    ds = variables["DS_PROMETHEUS"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    for name in ("agent", "role", "instance"):
        v = variables[name]
        assert v["type"] == "query" and v["query"].startswith("label_values(")
        assert v["includeAll"] and v["allValue"] == ".*"
    source = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    panels = list(board.panels(dashboard))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for p in panels:
        assert p["title"] and p.get("description"), p["id"]
        assert p["datasource"] == source, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"] == source, p["title"]
            used = set(re.findall(r"\$\{?(\w+)\}?", t["expr"]))
            assert used <= set(variables) | BUILTIN_VARIABLES, (p["title"], used)
    cells: dict[tuple[int, int], str] = {}
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{p['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = p["title"]


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard(
        dashboard: dict[str, Any]) -> None:
    sources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    default = next(v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert default["current"]["value"] == source["uid"]
    providers = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/juggler.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_prometheus_discovers_juggler_through_the_masters() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [juggler] = [j for j in config["scrape_configs"] if j["job_name"] == "juggler"]
    urls = [sd["url"] for sd in juggler["http_sd_configs"]]
    assert urls and all(u.endswith("/prometheus/targets") for u in urls)
