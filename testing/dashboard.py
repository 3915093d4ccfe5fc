"""The Grafana dashboard's PromQL (deploy/grafana/juggler.json) as tests read it:
every panel's queries, the metric names they name, and a query with Grafana's
variables filled in as Grafana would for "All"; and the metric names juggler
exports, from its prometheus_client collectors.

The metric-name reader is a tokenizer, not a PromQL parser: it drops string
literals, label matchers `{...}`, ranges `[...]`, Grafana variables and the
label lists of by/without/on/ignoring/group_left/group_right, then takes every
identifier not followed by "(" (a function or aggregation) that is not a
PromQL keyword. That is exact for the dashboard's own queries; a query it
reads no metric from fails the tests that use it rather than passing
silently (tests/unit/test_dashboard_metrics.py).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "juggler.json"

# Series Prometheus itself adds to every scrape (its docs: "Jobs and instances").
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped",
                               "scrape_samples_post_metric_relabeling",
                               "scrape_series_added"})
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                       "and", "or", "unless", "offset", "inf", "nan", "atan2"})
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard: `where` names its panel (or
    template variable) for messages."""

    where: str
    expr: str


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included; rows themselves not."""
    for p in dashboard.get("panels", []):
        if p.get("type") == "row":
            yield from p.get("panels", [])
        else:
            yield p


def queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every target expr of every panel, and every query variable's query
    (label_values(SELECTOR, LABEL) as its SELECTOR)."""
    out = [Query(f"panel {p['id']} {p.get('title', '')!r} {t.get('refId', '')}", t["expr"])
           for p in panels(dashboard) for t in p.get("targets", [])]
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
        m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q)
        out.append(Query(f"variable {v['name']}", m.group(1) if m else q))
    return out


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (a histogram's as NAME_bucket, ...)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for m in _IDENT.finditer(text):
        name = m.group(0)
        if name in _KEYWORDS or text[m.end():].lstrip().startswith("("):
            continue
        if m.start() > 0 and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # 0.5e3, 1m
        names.add(name)
    return names


def fill_variables(expr: str, rate_interval: str = "1m", range_: str = "5m") -> str:
    """`expr` as Grafana sends it with every multi-value variable at "All"
    (allValue ".*"): $__rate_interval/$__interval/$__range as given."""
    expr = re.sub(r"\$\{?__rate_interval\}?", rate_interval, expr)
    expr = re.sub(r"\$\{?__interval\}?", rate_interval, expr)
    expr = re.sub(r"\$\{?__range\}?", range_, expr)
    return re.sub(r"\$\{?(\w+)\}?", ".*", expr)


def exported_names(packages: Iterable[str] = ("juggler.master", "juggler.agent",
                                              "juggler.apps", "juggler.images",
                                              "juggler.container", "juggler.common",
                                              "juggler.store")) -> set[str]:
    """The series names juggler's processes export: every prometheus_client
    collector defined at module level in `packages` (each module imported),
    scrape-time collectors by their describe() (the master's per-agent and
    per-role gauges exist only on a leader), the apps service's own registry,
    and the default registry's process and platform collectors. Counters as
    NAME_total; histograms as NAME_bucket, NAME_sum and NAME_count, summaries
    as NAME, NAME_sum and NAME_count."""
    from prometheus_client import REGISTRY

    from juggler.apps.service import Metrics

    described: list[Any] = []
    for package in packages:
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            module = importlib.import_module(info.name)
            described += [v for v in vars(module).values() if _is_collector(v)]
    families = [f for c in described for f in c.describe()]
    families += [*Metrics().registry.collect(), *REGISTRY.collect()]
    names: set[str] = set()
    for f in families:
        if f.type == "counter":
            names.add(f"{f.name}_total")
        elif f.type == "histogram":
            names.update(f"{f.name}{s}" for s in ("_bucket", "_sum", "_count"))
        elif f.type == "summary":
            names.update(f"{f.name}{s}" for s in ("", "_sum", "_count"))
        else:
            names.add(f.name)
    return names


def _is_collector(value: Any) -> bool:
    """A prometheus_client metric, or a juggler collector with describe()."""
    from prometheus_client.metrics import MetricWrapperBase

    if isinstance(value, MetricWrapperBase):
        return True
    kind = type(value)
    return (kind.__module__.startswith("juggler.") and callable(getattr(value, "collect", None))
            and callable(getattr(value, "describe", None)))
