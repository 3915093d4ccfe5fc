"""The lab a fault campaign runs on: a 3-member etcd of its own and
`juggler up --masters 3 --hosts N --etcd …` with short agent ping timeouts,
on a lab number, ports and a work dir nobody else uses.

`juggler up` supervises its daemons: a master, agent or apps service that
exits is started again with the same command line (cli/up.py), so a kill -9
heals by itself; etcd members are ours, `EtcdMember.restart()` heals them.
`daemons()` finds up's children by their --work-dir (<work>/master-2, …).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from juggler.testing.etcd_server import EtcdCluster, etcd_cluster
from juggler.testing.waiting import free_ports

UP_TIMEOUT = 180.0
PING = ("--agent-ping-timeout", "1", "--max-agent-ping-timeouts", "3")


@dataclass
class Lab:
    """A running lab: `lab` is cli/lab_hosts.Lab (hosts, netns, partition
    commands), `masters` the masters' addresses, `apps` the apps services'
    URLs, `docker` the containers service's socket URL."""

    lab: Any
    etcd: EtcdCluster
    up: subprocess.Popen[str]
    work: Path
    home: Path
    masters: list[str]
    apps: list[str]
    docker: str
    lines: list[str] = field(default_factory=list)

    @property
    def master_spec(self) -> str:
        return ",".join(self.masters)

    def env(self) -> dict[str, str]:
        return dict(os.environ, JUGGLER_HOME=str(self.home), JUGGLER_DOCKER=self.docker,
                    JUGGLER_MASTER=self.master_spec)

    def juggler(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """The `juggler` CLI against the lab."""
        return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env())

    def daemons(self) -> dict[str, int]:
        """up's live children by name ("master-1", "agent-2", "apps-3") → pid."""
        out = {}
        for pid in _children(self.up.pid):
            argv = _cmdline(pid)
            if "--work-dir" in argv:
                name = Path(argv[argv.index("--work-dir") + 1]).name
                out[name] = pid
        return out

    def up_alive(self) -> bool:
        return self.up.poll() is None


def _children(ppid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == ppid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def _free_lab() -> int:
    from pyroute2 import IPRoute

    from juggler.cli import lab_hosts

    with IPRoute() as ip:
        return next(n for n in random.sample(range(100, 251), 151)
                    if not ip.link_lookup(ifname=f"jlab{n}")
                    and not (lab_hosts.STATE_DIR / f"jlab{n}.json").exists())


@contextlib.contextmanager
def lab(base: Path, hosts: int = 2) -> Iterator[Lab]:
    """Start etcd (3 members) and `juggler up`; yield the lab once up said it
    is ready; stop up (SIGINT, as Ctrl-C: it stops its daemons) and etcd.
    Raises RuntimeError when the lab does not come up."""
    from juggler.cli import lab_hosts

    n = _free_lab()
    plan = lab_hosts.plan(n, hosts)
    port, metrics, apps = free_ports(3, 3, 3)
    work, home = base / "work", base / "home"
    with etcd_cluster(base / "etcd", members=3) as etcd:
        argv = [sys.executable, "-m", "juggler.cli.main", "up", "--masters", "3",
                "--hosts", str(hosts), "--lab", str(n), "--etcd", etcd.endpoints,
                "--port", str(port), "--metrics-port", str(metrics), "--apps-port", str(apps),
                "--work-dir", str(work), "--docker-socket", str(base / "docker.sock"), *PING]
        up = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, JUGGLER_HOME=str(home)))
        try:
            lines = _ready_lines(up)
            masters = [f"{plan.gateway}:{port + i}" for i in range(3)]
            yield Lab(plan, etcd, up, work, home, masters,
                      [f"http://127.0.0.1:{apps + i}" for i in range(3)],
                      f"unix://{base / 'docker.sock'}", lines)
        finally:
            _stop(up)


def _ready_lines(up: subprocess.Popen[str]) -> list[str]:
    lines: list[str] = []

    def read() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.append(line.rstrip("\n"))
            if "logs in" in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(UP_TIMEOUT)
    if not lines or "logs in" not in lines[-1]:
        _stop(up)
        err = up.stderr.read() if up.stderr else ""
        raise RuntimeError(f"juggler up did not come up within {UP_TIMEOUT:.0f} s:\n"
                           + "\n".join(lines) + err[-3000:])
    # Drain up's output from now on: a full pipe would block it.
    for stream in (up.stdout, up.stderr):
        threading.Thread(target=lambda s=stream: [None for _ in s], daemon=True).start()
    return lines


def _stop(up: subprocess.Popen[str]) -> None:
    if up.poll() is None:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()


def http_json(url: str, method: str = "GET", body: Any = None, timeout: float = 10.0) -> Any:
    """One JSON request; raises OSError (urllib.error.URLError/HTTPError) or ValueError."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def wait_until(what: str, condition: Any, deadline: float, step: float = 0.5) -> Any:
    """Poll `condition()` until truthy (returned) or `deadline` seconds pass (None)."""
    end = time.monotonic() + deadline
    while True:
        try:
            got = condition()
        except (OSError, ValueError):
            got = None
        if got:
            return got
        if time.monotonic() > end:
            return None
        time.sleep(step)
