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

from juggler.cli.main import parser as cli_parser

CHART = Path(__file__).resolve().parents[2] / "helm" / "juggler"
RELEASE, NAMESPACE = "lab", "juggler"
# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest
# whose schemas kubernetes-validate bundles.
KUBE_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())
# Kinds that are no part of Kubernetes itself (CRDs): checked by hand below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

EXTERNAL_ETCD = ["https://etcd-a.db:2379", "https://etcd-b.db:2379"]
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "external-etcd-monitoring": {
        "etcd": {"bundled": {"enabled": False}, "prefix": "/prod/",
                 "external": {"endpoints": EXTERNAL_ETCD, "tls": {"secretName": "etcd-client"}}},
        "serviceMonitor": {"enabled": True, "interval": "30s", "labels": {"release": "prom"}},
    },
    "one-master-custom": {
        "image": {"repository": "registry.example/ops/juggler", "tag": "dev",
                  "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull"}],
        "masters": {"replicas": 1, "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                                 "limits": {"memory": "512Mi"}},
                    "extraArgs": ["--offer-timeout=30"]},
        "agents": {"offerResources": "cpus:2;mem:1024;ports:[31000-32000]",
                   "attributes": "rack:r1;zone:a", "workDir": "/data/juggler",
                   "resources": {"requests": {"cpu": "100m"}},
                   "tolerations": [{"operator": "Exists"}],
                   "nodeSelector": {"juggler.io/agent": "true"}},
        "apps": {"replicas": 2, "role": "web", "service": {"type": "NodePort"}},
        "etcd": {"bundled": {"replicas": 3, "persistence": {"enabled": True, "size": "2Gi"},
                             "image": {"repository": "quay.io/coreos/etcd", "tag": "v3.5.17"}}},
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
    assert agent.resources == (merged["agents"]["offerResources"] or None)
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
])
def test_values_against_the_schema_are_refused_naming_the_value(
        values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as e:
        _render(values)
    assert where in str(e.value)
    schema = json.loads((CHART / "values.schema.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(_merged(values))
