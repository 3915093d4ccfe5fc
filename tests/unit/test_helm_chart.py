"""helm/juggler renders, lints and validates without a cluster.

Rendering and linting use Helm's own Go code (helm-python-sdk binds the Helm
v4 SDK: the engine and `helm lint` that the `helm` binary runs); the manifests
are checked against the Kubernetes OpenAPI schemas that kubernetes-validate
bundles, and the values against values.schema.json with jsonschema. Each
juggler container's command line is parsed by juggler's own CLI parser, so a
flag the chart passes that juggler does not have fails here.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from juggler.agent import resources as agent_resources
from juggler.cli.main import parser as cli_parser
from juggler.common.ranges import Ranges

CHART = Path(__file__).resolve().parents[2] / "helm" / "juggler"
RELEASE, NAMESPACE = "lab", "juggler"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# whose schemas kubernetes-validate bundles.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
# Kinds that are no part of Kubernetes itself (CRDs): checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"),
                ("monitoring.coreos.com/v1", "PrometheusRule")}
ALERTS = CHART.parents[1] / "deploy" / "prometheus" / "alerts.yml"
# Kubernetes's default NodePort range (kube-apiserver --service-node-port-range).
NODE_PORTS = Ranges.of([(30000, 32767)])

EXTERNAL_ETCD = ["https://etcd-a.db:2379", "https://etcd-b.db:2379"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-etcd-monitoring": {
        "etcd": {"bundled": {"enabled": False}, "prefix": "/prod/",
                 "external": {"endpoints": EXTERNAL_ETCD, "tls": {"secretName": "etcd-client"}}},
        "serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
    },
    "one-master-custom": {
        "image": {"repository": "registry.example/ops/juggler", "tag": "dev",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull"}],
        "masters": {"replicas": 1, "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                                 "limits": {"memory": "512Mi"}},
                    "extraArgs": ["--offer-timeout=30"]},
        "agents": {"offerResources": "cpus:2;mem:1024;", "taskPorts": "[25000-25999, 26500]",
                   "apiHost": "$(HOST_IP)",
                   "attributes": "rack:r1;zone:a", "workDir": "/data/juggler",
                   "resources": {"requests": {"cpu": "100m"}},
                   "tolerations": [{"operator": "Exists"}],
                   "nodeSelector": {"juggler.io/agent": "true"}},
        "apps": {"replicas": 2, "role": "web", "service": {"type": "NodePort"}},
        "etcd": {"bundled": {"replicas": 3, "persistence": {"size": "2Gi",
                                                            "storageClass": "fast-ssd"},
                             "image": {"repository": "quay.io/coreos/etcd", "tag": "v3.5.17"}}},
    },
    "throwaway-lab": {
        "agents": {"taskPorts": "[]"},
        "etcd": {"bundled": {"persistence": {"enabled": False}}},
    },
}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object the chart renders with `values`, NOTES.txt left out."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def _merged(values: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with `values` laid over it, as Helm merges them."""
    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for k, v in over.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out
    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), values)


