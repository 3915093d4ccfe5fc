"""Fixtures shared by the test layers.

`cluster` is a real local cluster started with `juggler up` (one master and
two agents, separate processes) in a temporary work dir, once per session.
`daemons` is an empty Daemons (juggler/testing/daemons.py) per test, which the
test starts masters and agents in with its own flags. `etcd` is a real etcd per
test module; `registry` and `test_images` a real image registry on loopback with
test images in it, once per session (juggler/testing/). Each is skipped, with
the reason, where the host lacks what it needs. With JUGGLER_TEST_TLS=1 every
cluster runs with mutual TLS, HTTPS and access rules on, all of one session CA
(testing/secure.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from juggler.testing import secure
from juggler.testing.etcd_server import EtcdNotInstalled, EtcdServer, etcd_binary, etcd_server
from juggler.testing.registry import (
    Registry,
    TestImages,
    ToolsMissing,
    build_test_images,
    needs_tools,
    start_registry,
)
from juggler.testing.waiting import free_port, free_ports, wait_for

if TYPE_CHECKING:
    from juggler.testing.daemons import Daemons

__all__ = ["Cluster", "LabCluster", "free_port", "free_ports", "juggler_lab", "juggler_up",
           "needs_root", "wait_for"]

ROOT = Path(__file__).resolve().parent.parent
# `juggler up` starts a master and agents (three masters and etcd with
# --masters 3): seconds, many more on a loaded machine.
UP_TIMEOUT = 120.0


def pytest_configure(config: pytest.Config) -> None:
    """Refuse to test another checkout's code: an editable install of juggler
    points at one checkout, and the tests must run this one's."""
    import juggler.common

    where = Path(juggler.common.__file__).resolve().parent.parent
    if where != ROOT:
        raise pytest.UsageError(
            f"juggler is imported from {where}, not from this checkout ({ROOT}): run "
            f"`scripts/setup --venv .venv` here and test with `.venv/bin/python -m pytest` "
            "(scripts/test does both)")
    if secure.enabled():   # JUGGLER_TEST_TLS=1: the suite's TLS run (testing/secure.py)
        secure.start(Path(tempfile.mkdtemp(prefix="juggler-test-tls-")))


def pytest_unconfigure(config: pytest.Config) -> None:
    made = secure.session()
    if made is not None:
        shutil.rmtree(made.directory, ignore_errors=True)


def pytest_report_header(config: pytest.Config) -> str | None:
    made = secure.session()
    return None if made is None else f"juggler TLS mode: session CA in {made.directory}"


