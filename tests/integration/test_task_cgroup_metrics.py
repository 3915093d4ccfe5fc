"""agent/metrics.py's cgroup reader on a real cgroup v1 (this host's): a real
process in a real cgroup uses CPU and memory, then is OOM-killed at its
memory limit; the series a scrape shows follow (v2: tests/unit/
test_agent_metrics.py, against a fake tree)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid

import pytest

from juggler.agent import metrics
from juggler.container.cgroups import Limits, detect, open_cgroup

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)"),
    pytest.mark.skipif(os.geteuid() == 0 and detect() != 1, reason="requires cgroups v1"),
]
MiB = 2**20

# Waits for a line on stdin before each step: joins nothing itself (the test
# moves it into the cgroup), then allocates and touches 32 MiB and burns some
# CPU; on "oom" it allocates past any limit.
CHILD = """
import sys
sys.stdin.readline()
held = b"x" * (32 * 2**20)
sum(range(2_000_000))
print("ready", flush=True)
if sys.stdin.readline().strip() == "oom":
    more = [b"y" * (16 * 2**20) for _ in range(64)]
sys.stdin.readline()
"""


def test_a_real_v1_cgroup_s_cpu_memory_and_oom_kill_as_scraped() -> None:
    name = f"h1metrics/{os.getpid()}-{uuid.uuid4().hex[:8]}"
    cgroup = open_cgroup(name)
    cgroup.create()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        cgroup.add(child.pid)
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline() == "ready\n"
        tasks = [metrics.TaskCgroup("t1", "fw1", name)]
        [usage] = metrics.read_usage(tasks)
        assert usage.stats.memory_bytes >= 32 * MiB
        assert usage.stats.memory_peak_bytes >= usage.stats.memory_bytes
        assert usage.stats.cpu_usage_ns > 0
        assert usage.stats.oom_kills == 0

        cgroup.set(Limits(memory_bytes=96 * MiB))
        child.stdin.write("oom\n")
        child.stdin.flush()
        assert child.wait(60) == -9  # SIGKILL from the OOM killer
        got = {f.name: f.samples[0].value for f in metrics.families(0, 0, metrics.read_usage(tasks))
               if f.samples}
        assert got["juggler_agent_task_oom_kills"] >= 1
        assert got["juggler_agent_task_memory_peak_bytes"] >= 90 * MiB
        assert got["juggler_agent_task_cpu_seconds"] > 0
    finally:
        child.kill()
        child.wait()
        cgroup.destroy()
        for path in {p.parent for p in cgroup.paths().values()}:
            if path.name == "h1metrics":
                with contextlib.suppress(OSError):  # another run's cgroup is in it
                    path.rmdir()
