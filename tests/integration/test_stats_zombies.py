"""Issue 15, item 4 (stats): zombies count in a task's PIDs.

Orphans re-parented to a PID 1 that never waits (here busybox `sleep`, as in
many images run without --init) stay zombies for the task's life. They hold
a slot of the pids limit, so `juggler stats` and the Docker API's stats show
the pids controller's count (pids.current, as `docker stats` does), not the
live processes of cgroup.procs, which leaves zombies out. With --init, tini
is PID 1 and reaps them: the count drops back to tini and the command.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from juggler.container.cgroups import DEFAULT_ROOT
from juggler.testing.rootfs import make_busybox_rootfs
from tests.conftest import Cluster, wait_for

pytestmark = [pytest.mark.root]

ZOMBIES = 3
# Each orphan (a double fork: its parent subshell exits at once, so it is
# re-parented to PID 1) waits until the shell ($$) has exec'd `sleep`, says
# "gone" and exits: it dies under a PID 1 that never waits (the shell's own
# `sleep`, or tini with --init), not under the shell, which would reap it.
ORPHANS = (f"for i in $(seq {ZOMBIES}); do "
           "( (until read c </proc/$$/comm && [ \"$c\" = sleep ]; do sleep 0.05; done; "
           "echo gone) & ); "
           "done; exec sleep 1000")


def _pids_column(cluster: Cluster, task_id: str) -> int | None:
    r = cluster.juggler("stats", task_id)
    if r.returncode != 0:
        return None  # not running yet
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[-2:] == ["PIDS", "OOM"], header
    return int(row.split()[-2])


@contextlib.contextmanager
def orphans_running(cluster: Cluster, tmp_path: Path, name: str,
                    *flags: str) -> Iterator[None]:
    """`juggler run` ORPHANS (attached) until every orphan has said "gone";
    on the way out, a SIGINT kills the task."""
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    proc = cluster.popen("run", "--name", name, "--rootfs", str(rootfs), "--grace-period", "0",
                         *flags, "--", "/bin/sh", "-c", ORPHANS)
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        wait_for(lambda: lines.count("gone\n") == ZOMBIES, 30, what="every orphan to end")
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def test_stats_counts_the_zombies_a_sleeping_pid_1_leaves(cluster: Cluster,
                                                          tmp_path: Path) -> None:
    name = f"zombies-{uuid.uuid4().hex[:6]}"
    with orphans_running(cluster, tmp_path, name):
        # PID 1 (sleep) and the three zombies its children left.
        wait_for(lambda: _pids_column(cluster, name) == 1 + ZOMBIES, 30,
                 what=f"juggler stats to show {1 + ZOMBIES} PIDS")
        # The difference the issue found: cgroup.procs (the agent names a
        # task's cgroup <root>/<framework>.<task>) lists PID 1 alone.
        procs = [d / "cgroup.procs" for d in (DEFAULT_ROOT / "pids").rglob(f"*.{name}")]
        assert len(procs) == 1 and len(procs[0].read_text().split()) == 1, procs


def test_with_init_the_zombies_are_reaped(cluster: Cluster, tmp_path: Path) -> None:
    name = f"reaped-{uuid.uuid4().hex[:6]}"
    with orphans_running(cluster, tmp_path, name, "--init"):
        # tini (PID 1) and sleep: tini waited for every orphan.
        wait_for(lambda: _pids_column(cluster, name) == 2, 30,
                 what="juggler stats to show 2 PIDS")


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker client")
def test_docker_stats_counts_them_too(cluster: Cluster, tmp_path: Path) -> None:
    """The same through the containers service: the Docker API's
    pids_stats.current, read by the real docker client."""
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    env = dict(os.environ, JUGGLER_HOME=str(cluster.home), DOCKER_HOST=cluster.docker_host,
               DOCKER_CONFIG=str(cluster.home / "docker-config"))
    env.pop("JUGGLER_MASTER", None)  # as a user after `juggler up`: containers

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)

    name = f"zombies-{uuid.uuid4().hex[:6]}"
    started = run(sys.executable, "-m", "juggler.cli.main", "run", "-d", "--name", name,
                  "--rootfs", str(rootfs), "--", "/bin/sh", "-c", ORPHANS)
    assert started.returncode == 0, started.stderr
    try:
        wait_for(lambda: run("docker", "logs", name).stdout.count("gone\n") == ZOMBIES, 30,
                 what="every orphan to end")

        def pids() -> int | None:
            r = run("docker", "stats", "--no-stream", "--format", "{{.PIDs}}", name)
            return int(r.stdout) if r.returncode == 0 and r.stdout.strip() else None

        wait_for(lambda: pids() == 1 + ZOMBIES, 30,
                 what=f"docker stats to show {1 + ZOMBIES} PIDs")
    finally:
        run(sys.executable, "-m", "juggler.cli.main", "rm", "-f", name)
