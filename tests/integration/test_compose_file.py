"""docker-compose.yml, as Debian's docker-compose (1.29) reads it: `config`
validates it (no Docker engine needed) and what a user relies on is there —
etcd, three masters electing through it, privileged agents with the host's
cgroups and a work dir of their own, the apps service, Prometheus and Grafana
reading deploy/ files that exist — and every juggler command in it parses with
juggler's own CLI parser (so a renamed flag fails here, not in a user's lab).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from juggler.cli.main import parser as cli_parser
from juggler.testing import dockerfile

ROOT = Path(__file__).resolve().parents[2]
MASTERS = ("master-1", "master-2", "master-3")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose")
    if not binary:
        pytest.skip("needs docker-compose (Debian's; scripts/setup installs it)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))}
    result = subprocess.run([binary, "-f", "docker-compose.yml", "config"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return dict(yaml.safe_load(result.stdout))


def _args(service: dict[str, Any]) -> Any:
    """The service's juggler command line, parsed by juggler's CLI."""
    command = list(service["command"])
    return cli_parser(command[0]).parse_args(command)


def _binds(service: dict[str, Any]) -> dict[str, str]:
    """container path → source (a host path or a named volume)."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, dict):
            out[v["target"]] = v["source"]
        else:
            source, target = v.split(":")[:2]
            out[target] = source
    return out


def _published(service: dict[str, Any]) -> dict[int, int]:
    """host port → container port."""
    return {int(p["published"]): int(p["target"]) for p in service.get("ports", [])}


def _juggler_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "juggler:latest"}


def test_the_juggler_services_share_one_image_built_from_the_dockerfile(
        compose: dict[str, Any]) -> None:
    juggler = _juggler_services(compose)
    assert set(juggler) == {"etcd", *MASTERS, "agent-1", "agent-2", "apps"}
    for name, service in juggler.items():
        assert Path(service["build"]["context"]) == ROOT, name
        assert (ROOT / "Dockerfile").exists()
        if name != "etcd":   # the Dockerfile's ENTRYPOINT: juggler, then the command
            assert "entrypoint" not in service, name
    entrypoint = compose["services"]["etcd"]["entrypoint"]
    assert entrypoint[-1] == "etcd" and "etcd-server" in dockerfile.parse(
        (ROOT / "Dockerfile").read_text()).packages


def test_three_masters_elect_through_etcd(compose: dict[str, Any]) -> None:
    services = compose["services"]
    etcd = services["etcd"]["command"]
    client_url = etcd[etcd.index("--advertise-client-urls") + 1]
    advertised = set()
    for name in MASTERS:
        args = _args(services[name])
        assert args.etcd == client_url, name
        host, _, port = args.advertise.partition(":")
        assert host == services[name]["hostname"] == name and int(port) == args.port
        advertised.add(args.advertise)
        assert args.metrics_port in _published(services[name]).values(), name
    assert len(advertised) == 3
    assert _published(services["master-1"]) == {5050: 5050, 5055: 5055}


def test_agents_are_privileged_with_cgroups_and_a_work_dir_each(compose: dict[str, Any]) -> None:
    services = compose["services"]
    masters = {_args(services[m]).advertise for m in MASTERS}
    agents = {n: s for n, s in services.items() if n.startswith("agent-")}
    assert len(agents) >= 2
    work_volumes = set()
    for name, service in agents.items():
        args = _args(service)
        assert service["privileged"] is True and service["pid"] == "host", name
        assert set(args.master.split(",")) == masters, name
        binds = _binds(service)
        assert binds["/sys/fs/cgroup"] == "/sys/fs/cgroup", name
        assert binds[args.work_dir] in compose["volumes"], name
        work_volumes.add(binds[args.work_dir])
        assert service["hostname"] == name
    assert len(work_volumes) == len(agents), "agents must not share a work dir"


def test_the_apps_service_follows_the_masters_and_keeps_apps_in_etcd(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    args = _args(services["apps"])
    assert set(args.master.split(",")) == {_args(services[m]).advertise for m in MASTERS}
    assert args.etcd == _args(services["master-1"]).etcd
    url = urlsplit(args.advertise)
    assert url.hostname == services["apps"]["hostname"] and url.port == args.http_port
    assert _published(services["apps"]) == {8080: args.http_port}


def test_prometheus_reads_deploy_files_that_find_the_masters(compose: dict[str, Any]) -> None:
    services = compose["services"]
    prometheus = services["prometheus"]
    binds = _binds(prometheus)
    flags = dict(a.split("=", 1) for a in prometheus["command"])
    config_path = PurePosixPath(flags["--config.file"])
    source = Path(binds[str(config_path)])
    assert source == ROOT / "deploy/prometheus/prometheus.yml" and source.is_file()
    config = yaml.safe_load(source.read_text())
    for rule_file in config["rule_files"]:   # relative to the config file, as Prometheus reads it
        inside = config_path.parent / rule_file
        assert Path(binds[str(inside)]).is_file(), rule_file
    sd_urls = [sd["url"] for job in config["scrape_configs"]
               for sd in job.get("http_sd_configs", [])]
    found = set()
    for sd in map(urlsplit, sd_urls):
        assert sd.hostname in MASTERS, sd.geturl()
        assert sd.port == _args(services[sd.hostname]).metrics_port
        assert sd.path == "/prometheus/targets"
        found.add(sd.hostname)
    assert found == set(MASTERS)
    assert _published(prometheus) == {9090: 9090}


def test_grafana_is_provisioned_with_the_dashboard(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    binds = _binds(grafana)
    provisioning = Path(binds["/etc/grafana/provisioning"])
    assert provisioning == ROOT / "deploy/grafana/provisioning" and provisioning.is_dir()
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text())["providers"]]
    dashboards = {PurePosixPath(target).parent: Path(source) for target, source in binds.items()
                  if target.endswith(".json")}
    assert {PurePosixPath(p["options"]["path"]) for p in providers} <= set(dashboards)
    assert all(d.is_file() for d in dashboards.values())
    assert ROOT / "deploy/grafana/juggler.json" in dashboards.values()
    sources = [d for f in sorted((provisioning / "datasources").glob("*.yml"))
               for d in yaml.safe_load(f.read_text())["datasources"]]
    url = urlsplit(next(d["url"] for d in sources if d["type"] == "prometheus"))
    assert url.hostname in compose["services"] and url.port == 9090
    assert _published(grafana) == {3000: 3000}


def test_every_bind_mount_source_is_in_the_repository_or_the_host(
        compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for target, source in _binds(service).items():
            if source in compose.get("volumes", {}):
                continue
            assert Path(source).exists(), f"{name}: {source} (for {target}) does not exist"