def _one(docs: list[dict[str, Any]], kind: str, component: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind
             and d["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"{len(found)} {kind}s of {component}"
    return found[0]


def _juggler_args(workload: dict[str, Any], pod_env: dict[str, str]) -> tuple[str, Any]:
    """The juggler command of the workload's container (its args: the image's
    entrypoint is juggler), parsed by juggler's CLI parser after Kubernetes's
    $(VAR) expansion with `pod_env`."""
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert "command" not in container, "the image's entrypoint (tini -- juggler) is kept"
    declared = {e["name"] for e in container.get("env", [])}
    argv = []
    for arg in container["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in declared, f"{arg} uses $({var}), not in the container's env"
        argv.append(re.sub(r"\$\((\w+)\)", lambda m: pod_env[m.group(1)], arg))
    return argv[0], cli_parser(argv[0]).parse_args(argv)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    values = VARIANTS[request.param]
    return request.param, values, _render(values)


def test_the_image_runs_juggler_and_carries_etcd() -> None:
    """The chart passes only args: the repository's Dockerfile must keep juggler
    as its entrypoint, and carry the etcd the bundled members run by default."""
    dockerfile = (CHART.parents[1] / "Dockerfile").read_text()
    (entrypoint,) = re.findall(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
    assert json.loads(entrypoint)[-1] == "juggler"
    assert "etcd-server" in dockerfile


def test_helm_lint_finds_no_warning_or_error() -> None:
    for name, values in VARIANTS.items():
        for kube in KUBE_VERSIONS:
            report = helm.lint(CHART, values, strict=True, kube_version=f"v{kube}")
            serious = [m for m in report["messages"] if m["severity"] >= 2]
            assert report["errors"] == [] and serious == [], (name, kube, report)


def test_values_satisfy_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    for values in VARIANTS.values():
        jsonschema.Draft7Validator(schema).validate(_merged(values))


def test_manifests_are_valid_kubernetes_objects(variant: Any) -> None:
    _, _, docs = variant
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            continue
        for kube in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} on {kube}: {e.message}")


def test_every_juggler_command_line_parses_and_finds_the_masters(variant: Any) -> None:
    _, values, docs = variant
    merged = _merged(values)
    replicas = merged["masters"]["replicas"]
    masters = _one(docs, "StatefulSet", "master")
    assert masters["spec"]["replicas"] == replicas
    head = f"{RELEASE}-juggler-master"
    _, master = _juggler_args(masters, {"POD_NAME": f"{head}-0"})
    assert master.advertise == f"{head}-0.{head}.{NAMESPACE}.svc.cluster.local:5050"
    master_list = ",".join(f"{head}-{i}.{head}.{NAMESPACE}.svc.cluster.local:5050"
                           for i in range(replicas))
    _, agent = _juggler_args(_one(docs, "DaemonSet", "agent"),
                             {"NODE_NAME": "node-1", "HOST_IP": "192.0.2.7"})
    _, apps = _juggler_args(_one(docs, "Deployment", "apps"), {"POD_IP": "198.51.100.9"})
    assert agent.master == apps.master == master_list
    assert apps.advertise == "http://198.51.100.9:8080"
    assert agent.host == merged["agents"]["apiHost"].replace("$(HOST_IP)", "192.0.2.7")
    assert master.etcd == apps.etcd and master.etcd_prefix == apps.etcd_prefix
    if merged["etcd"]["bundled"]["enabled"]:
        etcd = _one(docs, "StatefulSet", "etcd")
        (member,) = etcd["spec"]["template"]["spec"]["containers"]
        etcd_image = merged["etcd"]["bundled"]["image"]
        assert member["command"] == ["etcd"]
        assert member["image"] == (f"{etcd_image['repository']}:{etcd_image['tag']}"
                                   if etcd_image["repository"] else
                                   f"{merged['image']['repository']}:"
                                   f"{merged['image']['tag'] or '0.1.0'}")
        n = merged["etcd"]["bundled"]["replicas"]
        assert etcd["spec"]["replicas"] == n
        assert master.etcd.split(",") == [
            f"http://{RELEASE}-juggler-etcd-{i}.{RELEASE}-juggler-etcd.{NAMESPACE}"
            f".svc.cluster.local:2379" for i in range(n)]
    else:
        assert master.etcd.split(",") == EXTERNAL_ETCD
        assert master.etcd_ca == "/etc/juggler/etcd/ca.crt"
        assert not [d for d in docs if d["metadata"]["labels"]["app.kubernetes.io/component"]
                    == "etcd"]
    image = merged["image"]
    for workload in (masters, _one(docs, "DaemonSet", "agent"), _one(docs, "Deployment", "apps")):
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        assert container["image"] == f"{image['repository']}:{image['tag'] or '0.1.0'}"


def test_agents_get_the_host_they_manage(variant: Any) -> None:
    _, values, docs = variant
    pod = _one(docs, "DaemonSet", "agent")["spec"]["template"]["spec"]
    assert pod["hostPID"] and pod["hostNetwork"]
    (container,) = pod["containers"]
    assert container["securityContext"]["privileged"] is True
    host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    work_dir = _merged(values)["agents"]["workDir"]
    assert host_paths["cgroup"] == mounts["cgroup"] == "/sys/fs/cgroup"
    assert host_paths["work"] == mounts["work"] == work_dir


def test_services_pdbs_and_service_monitor_select_what_they_name(variant: Any) -> None:
    name, _, docs = variant
    pods = [(d["spec"]["template"]["metadata"]["labels"],
             {p["name"] for c in d["spec"]["template"]["spec"]["containers"] for p in c["ports"]})
            for d in docs if d["kind"] in ("StatefulSet", "DaemonSet", "Deployment")]

    def selected(selector: dict[str, str]) -> list[set[str]]:
        return [ports for labels, ports in pods if selector.items() <= labels.items()]

    services = [d for d in docs if d["kind"] == "Service"]
    for svc in services:
        (port_names,) = selected(svc["spec"]["selector"])
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names, (svc["metadata"]["name"], port)
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        assert sts["spec"]["serviceName"] in {s["metadata"]["name"] for s in services}
    pdb = _one(docs, "PodDisruptionBudget", "master")
    assert len(selected(pdb["spec"]["selector"]["matchLabels"])) == 1
    monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
    if name != "external-etcd-monitoring":
        assert monitors == []
        return
    (monitor,) = monitors
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    picked = [s for s in services
              if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
              and spec["jobLabel"] in s["metadata"]["labels"]]
    jobs = {s["metadata"]["labels"][spec["jobLabel"]]: {p["name"] for p in s["spec"]["ports"]}
            for s in picked}
    # The job names deploy/prometheus and its alerts use, each with a port
    # that one of the monitor's endpoints scrapes.
    assert set(jobs) == {"juggler-master", "juggler-agent", "juggler-apps"}
    endpoint_ports = {e["port"] for e in spec["endpoints"]}
    assert all(e["path"] == "/metrics" and e["interval"] == "30s" for e in spec["endpoints"])
    assert all(ports & endpoint_ports for ports in jobs.values()), jobs


@pytest.mark.skipif(shutil.which("etcd") is None, reason="needs etcd (Debian's etcd-server)")
def test_bundled_etcd_flags_are_etcds() -> None:
    """The bundled members' flags exist in etcd (Debian's 3.4 here; the image's
    3.5 keeps them), and the initial cluster names every member's peer URL."""
    helped = subprocess.run(["etcd", "--help"], capture_output=True, text=True, check=False)
    known = set(re.findall(r"^\s+(--[a-z0-9-]+)", helped.stdout + helped.stderr, re.M))
    etcd = _one(_render(VARIANTS["one-master-custom"]), "StatefulSet", "etcd")
    (container,) = etcd["spec"]["template"]["spec"]["containers"]
    flags = dict(a.split("=", 1) for a in container["args"])
    assert set(flags) <= known, set(flags) - known
    members = flags["--initial-cluster"].split(",")
    assert [m.split("=")[0] for m in members] == [f"{RELEASE}-juggler-etcd-{i}" for i in range(3)]


def test_notes_say_how_to_reach_the_ui() -> None:
    with helm.Chart.load(CHART) as chart:
        notes = chart.render({}, name=RELEASE, namespace=NAMESPACE)["juggler/templates/NOTES.txt"]
    assert f"port-forward {RELEASE}-juggler-master-0 5055" in notes
    assert "http://127.0.0.1:5055/" in notes


@pytest.mark.parametrize("values, where", [
    ({"masters": {"replicas": "three"}}, "/masters/replicas"),
    ({"masterz": {"replicas": 3}}, "additional properties 'masterz' not allowed"),
    ({"etcd": {"bundled": {"enabled": False}}}, "/etcd/external/endpoints"),
    ({"etcd": {"external": {"endpoints": ["etcd:2379"]}}}, "/etcd/external/endpoints/0"),
    ({"agents": {"extraArgs": ["debug"]}}, "/agents/extraArgs/0"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"etcd": {"bundled": {"image": {"repository": "quay.io/coreos/etcd"}}}},
     "/etcd/bundled/image/tag"),
    ({"agents": {"offerResources": "cpus:2;ports:[31000-32000]"}}, "/agents/offerResources"),
    ({"agents": {"taskPorts": "20000-21000"}}, "/agents/taskPorts"),
    ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
])
def test_values_against_the_schema_are_refused_naming_the_value(
        values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as e:
        _render(values)
    assert where in str(e.value)
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(_merged(values))


def _notes(values: dict[str, Any]) -> str:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)[
            "juggler/templates/NOTES.txt"]


def test_agents_offer_task_ports_outside_node_ports_and_keep_detected_amounts(
        variant: Any, tmp_path: Path) -> None:
    """The agent resolves the chart's --resources as on a node: the ports are
    agents.taskPorts (by default outside Kubernetes's NodePort range, where
    juggler's own 31000-32000 lies), cpus, mem and disk stay detected unless
    agents.offerResources names them."""
    _, values, docs = variant
    merged = _merged(values)["agents"]
    _, agent = _juggler_args(_one(docs, "DaemonSet", "agent"),
                             {"NODE_NAME": "node-1", "HOST_IP": "192.0.2.7"})
    offered = agent_resources.resolve(agent.resources, tmp_path)
    amounts = agent_resources.detect(tmp_path).as_dict()
    if merged["offerResources"]:
        amounts.update(agent_resources.Resources.parse(merged["offerResources"]).as_dict())
    assert offered.as_dict() == amounts
    assert offered.ports == Ranges.parse(merged["taskPorts"])
    assert not offered.ports & NODE_PORTS
    assert agent_resources.DEFAULT_PORTS & NODE_PORTS, "juggler's own default would collide"


def test_bundled_etcd_keeps_its_data_on_a_claim_unless_told_not_to(variant: Any) -> None:
    _, values, docs = variant
    bundled = _merged(values)["etcd"]["bundled"]
    if not bundled["enabled"]:
        return
    etcd = _one(docs, "StatefulSet", "etcd")
    pod = etcd["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    data_dir = dict(a.split("=", 1) for a in container["args"])["--data-dir"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["data"] == data_dir
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    persistence = bundled["persistence"]
    if persistence["enabled"]:
        assert "data" not in volumes
        (claim,) = etcd["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert claim["spec"]["resources"]["requests"]["storage"] == persistence["size"]
        assert claim["spec"].get("storageClassName") == (persistence["storageClass"] or None)
    else:
        assert volumes["data"] == {"name": "data", "emptyDir": {}}
        assert "volumeClaimTemplates" not in etcd["spec"]


def test_defaults_keep_etcd_data_and_notes_warn_when_they_do_not() -> None:
    persistence = _merged({})["etcd"]["bundled"]["persistence"]
    assert persistence == {"enabled": True, "size": "1Gi", "storageClass": ""}
    assert "WARNING: etcd" not in _notes({})
    off = {"etcd": {"bundled": {"persistence": {"enabled": False}}}}
    notes = _notes(off)
    assert "etcd.bundled.persistence.enabled is false" in notes and "emptyDir" in notes
    assert "the whole registry" in notes
    three = _notes({"etcd": {"bundled": {"replicas": 3, "persistence": {"enabled": False}}}})
    assert "emptyDir" in three and "the whole registry" not in three


def test_notes_say_the_agent_api_is_unauthenticated_and_how_to_restrict_it() -> None:
    notes = " ".join(_notes({}).split())
    assert "has no authentication yet, and listens on 0.0.0.0:5051 of every node" in notes
    assert 'agents.apiHost="$(HOST_IP)"' in notes and "firewall port 5051" in notes
    bound = " ".join(_notes({"agents": {"apiHost": "$(HOST_IP)"}}).split())
    assert "listens on the node's IP:5051" in bound
    readme = " ".join((CHART / "README.md").read_text().split())
    assert "**The agent API is not authenticated.**" in readme and "`agents.apiHost`" in readme


# The PrometheusRule's shape, from the Prometheus Operator's CRD
# (monitoring.coreos.com/v1 PrometheusRule: spec.groups[] of RuleGroup, each
# rules[] of Rule, expr required, durations in its Duration pattern).
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?"
                                          r"(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
            "labels": _STRINGS}},
        "spec": {"type": "object", "additionalProperties": False, "required": ["groups"],
                 "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                     "type": "object", "additionalProperties": False,
                     "required": ["name", "rules"],
                     "properties": {
                         "name": {"type": "string", "minLength": 1},
                         "interval": _DURATION, "query_offset": _DURATION,
                         "limit": {"type": "integer"}, "labels": _STRINGS,
                         "partial_response_strategy": {"type": "string"},
                         "rules": {"type": "array", "minItems": 1, "items": {
                             "type": "object", "additionalProperties": False,
                             # juggler ships alerts only (no recording rules).
                             "required": ["alert", "expr"],
                             "properties": {
                                 "alert": {"type": "string", "minLength": 1},
                                 "expr": {"type": ["string", "integer"], "minLength": 1},
                                 "for": _DURATION, "keep_firing_for": _DURATION,
                                 "labels": _STRINGS, "annotations": _STRINGS}}}}}}}},
    },
}


