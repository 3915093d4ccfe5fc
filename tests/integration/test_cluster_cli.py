"""A real cluster (`juggler up`: master and two agents as processes) driven
through the `juggler` CLI, as a user would: containers with real namespaces,
cgroups (v1 on this host) and root filesystems.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from juggler.common import servers, task_states
from juggler.testing import secure
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.task_python import PYTHON as TASK_PYTHON
from juggler.v1 import operator_pb2, operator_pb2_grpc
from tests.conftest import Cluster, wait_for

pytestmark = [pytest.mark.root]


def task_view(cluster: Cluster, task_id: str) -> operator_pb2.TaskView | None:
    with servers.sync_channel(cluster.master) as ch:
        got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
            operator_pb2.GetTasksRequest(include_completed=True), timeout=10)
    for view in [*got.tasks, *got.completed_tasks]:
        if view.info.task_id == task_id:
            return view
    return None


def all_task_ids(cluster: Cluster) -> set[str]:
    with servers.sync_channel(cluster.master) as ch:
        got = operator_pb2_grpc.OperatorStub(ch).GetTasks(
            operator_pb2.GetTasksRequest(include_completed=True), timeout=10)
    return {v.info.task_id for v in [*got.tasks, *got.completed_tasks]}


def test_container_sees_only_itself(cluster: Cluster) -> None:
    script = ("echo pid=$$; echo host=$(hostname); "
              "echo procs=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '); "
              "echo ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')")
    r = cluster.juggler("run", "--name", "iso-1", "--", "sh", "-c", script, check=True)
    out = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert out["pid"] == "1"
    assert out["host"] == "iso-1" and out["host"] != socket.gethostname()
    pids = [int(p) for p in out["procs"].split()]
    # sh (1) and the pipeline it forked: a handful of small pids, none of the host's.
    assert 1 in pids and max(pids) < 50, pids
    assert os.getpid() not in pids or os.getpid() < 50
    assert out["ifaces"].split() == ["lo"]


def test_rootfs_shows_only_that_directory(cluster: Cluster, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    before = sorted(p.name for p in rootfs.iterdir())
    r = cluster.juggler("run", "--rootfs", str(rootfs), "--", "/bin/sh", "-c",
                        "ls -a /; echo written > /hello; cat /hello", check=True)
    *listing, last = r.stdout.split()
    assert last == "written"
    # Exactly the directory's entries: nothing of the host's (no /work, no /usr).
    assert sorted(set(listing) - {".", ".."}) == before
    # The task wrote into its own layer, never into the user's directory.
    assert sorted(p.name for p in rootfs.iterdir()) == before
    assert not (rootfs / "hello").exists()


def test_exit_code_is_the_tasks(cluster: Cluster) -> None:
    r = cluster.juggler("run", "--", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert r.returncode == 3
    assert r.stdout == "out\n"
    assert "err\n" in r.stderr
    ok = cluster.juggler("run", "--", "true")
    assert ok.returncode == 0


def test_memory_limit_fails_the_task_with_the_reason(cluster: Cluster) -> None:
    # exec: the hog is PID 1, whose death by the OOM killer is the memory reason
    # (a shell outliving an OOM-killed child: test_oom_exit_code.py).
    hog = f"exec {TASK_PYTHON} -c \"b = b'x' * (300 * 2**20); print('survived')\""
    r = cluster.juggler("run", "--name", "hog-1", "--mem", "64M", "--", "sh", "-c", hog)
    assert r.returncode == 137, r.stderr
    assert "survived" not in r.stdout
    assert "REASON_CONTAINER_LIMITATION_MEMORY" in r.stderr
    assert "Memory limit" in r.stderr
    view = task_view(cluster, "hog-1")
    assert view is not None and view.state == task_states.S.TASK_FAILED
    # The host (and the cluster) carry on.
    assert cluster.juggler("run", "--", "true").returncode == 0


def _run_until_ready(cluster: Cluster, *args: str) -> tuple[object, list[str]]:
    proc = cluster.popen("run", *args)
    lines: list[str] = []
    assert proc.stdout is not None

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    wait_for(lambda: any("ready" in ln for ln in lines), timeout=30, what="task output 'ready'")
    return proc, lines


def test_kill_sends_term_then_the_task_ends_killed(cluster: Cluster) -> None:
    proc, lines = _run_until_ready(
        cluster, "--name", "kill-trap", "--grace-period", "10", "--", "sh", "-c",
        "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done")
    proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
    proc.wait(30)  # type: ignore[attr-defined]
    assert "got TERM\n" in lines
    view = task_view(cluster, "kill-trap")
    assert view is not None and view.state == task_states.S.TASK_KILLED
    assert view.status.exit_code == 0


def test_kill_after_grace_period_is_sigkill(cluster: Cluster) -> None:
    proc, _ = _run_until_ready(
        cluster, "--name", "kill-hard", "--grace-period", "1", "--", "sh", "-c",
        "trap '' TERM; echo ready; while :; do sleep 0.1; done")
    proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
    assert proc.wait(30) == 137  # type: ignore[attr-defined]
    view = task_view(cluster, "kill-hard")
    assert view is not None and view.state == task_states.S.TASK_KILLED
    states = [h.state for h in view.history]
    assert states[-2:] == [task_states.S.TASK_KILLING, task_states.S.TASK_KILLED]
    killing, killed = view.history[-2].timestamp, view.history[-1].timestamp
    # The task ignored SIGTERM, so only the SIGKILL after the grace period ended it.
    assert killed - killing >= 1.0


@pytest.mark.parametrize("cpus", ["-1", "abc", "nan", "0"])
def test_bad_cpus_is_refused_before_anything_runs(cluster: Cluster, cpus: str) -> None:
    before = all_task_ids(cluster)
    r = cluster.juggler("run", "--cpus", cpus, "--", "true")
    assert r.returncode == 2
    assert "--cpus" in r.stderr
    assert all_task_ids(cluster) == before


def test_bad_mem_and_missing_command(cluster: Cluster) -> None:
    r = cluster.juggler("run", "--mem", "lots", "--", "true")
    assert r.returncode == 2 and "--mem" in r.stderr
    r = cluster.juggler("run")
    assert r.returncode == 2 and "no command" in r.stderr


def test_task_bigger_than_any_agent_is_refused(cluster: Cluster) -> None:
    r = cluster.juggler("run", "--cpus", "64", "--", "true")
    assert r.returncode == 125
    assert "no agent can ever fit" in r.stderr


def test_missing_binary(cluster: Cluster) -> None:
    r = cluster.juggler("run", "--", "/no/such/binary")
    assert r.returncode == 127
    assert "REASON_CONTAINER_LAUNCH_FAILED" in r.stderr


def test_tasks_lists_tasks(cluster: Cluster) -> None:
    cluster.juggler("run", "--name", "ps-probe", "--", "true", check=True)
    r = cluster.juggler("tasks", "-a", check=True)
    header, *rows = r.stdout.splitlines()
    assert header.split() == ["TASK", "ID", "STATE", "AGENT", "COMMAND", "AGE"]
    row = next(x for x in rows if x.startswith("ps-probe "))
    assert re.search(r"\bFINISHED\b", row) and "true" in row
    # Without -a only live tasks are listed.
    assert "ps-probe" not in cluster.juggler("tasks", check=True).stdout


def test_metrics_endpoint(cluster: Cluster) -> None:
    cluster.juggler("run", "--", "true", check=True)
    with urllib.request.urlopen(secure.url(f"127.0.0.1:{cluster.metrics_port}/metrics"),
                                timeout=10) as r:
        text = r.read().decode()
    launched = re.search(r"^juggler_master_tasks_launched_total (\S+)$", text, re.M)
    assert launched and float(launched.group(1)) >= 1
    assert re.search(r'^juggler_master_agents\{maintenance="MAINTENANCE_NONE",'
                     r'state="AGENT_ACTIVE"\} 2\.0$', text, re.M)


def test_no_master_is_a_clear_error(tmp_path: Path) -> None:
    import subprocess
    env = dict(os.environ, JUGGLER_HOME=str(tmp_path))
    env.pop("JUGGLER_MASTER", None)
    # A port bound here and not listening: connections to it are refused, and no
    # other process (another suite's master) can take it while the CLI tries.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "juggler.cli.main", "run", "--master",
                            f"127.0.0.1:{port}", "--", "true"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert r.returncode == 125
    assert "juggler up" in r.stderr


def test_stats_reads_the_tasks_cgroup(cluster: Cluster) -> None:
    proc, _ = _run_until_ready(
        cluster, "--name", "stats-probe", "--mem", "48M", "--cpus", "0.5", "--grace-period",
        "0", "--", "sh", "-c", "echo ready; while :; do :; done")
    try:
        def busy() -> str | None:
            r = cluster.juggler("stats", "stats-probe", check=True)
            row = r.stdout.splitlines()[1].split()
            return r.stdout if float(row[2].rstrip("s")) > 0.05 else None  # CPU TIME

        out = wait_for(busy, 30, what="the task to burn some cpu")
        header, row = out.splitlines()
        assert header.split()[:3] == ["TASK", "ID", "CPU"]
        assert row.startswith("stats-probe ")
        assert "/ 48.0MiB" in row  # the memory limit, from the cgroup
        missing = cluster.juggler("stats", "no-such-task")
        assert missing.returncode == 1 and "no task 'no-such-task'" in missing.stderr
    finally:
        proc.send_signal(signal.SIGINT)  # type: ignore[attr-defined]
        proc.wait(30)  # type: ignore[attr-defined]


def test_agents_lists_both_agents(cluster: Cluster) -> None:
    r = cluster.juggler("agents", check=True)
    header, *rows = r.stdout.splitlines()
    assert header.split()[:4] == ["AGENT", "ID", "HOSTNAME", "STATE"]
    assert len(rows) == 2 and all(" ACTIVE " in row for row in rows)
    bad = cluster.juggler("drain", "no-such-agent")
    assert bad.returncode == 1 and "is not an agent" in bad.stderr
    # Each agent's story: how it came to be what it is, and why.
    told = cluster.juggler("agents", "--story", check=True).stdout.split("\n\n", 1)[1]
    assert told.count("ACTIVE  (registered)") == 2, told
