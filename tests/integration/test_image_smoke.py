"""The image of the top-level Dockerfile, as scripts/build-image builds it
without a Docker daemon, run under runc as docker-compose.yml runs it under
Docker: its config and packages are the Dockerfile's, its CLI answers, and its
etcd, three masters and a privileged agent, each a container, make a cluster
that elects one leader and runs a task.

Needs the built image: JUGGLER_IMAGE=LAYOUT:TAG (scripts/check-deploy builds it
and runs this file; `sudo scripts/build-image` then
`JUGGLER_IMAGE=build/oci:juggler pytest tests/integration/test_image_smoke.py`).
Without it every test here is skipped, saying so.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from juggler.container import cgroups, native_init
from juggler.testing import dockerfile
from juggler.testing.runc_containers import Runc, container_config, image_config
from tests.conftest import free_ports, wait_for

ROOT = Path(__file__).resolve().parents[2]
PREFIX = f"h4smoke-{os.getpid()}"
DOCKERFILE = dockerfile.parse((ROOT / "Dockerfile").read_text())

pytestmark = [pytest.mark.root]


@dataclass
class Image:
    layout: Path
    tag: str
    config: dict[str, Any]   # umoci's runtime config.json of the image
    rootfs: Path
    runc: Runc

    def container(self, command: list[str], entrypoint: bool = True,
                  **kwargs: Any) -> dict[str, Any]:
        """A container of the image running `command` (after the Entrypoint,
        as compose's `command:`; without `entrypoint`, instead of it)."""
        return container_config(self.config, self.rootfs, command, entrypoint_len=len(
            DOCKERFILE.entrypoint) if entrypoint else 0, **kwargs)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    ref = os.environ.get("JUGGLER_IMAGE")
    if not ref:
        pytest.skip("JUGGLER_IMAGE is not set: scripts/check-deploy builds the image "
                    "(scripts/build-image) and runs these tests")
    # Asked for by name: what is missing fails, never skips (CI would pass silently).
    if os.geteuid() != 0:
        pytest.fail("requires root (runc containers with cgroups and mounts)")
    for tool in ("umoci", "runc"):
        if not shutil.which(tool):
            pytest.fail(f"needs {tool} (scripts/setup installs it)")
    layout, _, tag = ref.rpartition(":")
    work = tmp_path_factory.mktemp("image")
    bundle = work / "unpacked"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
                   check=True, capture_output=True, timeout=300)
    runc = Runc(work)
    try:
        yield Image(Path(layout), tag, json.loads((bundle / "config.json").read_text()),
                    bundle / "rootfs", runc)
    finally:
        runc.close()
        shutil.rmtree(work, ignore_errors=True)


def test_the_image_config_is_the_dockerfiles(image: Image) -> None:
    config = image_config(image.layout, image.tag)
    assert config["Entrypoint"] == DOCKERFILE.entrypoint
    assert config["Cmd"] == DOCKERFILE.cmd
    assert config["WorkingDir"] == DOCKERFILE.workdir
    assert dict(e.split("=", 1) for e in config["Env"]) == DOCKERFILE.env


def test_the_image_has_the_dockerfiles_packages(image: Image) -> None:
    result = image.runc.run(f"{PREFIX}-dpkg", image.container(
        ["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", *DOCKERFILE.packages],
        entrypoint=False))
    assert result.returncode == 0, result.stderr
    installed = dict(line.split() for line in result.stdout.splitlines())
    assert installed == dict.fromkeys(DOCKERFILE.packages, "installed")


def test_the_cli_answers(image: Image) -> None:
    """The image's default command (the Dockerfile's CMD: --help) and --version."""
    default = image.runc.run(f"{PREFIX}-help", image.container(DOCKERFILE.cmd))
    assert default.returncode == 0, default.stderr
    assert default.stdout.startswith("usage: juggler")
    version = image.runc.run(f"{PREFIX}-version", image.container(["--version"]))
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"juggler {importlib.metadata.version('juggler')}"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The host's juggler CLI, as a user outside the containers runs it."""
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, JUGGLER_HOME="/nonexistent"))


def _remove_cgroups(name: str) -> None:
    """Kill what runs in, then rmdir, every cgroup named `name` (and below) an
    agent left in the host's hierarchies: with the host's pids, runc ends the
    processes of the container's own cgroup only."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / name
        if not top.is_dir():
            continue
        directories = sorted((p for p in top.rglob("*") if p.is_dir()),
                             key=lambda p: len(p.parts), reverse=True)
        for directory in [*directories, top]:
            with contextlib.suppress(OSError, ValueError):
                for pid in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for directory in [*directories, top]:
            with contextlib.suppress(OSError, AssertionError):   # cleanup: never mask a failure
                wait_for(lambda d=directory: not (d / "cgroup.procs").read_text().strip(),
                         timeout=10, what=f"{directory} empty")
                directory.rmdir()


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers.get_content_type(), r.read()


def _is_leader(metrics_port: int) -> float | None:
    """juggler_master_is_leader on a master's /metrics (None while it does not answer)."""
    try:
        _, body = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    except OSError:
        return None
    return next((float(line.split()[1]) for line in body.decode().splitlines()
                 if line.startswith("juggler_master_is_leader ")), None)