def test_chart_alerts_are_deploy_prometheus_alerts() -> None:
    """A chart reads no file outside its directory: files/alerts.yml is a copy,
    and must stay the same rules as deploy/prometheus/alerts.yml."""
    assert yaml.safe_load((CHART / "files" / "alerts.yml").read_text()) == \
        yaml.safe_load(ALERTS.read_text()), (
            "helm/juggler/files/alerts.yml differs from deploy/prometheus/alerts.yml: "
            "cp deploy/prometheus/alerts.yml helm/juggler/files/alerts.yml")


def test_prometheus_rule_carries_the_alerts_in_the_operators_shape(variant: Any) -> None:
    _, values, docs = variant
    found = [d for d in docs if d["kind"] == "PrometheusRule"]
    if not _merged(values)["prometheusRule"]["enabled"]:
        assert found == []
        return
    (rule,) = found
    jsonschema.Draft7Validator(PROMETHEUS_RULE_SCHEMA).validate(rule)
    assert rule["metadata"]["labels"]["release"] == "prom"
    groups = rule["spec"]["groups"]
    # The chart's copy, rule for rule (test_chart_alerts_are_deploy_prometheus_alerts
    # keeps the copy equal to deploy/prometheus/alerts.yml).
    assert groups == yaml.safe_load((CHART / "files" / "alerts.yml").read_text())["groups"]
    assert len({g["name"] for g in groups}) == len(groups)
    # Prometheus's templates reach Prometheus unexpanded by Helm.
    summaries = [r["annotations"]["summary"] for g in groups for r in g["rules"]]
    assert any("{{ $labels.instance }}" in s for s in summaries)
    # Its jobs are the ones the ServiceMonitor gives.
    jobs = {j for g in groups for r in g["rules"] for j in re.findall(r'job="([^"]+)"', r["expr"])}
    assert jobs and jobs <= {"juggler-master", "juggler-agent", "juggler-apps"}


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="needs promtool (Debian: apt-get install prometheus)")
def test_promtool_accepts_the_prometheus_rules_groups(tmp_path: Path) -> None:
    """The operator hands spec.groups to Prometheus as a rule file: Prometheus's
    own checker must accept the rendered groups."""
    (rule,) = [d for d in _render({"prometheusRule": {"enabled": True}})
               if d["kind"] == "PrometheusRule"]
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = subprocess.run(["promtool", "check", "rules", str(rules)],
                             capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