@dataclass
class Cluster:
    master: str
    metrics_port: int
    work_dir: Path
    home: Path
    process: subprocess.Popen[str]
    docker_host: str = ""   # unix://…: the apps service's Docker Engine API

    def env(self) -> dict[str, str]:
        return dict(os.environ, JUGGLER_HOME=str(self.home), JUGGLER_MASTER=self.master)

    def juggler(self, *args: str, timeout: float = 60.0,
                check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the `juggler` CLI against this cluster, as a user would."""
        result = subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                                capture_output=True, text=True, timeout=timeout, env=self.env())
        if check and result.returncode != 0:
            raise AssertionError(f"juggler {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-m", "juggler.cli.main", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env())

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.work_dir.glob("*.log")))


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("requires root (namespaces, cgroups, mounts)")


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory of the host outside /tmp, removed afterwards: a task on the
    host's filesystem reads it (read-only) where it cannot see the host's
    /tmp, and so no pytest tmp_path (its /tmp is its own:
    container/host_view.py). For flag files the test writes and tasks or
    their health checks read."""
    path = Path(tempfile.mkdtemp(prefix="juggler-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    from juggler.testing.daemons import Daemons

    needs_root()
    d = Daemons(tmp_path)
    try:
        yield d
    finally:
        d.close()


@contextlib.contextmanager
def juggler_up(*flags: str, home: Path,
               stop_timeout: float = 30.0) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`juggler up FLAGS` (its state in `home`) once it says it is ready: the
    process and that first line. Stopped at the end as Ctrl-C stops it. In
    the TLS mode (testing/secure.py) with --tls and the session's CA, unless
    FLAGS hold --tls already."""
    own_tls = "--tls" in flags   # a test's own CA stays its own
    proc = subprocess.Popen([sys.executable, "-m", "juggler.cli.main", "up", *flags,
                             *([] if own_tls else secure.up_flags())],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JUGGLER_HOME=str(home)))
    assert proc.stdout is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(proc.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(UP_TIMEOUT)  # up prints its first line once ready (or dies)
    line = first[0] if first else ""
    if " at " not in line or "agent(s)" not in line:
        _stop(proc, stop_timeout)  # what it started goes too
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"juggler up failed (or not ready within {UP_TIMEOUT} s): "
                             f"{line}{err}")
    try:
        yield proc, line
    finally:
        _stop(proc, stop_timeout)


@dataclass
class ThreeMasters:
    """`juggler up --masters 3 --agents 1` (its own etcd): the masters'
    addresses, the env and argv that run the CLI against it, and up itself."""

    addresses: list[str]
    apps_port: int   # the first apps service's (the others: +1, +2)
    env: dict[str, str]
    juggler: list[str]
    up: subprocess.Popen[str]

    def master_pid(self, address: str) -> int:
        """The pid of the master (a child of up) that listens at `address`."""
        from juggler.testing.processes import argv_of, children_of

        port = address.rsplit(":", 1)[1]
        pids = [pid for pid in children_of(self.up.pid)
                if "master" in (argv := argv_of(pid)) and "--port" in argv
                and argv[argv.index("--port") + 1] == port]
        assert len(pids) == 1, (address, pids)
        return pids[0]


@contextlib.contextmanager
def three_masters_up(tmp_path: Path) -> Iterator[ThreeMasters]:
    """As juggler_up, with three masters on free ports (P, P+1, P+2 of each
    of --port, --metrics-port and --apps-port) and a Docker socket of its own.
    Skips the test when etcd is not installed."""
    needs_root()
    try:
        etcd_binary()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    port, metrics, apps = free_ports(3, 3, 3)
    env = dict(os.environ, JUGGLER_HOME=str(tmp_path / "home"))
    with juggler_up("--masters", "3", "--agents", "1", "--port", str(port),
                    "--metrics-port", str(metrics), "--apps-port", str(apps),
                    "--work-dir", str(tmp_path / "work"),
                    "--docker-socket", str(tmp_path / "docker.sock"),
                    home=tmp_path / "home", stop_timeout=60) as (up, ready):
        assert "3 masters" in ready
        yield ThreeMasters([f"127.0.0.1:{p}" for p in (port, port + 1, port + 2)], apps, env,
                           [sys.executable, "-m", "juggler.cli.main"], up)


def _stop(up: subprocess.Popen[str], timeout: float) -> None:
    """Stop `juggler up` as Ctrl-C does (it stops what it started)."""
    if up.poll() is not None:
        return
    up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout)
    except subprocess.TimeoutExpired:
        up.kill()
        raise


@dataclass
class LabCluster:
    """`juggler up --hosts N` (cli/lab_hosts.py): `lab` names the hosts (netns,
    address, partition and heal commands); `lines` is what up printed."""

    lab: Any   # juggler.cli.lab_hosts.Lab
    master: str
    apps: str   # the apps service's URL
    home: Path
    lines: list[str]
    process: subprocess.Popen[str]

    @property
    def hosts(self) -> Any:   # tuple[lab_hosts.LabHost, ...]
        return self.lab.hosts

    def juggler(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """The `juggler` CLI against the lab, from the root namespace."""
        return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                              capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, JUGGLER_HOME=str(self.home)))


@contextlib.contextmanager
def juggler_lab(base: Path, hosts: int = 2, *flags: str) -> Iterator[LabCluster]:
    """`juggler up --hosts HOSTS FLAGS` on a lab number and ports nobody else
    uses, its work dir and home under `base`; at the end, asserts that nothing
    of the lab is left (namespaces, veths, bridge)."""
    import random

    from pyroute2 import IPRoute, netns

    from juggler.cli import lab_hosts

    needs_root()
    with IPRoute() as ip:   # 100-250: 0 and the low ones are left to people's own labs
        n = next(n for n in random.sample(range(100, 251), 151)
                 if not ip.link_lookup(ifname=f"jlab{n}")
                 and not (lab_hosts.STATE_DIR / f"jlab{n}.json").exists())
    plan = lab_hosts.plan(n, hosts)
    port, metrics, apps = free_ports(1, 1, 1)
    with juggler_up("--hosts", str(hosts), "--lab", str(n), "--port", str(port),
                    "--metrics-port", str(metrics), "--apps-port", str(apps),
                    "--work-dir", str(base / "work"), "--docker-socket", str(base / "d.sock"),
                    *flags, home=base / "home") as (proc, line):
        lines = [line]
        while "logs in" not in lines[-1] and lines[-1]:
            lines.append(proc.stdout.readline())  # type: ignore[union-attr]
        master = line.split("master at ", 1)[1].split()[0]
        yield LabCluster(plan, master, secure.url(f"127.0.0.1:{apps}"), base / "home", lines,
                         proc)
    left = [x for x in netns.listnetns() if x in {h.netns for h in plan.hosts}]
    with IPRoute() as ip:
        left += [x for x in [plan.bridge, *(h.veth for h in plan.hosts)]
                 if ip.link_lookup(ifname=x)]
    assert left == [], f"left behind by `juggler up --hosts`: {left}"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    needs_root()
    base = tmp_path_factory.mktemp("cluster")
    home = base / "home"
    work = base / "work"
    port, metrics, apps = free_ports(1, 1, 1)
    socket = base / "docker.sock"   # not /run/juggler's: another cluster may hold it
    with juggler_up("--agents", "2", "--port", str(port), "--metrics-port", str(metrics),
                    "--apps-port", str(apps), "--work-dir", str(work),
                    "--docker-socket", str(socket), home=home) as (proc, line):
        assert "master at" in line, line
        master = line.split("master at ", 1)[1].split()[0]
        yield Cluster(master=master, metrics_port=metrics, work_dir=work, home=home,
                      process=proc, docker_host=f"unix://{socket}")


@pytest.fixture(scope="module", name="etcd")
def etcd_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """A real etcd for the test module; the test is skipped if etcd is not installed."""
    try:
        etcd_binary()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    with etcd_server(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture(scope="session", name="registry")
def registry_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    try:
        needs_tools()
    except ToolsMissing as e:
        pytest.skip(str(e))
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session", name="test_images")
def images_fixture(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> TestImages:
    return build_test_images(registry, tmp_path_factory.mktemp("images"))