def _image_has_juggler_init(image: Image) -> bool:
    """The installed package of the image carries juggler-init, executable
    and built from the init.c installed beside it (native_init.built's rule)."""
    for native in image.rootfs.glob(
            "opt/juggler/lib/python3*/site-packages/juggler/container/native"):
        program, source = native / "juggler-init", native / "init.c"
        if program.is_file() and source.is_file():
            return native_init.built_from(program, source)
    return False


def test_etcd_three_masters_and_an_agent_run_a_task(image: Image, tmp_path: Path) -> None:
    """docker-compose.yml's etcd, masters and agent services, under runc (host
    network, loopback ports): the masters elect one leader through the image's
    etcd, the privileged agent registers (`juggler agents`, from the host and
    from the image), the leader serves the web UI and lists the agent's
    /metrics for Prometheus, and a task runs inside the agent's container
    (its namespaces and cgroups made from there)."""
    ports = free_ports(*[1] * 10)
    etcd_client, etcd_peer, agent_port, agent_metrics = ports[:4]
    masters = list(zip(ports[4::2], ports[5::2], strict=True))   # three (gRPC, HTTP)
    master_list = ",".join(f"127.0.0.1:{grpc_port}" for grpc_port, _ in masters)
    hostname = f"{PREFIX}-agent"
    cgroup_root = f"{PREFIX}-tasks"
    logs: dict[str, Path] = {}

    def start(name: str, command: list[str], volume: str = "", **kwargs: Any) -> None:
        """Start container `name`; `volume`: where tmp_path/name is mounted in it."""
        logs[name] = tmp_path / f"{name}.log"
        binds = {}
        if volume:
            (tmp_path / name).mkdir()
            binds[str(tmp_path / name)] = volume
        image.runc.start(f"{PREFIX}-{name}", image.container(command, binds=binds, **kwargs),
                         logs[name])

    def explain() -> str:
        return "\n".join(f"--- {name} ---\n{log.read_text()[-2000:]}"
                         for name, log in logs.items())

    try:
        client, peer = f"http://127.0.0.1:{etcd_client}", f"http://127.0.0.1:{etcd_peer}"
        start("etcd", ["etcd", "--name", "etcd", "--data-dir", "/var/lib/etcd",
                       "--listen-client-urls", client, "--advertise-client-urls", client,
                       "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                       "--initial-cluster", f"etcd={peer}"],
              "/var/lib/etcd", entrypoint=False)
        for i, (grpc_port, http_port) in enumerate(masters, 1):
            start(f"master-{i}", ["master", "--etcd", client, "--etcd-prefix", f"/{PREFIX}/",
                                  "--host", "127.0.0.1", "--port", str(grpc_port),
                                  "--advertise", f"127.0.0.1:{grpc_port}",
                                  "--metrics-port", str(http_port)])
        start("agent", ["agent", "--master", master_list, "--host", "127.0.0.1",
                        "--port", str(agent_port), "--metrics-port", str(agent_metrics),
                        "--hostname", hostname, "--work-dir", "/var/lib/juggler/agent",
                        "--cgroup-root", cgroup_root,
                        "--resources", "cpus:1;mem:256;ports:[30700-30710]"],
              "/var/lib/juggler/agent", privileged=True, host_pid=True)

        def registered() -> bool:
            listing = _cli("agents", "--master", master_list)
            return any(line.split()[1:3] == [hostname, "ACTIVE"]
                       for line in listing.stdout.splitlines()[1:])

        try:
            wait_for(registered, timeout=120, interval=0.5,
                     what=f"agent {hostname} ACTIVE in `juggler agents`")
            leaders = wait_for(
                lambda: (lambda flags: flags if None not in flags else None)(
                    [_is_leader(http_port) for _, http_port in masters]),
                timeout=60, interval=0.5, what="every master's juggler_master_is_leader")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{explain()}") from None
        assert sorted(leaders) == [0, 0, 1]
        leader_http = masters[leaders.index(1)][1]

        inside = image.runc.run(f"{PREFIX}-cli", image.container(
            ["agents", "--master", master_list]))
        assert inside.returncode == 0, inside.stderr
        assert hostname in inside.stdout
        # The UI's files are in the installed package (not only in this tree).
        kind, page = _get(f"http://127.0.0.1:{leader_http}/")
        assert kind == "text/html" and page
        _, targets = _get(f"http://127.0.0.1:{leader_http}/prometheus/targets")
        agent_targets = [t for group in json.loads(targets) for t in group["targets"]
                         if group["labels"].get("job") == "juggler-agent"]
        assert agent_targets == [f"127.0.0.1:{agent_metrics}"]

        task = _cli("run", "--master", master_list, "-q", "--mem", "32", "--",
                    "sh", "-c", "echo hello from $(hostname)")
        assert task.returncode == 0, (task.stdout, task.stderr, explain())
        assert "hello from" in task.stdout
        # The image's juggler-init (scripts/setup built it in the context) sets
        # host-filesystem tasks up, as on a host, where cgroups are v1.
        if _image_has_juggler_init(image) and cgroups.detect() == 1:
            log = next((tmp_path / "agent").glob("frameworks/*/tasks/*/executor.log"), None)
            assert log is not None, f"no executor.log in the agent's work dir\n{explain()}"
            started = next((json.loads(line) for line in log.read_text().splitlines()
                            if '"container started"' in line), None)
            assert started is not None, log.read_text()
            assert started["init"] == "juggler-init", log.read_text()
    finally:
        image.runc.close()
        _remove_cgroups(cgroup_root)
