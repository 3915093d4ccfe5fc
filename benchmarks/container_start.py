"""Container start latency: juggler's agent launch path vs Debian's `runc run`.

What is measured, for each launch, is the time from "the agent takes the launch
request" to "the task's first instruction runs inside its isolated container":

- t0 = CLOCK_REALTIME (ns) just before the launch is handed over: for juggler,
  before `Agent._launch(framework, task)` (sandbox, checkpoint, executor via
  the pre-forked launcher, cgroup, namespaces, overlay root filesystem, /proc,
  /dev, /sys, masked paths, capabilities, exec) on an agent running in this
  process; for runc, before `runc run --bundle B ID` is started.
- t1 = CLOCK_REALTIME (ns) read by the task itself: its command is `/bin/stamp`,
  a tiny static C program compiled here whose first statement is
  `clock_gettime(CLOCK_REALTIME)` and which prints the value. No time namespace
  is involved, so both clocks are the host's; precision is well under 10 µs,
  against launch times of milliseconds. (busybox `date` cannot print
  nanoseconds, and /proc/<pid>/stat start times count 10 ms clock ticks.)

Both start the same busybox root filesystem (tests/rootfs.py) with the same
stamp program, in new pid, mount, uts, ipc and network namespaces under a new
cgroup. juggler mounts an overlay with a writable layer over it; runc uses its
default read-only root (less work for runc). Launches alternate between the
two (and juggler without its launcher, `--no-launcher`, for reference), one at
a time, each round in another (seeded) order, after a few warm-up rounds.
--secure adds a fourth side: an agent whose API serves mutual TLS under an
access rules file, as `juggler up --tls` starts them (benchmarks/tls.py).
Launches reach an agent as its master stream's RunTask would, so that side
measures what TLS and rules cost on the agent's launch path itself.

    python benchmarks/container_start.py [--launches 100] [--quick] [--secure]

Needs root, runc (`apt-get install runc`, in scripts/setup) and a C compiler
with a static libc (gcc, libc6-dev).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STAMP_C = r"""
#include <time.h>
#include <unistd.h>
int main(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned long long v = (unsigned long long)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
    char buf[24], out[24]; int m = 0, n = 0;
    do { buf[m++] = '0' + v % 10; v /= 10; } while (v);
    while (m) out[n++] = buf[--m];
    out[n++] = '\n';
    return write(1, out, n) == n ? 0 : 1;
}
"""


SECURE = "juggler TLS+rules"


def build_stamp(dest: Path) -> None:
    src = dest.with_suffix(".c")
    src.write_text(STAMP_C)
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise SystemExit("container_start: needs a C compiler (gcc) with a static libc")
    subprocess.run([cc, "-O2", "-static", "-o", str(dest), str(src)], check=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class JugglerSide:
    """One agent in this process (no master: updates stay queued), launching
    tasks exactly as it does when the master sends RunTask."""

    def __init__(self, work: Path, rootfs: Path, launcher: bool, acls: str = "") -> None:
        from juggler.agent.server import Agent, AgentConfig
        from juggler.common.resources import Resources
        from juggler.v1 import common_pb2

        self.pb = common_pb2
        self.rootfs = rootfs
        self.agent = Agent(AgentConfig(
            master="127.0.0.1:1", work_dir=work, host="127.0.0.1", port=0, metrics_port=-1,
            resources=Resources({"cpus": 64, "mem": 65536}), launcher=launcher,
            cgroup_root=f"juggler-bench-{os.getpid()}", acls=acls))
        self.framework = common_pb2.FrameworkInfo(id="bench", name="bench", user="root",
                                                  principal="bench" if acls else "")
        self.resources = Resources({"cpus": 0.1, "mem": 32}).to_proto()
        self.count = 0
        self.fallbacks = 0

    async def start(self) -> None:
        await self.agent.start()

    def task_info(self, task_id: str):  # -> common_pb2.TaskInfo
        """The task launched: /bin/stamp in the busybox rootfs."""
        info = self.pb.TaskInfo(task_id=task_id, name=task_id, resources=self.resources,
                                command=self.pb.CommandInfo(argv=["/bin/stamp"]))
        info.container.rootfs = str(self.rootfs)
        info.kill_policy.grace_period_seconds = 0
        return info

    async def launch(self) -> float:
        self.count += 1
        task_id = f"t{self.count}"
        info = self.task_info(task_id)
        t0 = time.time_ns()
        from juggler.agent import commands, events
        from juggler.v1 import agent_pb2, executor_pb2

        before = self.agent.launcher_fallbacks
        self.agent.handle(events.FromMaster(agent_pb2.MasterMessage(
            run_task=agent_pb2.MasterMessage.RunTask(framework=self.framework, task=info))))
        key = ("bench", task_id)
        task = self.agent.tasks[key]
        deadline = time.monotonic() + 30
        from juggler.common import task_states

        while not task_states.is_terminal(task.state):
            if time.monotonic() > deadline:
                raise RuntimeError(f"task {task_id} did not finish: {task.sandbox}")
            await asyncio.sleep(0.002)
        assert task.sandbox is not None
        if task.state != self.pb.TASK_FINISHED:
            raise RuntimeError(f"task {task_id} ended {task.state}: "
                               f"{(task.sandbox / 'executor.log').read_text()[-2000:]}")
        t1 = int((task.sandbox / "stdout").read_text().split()[0])
        self.fallbacks += self.agent.launcher_fallbacks - before
        # Let the executor go (the framework's acknowledgement would, with a master).
        while task.executor != agent_pb2.EXECUTOR_CONNECTED and not task.exited:
            await asyncio.sleep(0.002)
        self.agent._carry_out(commands.ToExecutor(key, executor_pb2.AgentToExecutor(
            shutdown=executor_pb2.AgentToExecutor.Shutdown())))
        await asyncio.wait_for(self.agent.finished(key), 30)
        return (t1 - t0) / 1e6

    async def stop(self) -> None:
        await self.agent.stop()


class RuncSide:
    def __init__(self, work: Path, rootfs: Path) -> None:
        self.bundle = work / "bundle"
        self.state = work / "runc-state"
        self.bundle.mkdir(parents=True)
        subprocess.run(["runc", "spec", "--bundle", str(self.bundle)], check=True)
        config = json.loads((self.bundle / "config.json").read_text())
        config["root"]["path"] = str(rootfs)
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/stamp"]
        (self.bundle / "config.json").write_text(json.dumps(config, indent=1))
        self.count = 0

    def launch(self) -> float:
        self.count += 1
        cid = f"bench-{os.getpid()}-{self.count}"
        t0 = time.time_ns()
        done = subprocess.run(["runc", "--root", str(self.state), "run", "--bundle",
                               str(self.bundle), cid], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"runc run failed: {done.stderr}")
        t1 = int(done.stdout.split()[0])
        return (t1 - t0) / 1e6


def remove_cgroup_root() -> None:
    """The agents' cgroup root (each task's cgroup below it is gone with its
    executor): not left behind in every controller."""
    from juggler.container.cgroups import CgroupError, open_cgroup

    try:
        open_cgroup(f"juggler-bench-{os.getpid()}").destroy()
    except CgroupError as e:
        print(f"container_start: could not remove the cgroup root: {e}", file=sys.stderr)


async def secure_side(base: Path, rootfs: Path) -> JugglerSide:
    """A started agent whose API serves mutual TLS (a CA and certificate made
    here) under an access rules file, as `juggler up --tls` starts agents."""
    from juggler.common import tls

    d = base / "tls"
    d.mkdir()
    tls.make_ca(d)
    rules = d / "acls.json"
    rules.write_text(json.dumps({"access_sandboxes": [
        {"principals": {"values": ["bench"]}, "framework_principals": {"values": ["bench"]}}]}))
    tls.configure(tls.issue(d, "agent", ["127.0.0.1"], d))
    try:   # the agent's server takes its credentials when it starts listening
        side = JugglerSide(base / "agent-tls", rootfs, launcher=True, acls=str(rules))
        await side.start()
    finally:
        tls.configure(None)
    return side


async def run(launches: int, warmup: int, secure: bool = False) -> dict:
    from juggler.common import logs
    from juggler.testing.rootfs import make_busybox_rootfs

    logs.configure("bench", level="error")
    with tempfile.TemporaryDirectory(prefix="juggler-bench-") as tmp:
        base = Path(tmp)
        rootfs = make_busybox_rootfs(base / "rootfs")
        build_stamp(rootfs / "bin" / "stamp")
        sides = {
            "juggler": JugglerSide(base / "agent", rootfs, launcher=True),
            "juggler --no-launcher": JugglerSide(base / "agent-nl", rootfs, launcher=False),
        }
        runc = RuncSide(base, rootfs)
        for side in sides.values():
            await side.start()
        if secure:
            sides[SECURE] = await secure_side(base, rootfs)
        times: dict[str, list[float]] = {name: [] for name in (*sides, "runc run")}
        try:
            names, order = list(times), random.Random(0)
            for i in range(warmup + launches):
                # Each round in another order (seeded), so no side always
                # follows the same one: what a launch leaves behind (a cgroup
                # being removed, the slow --no-launcher start) must not weigh
                # on one side only.
                order.shuffle(names)
                for name in names:
                    if name == "runc run":
                        ms = runc.launch()
                    else:
                        ms = await sides[name].launch()
                    if i >= warmup:
                        times[name].append(ms)
        finally:
            for side in sides.values():
                await side.stop()
            remove_cgroup_root()
        fallbacks = sides["juggler"].fallbacks
    print(f"{'':24}{'p50 ms':>9}{'p99 ms':>9}{'min ms':>9}{'max ms':>9}")
    for name, values in times.items():
        print(f"{name:24}{statistics.median(values):9.2f}{percentile(values, 0.99):9.2f}"
              f"{min(values):9.2f}{max(values):9.2f}")
    j, r = times["juggler"], times["runc run"]
    ratio = statistics.median(j) / statistics.median(r)
    print(f"{launches} launches each; juggler p50 / runc p50 = {ratio:.2f}"
          + (f"; {fallbacks} launches fell back to a fresh executor" if fallbacks else ""))
    return {"launches": launches,
            "juggler_ms": {"p50": round(statistics.median(j), 2),
                           "p99": round(percentile(j, 0.99), 2)},
            "runc_ms": {"p50": round(statistics.median(r), 2),
                        "p99": round(percentile(r, 0.99), 2)},
            "ratio_p50": round(ratio, 3),
            **({"juggler_secure_ms": {"p50": round(statistics.median(times[SECURE]), 2),
                                      "p99": round(percentile(times[SECURE], 0.99), 2)}}
               if secure else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launches", type=int, default=100)
    parser.add_argument("--quick", action="store_true", help="20 launches")
    parser.add_argument("--secure", action="store_true",
                        help=f"also launch on an agent serving TLS under access rules ({SECURE!r})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("container_start: needs root", file=sys.stderr)
        return 1
    if shutil.which("runc") is None:
        print("container_start: needs runc (apt-get install runc; scripts/setup does)",
              file=sys.stderr)
        return 1
    launches = 20 if args.quick else max(50, args.launches)
    result = asyncio.run(run(launches, warmup=3, secure=args.secure))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
