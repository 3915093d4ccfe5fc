"""Fixtures shared by the test layers.

`cluster` is a real local cluster started with `juggler up` (one master and
two agents, separate processes) in a temporary work dir, once per session.
`daemons` is an empty tests/daemons.py Daemons per test, which the test starts
masters and agents in with its own flags.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.daemons import Daemons

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = ""):  # type: ignore[no-untyped-def]
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@dataclass
class Cluster:
    master: str
    metrics_port: int
    work_dir: Path
    home: Path
    process: subprocess.Popen[str]

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
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    from tests.daemons import Daemons  # it imports this module's helpers

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
    process and that first line. Stopped at the end as Ctrl-C stops it."""
    proc = subprocess.Popen([sys.executable, "-m", "juggler.cli.main", "up", *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, JUGGLER_HOME=str(home)))
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until up is ready (or dies)
    if " at " not in line or "agent(s)" not in line:
        proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"juggler up failed: {line}{err}")
    try:
        yield proc, line
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    needs_root()
    base = tmp_path_factory.mktemp("cluster")
    home = base / "home"
    work = base / "work"
    port, metrics = free_port(), free_port()
    with juggler_up("--agents", "2", "--port", str(port), "--metrics-port", str(metrics),
                    "--work-dir", str(work), home=home) as (proc, line):
        assert "master at" in line, line
        master = line.split("master at ", 1)[1].split()[0]
        yield Cluster(master=master, metrics_port=metrics, work_dir=work, home=home,
                      process=proc)
