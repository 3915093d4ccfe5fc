"""1,000 containers on one agent: time to all RUNNING, then to all KILLED.

A real master and one agent (separate processes, `juggler master` and
`juggler agent --resources "cpus:1000;mem:1000000"`), one framework written with
juggler.sdk. The framework launches N tasks `sleep 1000` (cpus 0.01, mem 1,
each in its own container: pid, mount, uts, ipc and network namespaces, a
cgroup, the host's filesystem with a fresh /proc, /dev and /sys) in four
Accepts of N/4 tasks on consecutive offers, acknowledging every update.

- launch_seconds: from the first Accept to the last TASK_RUNNING received.
- destroy_seconds: from the first Kill (grace period 0) to the last
  TASK_KILLED received.

Mesos 1.7's figures for the same exercise: ~30 s and ~22 s. While all run, the
host's memory per container is reported: the executors' RSS and PSS (from
/proc/<pid>/smaps_rollup; PSS divides pages shared copy-on-write with the
launcher among their users) and MemAvailable's drop divided by N (executor,
task and kernel objects together).

    python benchmarks/launch_1000.py [--quick] [--runs N]
        (--quick: 100 containers; --runs: the median of N runs, each on fresh
        daemons: this machine's speed varies up to threefold between hours)

The agent's work dir (sandboxes, checkpoints, logs; about ten files per
container) is a tmpfs mounted for the run, so that the figure measures juggler
and not this machine's disk: its root filesystem is ext4 without a journal,
whose inode allocator skips every inode freed in the last minutes, reading its
inode table block for each, and here most block groups hold thousands of
such inodes. Creating a file costs 0.2 to 0.6 ms in /var/lib, /srv or /tmp
(perf: recently_deleted, find_get_block_common) against 0.02 ms in a group
without them and 0.006 ms on tmpfs: up to 5 ms more per container. On a
journaled ext4 or xfs a file costs a few hundredths of a millisecond, as on
tmpfs. `--disk` works in a new directory under /var/lib/juggler instead (where
an agent keeps its sandboxes by default), `--keep DIR` in DIR, kept.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BATCHES = 4


def mem_available_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def rss_pss_kib(pid: int) -> tuple[int, int] | None:
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    fields = {line.split(":")[0]: int(line.split()[1]) for line in text.splitlines()[1:]}
    return fields.get("Rss", 0), fields.get("Pss", 0)


def cpu_seconds(pid: int) -> float:
    """CPU time of `pid` (all its threads; not its children): the scheduler's
    own count in nanoseconds, where /proc/<pid>/stat's clock ticks would
    round a few milliseconds of work to 0 or 10."""
    total = 0
    try:
        for thread in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((thread / "schedstat").read_text().split()[0])
    except OSError:
        pass
    return total / 1e9


def host_busy_seconds() -> float:
    """CPU time the whole host has spent busy (every core, user and system,
    kernel threads included) since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(x) for x in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def executor_pids(agent_dir: Path) -> list[int]:
    pids = []
    for f in agent_dir.glob("meta/frameworks/*/tasks/*/executor.pid"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int(f.read_text().split()[0]))
    return pids


async def exercise(master: str, n: int, agent_dir: Path, mem_before: int) -> dict:
    from juggler.common.resources import Resources
    from juggler.sdk import Framework
    from juggler.v1 import common_pb2

    S = common_pb2.TaskState
    fw = Framework(master, common_pb2.FrameworkInfo(name="launch-1000", user="root"))
    await fw.subscribe()
    offers: asyncio.Queue[common_pb2.Offer] = asyncio.Queue()
    states: dict[str, int] = {}
    counts = {S.TASK_RUNNING: 0, S.TASK_KILLED: 0}
    changed = asyncio.Event()
    bad: list[common_pb2.TaskStatus] = []
    acks: set[asyncio.Task[None]] = set()

    async def pump() -> None:
        async for event in fw.events():
            kind = event.WhichOneof("event")
            if kind == "offers":
                for o in event.offers.offers:
                    offers.put_nowait(o)
            elif kind == "update":
                st = event.update.status
                if states.get(st.task_id) != st.state:
                    states[st.task_id] = st.state
                    if st.state in counts:
                        counts[st.state] += 1
                    elif st.state in (S.TASK_FAILED, S.TASK_LOST, S.TASK_ERROR,
                                      S.TASK_DROPPED, S.TASK_FINISHED):
                        bad.append(st)
                    changed.set()
                ack = asyncio.create_task(fw.acknowledge(st))
                acks.add(ack)
                ack.add_done_callback(acks.discard)

    async def until(state: int, what: str) -> None:
        while counts[state] < n:
            if bad:
                raise RuntimeError(f"{len(bad)} tasks failed, e.g. {bad[0]}")
            changed.clear()
            try:
                await asyncio.wait_for(changed.wait(), 120)
            except TimeoutError:
                raise RuntimeError(f"stuck at {counts[state]}/{n} {what}") from None

    reader = asyncio.create_task(pump())
    per_task = Resources({"cpus": 0.01, "mem": 1})
    ids = [f"sleep-{i:04d}" for i in range(n)]
    t0 = time.perf_counter()
    busy0 = host_busy_seconds()
    for b in range(BATCHES):
        batch = ids[b * n // BATCHES:(b + 1) * n // BATCHES]
        offer = await asyncio.wait_for(offers.get(), 30)
        tasks = []
        for tid in batch:
            t = common_pb2.TaskInfo(task_id=tid, name=tid, resources=per_task.to_proto(),
                                    command=common_pb2.CommandInfo(argv=["sleep", "1000"]))
            t.kill_policy.grace_period_seconds = 0
            tasks.append(t)
        await fw.launch([offer.id], tasks, refuse_seconds=0)  # the rest is offered again
    await until(S.TASK_RUNNING, "RUNNING")
    launch_seconds = time.perf_counter() - t0
    launch_busy = host_busy_seconds() - busy0

    await asyncio.sleep(1.0)  # let the last acknowledgements land before measuring
    mem_used = mem_before - mem_available_kib()
    executors = executor_pids(agent_dir)
    usage = [u for u in map(rss_pss_kib, executors) if u is not None]
    cpu = {"executors": sum(map(cpu_seconds, executors)),
           "containers": sum(cpu_seconds(c) for e in executors for c in children(e)),
           "framework (this process)": time.process_time()}

    t1 = time.perf_counter()
    gate = asyncio.Semaphore(64)

    async def kill(tid: str) -> None:
        async with gate:
            await fw.kill(tid, grace_period_seconds=0)

    await asyncio.gather(*(kill(tid) for tid in ids))
    await until(S.TASK_KILLED, "KILLED")
    destroy_seconds = time.perf_counter() - t1
    await asyncio.sleep(0.5)
    reader.cancel()
    with contextlib.suppress(Exception):
        await fw.teardown()
    await fw.close()
    return {"launch_seconds": launch_seconds, "destroy_seconds": destroy_seconds,
            "launch_busy": launch_busy,
            "usage": usage, "mem_used_kib": mem_used, "cpu": cpu}


@contextlib.contextmanager
def tmpfs_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="juggler-1000-") as tmp:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,mode=0755", "tmpfs", tmp],
                       check=True)
        try:
            yield tmp
        finally:
            subprocess.run(["umount", "-l", tmp], check=False)


def run_once(args: argparse.Namespace, n: int) -> dict[str, Any]:
    """One exercise on fresh daemons: its figures (see `report`)."""
    from juggler.testing.daemons import Daemons

    if args.keep:
        where: contextlib.AbstractContextManager[str] = contextlib.nullcontext(args.keep)
    elif args.disk:
        base = Path("/var/lib/juggler")
        base.mkdir(parents=True, exist_ok=True)
        where = tempfile.TemporaryDirectory(prefix="bench-launch-1000-", dir=base)
    else:
        where = tmpfs_dir()
    with where as tmp:
        Path(tmp).mkdir(parents=True, exist_ok=True)
        d = Daemons(Path(tmp))
        try:
            d.start_master("--allocation-interval", "0.2")
            mem_before = mem_available_kib()
            flags = ["--no-launcher"] if args.no_launcher else []
            d.start_agent("a1", *flags, resources="cpus:1000;mem:1000000;disk:1000")
            d.wait_agents(1)
            time.sleep(1.0)  # the agent's launcher warms up
            mem_before = mem_available_kib()
            agent = d.procs["a1"].pid
            zygote = [c for c in children(agent) if c != agent]
            r = asyncio.run(exercise(d.master, n, Path(tmp) / "a1", mem_before))
            r["cpu"]["agent"] = cpu_seconds(agent)
            r["cpu"]["launcher"] = sum(map(cpu_seconds, zygote))
            r["cpu"]["master"] = cpu_seconds(d.procs["master"].pid)
        except BaseException:
            print(d.logs()[-6000:], file=sys.stderr)
            raise
        finally:
            d.close()
    usage = r["usage"]
    return {
        "launch_seconds": r["launch_seconds"], "destroy_seconds": r["destroy_seconds"],
        "launch_busy": r["launch_busy"], "cpu": r["cpu"], "executors": len(usage),
        "rss_mib": sum(u[0] for u in usage) / max(1, len(usage)) / 1024,
        "pss_mib": sum(u[1] for u in usage) / max(1, len(usage)) / 1024,
        "host_mib": r["mem_used_kib"] / n / 1024}


def report(n: int, f: dict[str, Any]) -> None:
    """The readable table of one run's figures."""
    print(f"{'containers':28}{n:>10}")
    print(f"{'launch (s, to all RUNNING)':28}{f['launch_seconds']:10.2f}   Mesos 1.7: ~30")
    print(f"{'destroy (s, to all KILLED)':28}{f['destroy_seconds']:10.2f}   Mesos 1.7: ~22")
    print(f"{'launches per second':28}{n / f['launch_seconds']:10.1f}")
    cores = os.cpu_count() or 1
    print(f"{'host CPU busy in launch (s)':28}{f['launch_busy']:10.2f}   "
          f"{1000 * f['launch_busy'] / n:.1f} ms per container; "
          f"{100 * f['launch_busy'] / (cores * f['launch_seconds']):.0f}% of {cores} cores")
    print(f"{'executor RSS (MiB, mean)':28}{f['rss_mib']:10.1f}   over {f['executors']} executors")
    print(f"{'executor PSS (MiB, mean)':28}{f['pss_mib']:10.1f}")
    print(f"{'host memory per container':28}{f['host_mib']:10.1f}   MiB (MemAvailable drop / n)")
    print("CPU seconds until all ran and were killed (ms per container):")
    for who, secs in f["cpu"].items():
        print(f"  {who:26}{secs:10.2f}   ({1000 * secs / n:.1f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 containers")
    parser.add_argument("--runs", type=int, default=1,
                        help="runs on fresh daemons; the figures are the median run's "
                             "(by launch time), every run's launch time is listed")
    parser.add_argument("--keep", default="", help="work in this directory (on its disk) "
                        "and keep it")
    parser.add_argument("--disk", action="store_true",
                        help="work in a new directory under /var/lib/juggler, not on a tmpfs")
    parser.add_argument("--no-launcher", action="store_true",
                        help="the agent starts each executor as a fresh interpreter")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("launch_1000: needs root", file=sys.stderr)
        return 1
    if args.runs < 1:
        print("launch_1000: --runs takes a number >= 1", file=sys.stderr)
        return 2
    n = 100 if args.quick else args.containers
    runs = []
    for i in range(args.runs):
        runs.append(run_once(args, n))
        if args.runs > 1:
            print(f"run {i + 1} of {args.runs}: launch {runs[-1]['launch_seconds']:.2f} s, "
                  f"{1000 * runs[-1]['launch_busy'] / n:.1f} ms of host CPU per container",
                  flush=True)
    # The median run; of an even number, the slower of the middle two.
    median = sorted(runs, key=lambda f: f["launch_seconds"])[len(runs) // 2]
    if args.runs > 1:
        print(f"the median run (by launch time) of {args.runs}:")
    report(n, median)
    print(json.dumps({
        "containers": n, "runs": args.runs,
        "launch_seconds": round(median["launch_seconds"], 2),
        "destroy_seconds": round(median["destroy_seconds"], 2),
        "host_cpu_ms_per_container": round(1000 * median["launch_busy"] / n, 1),
        "executor_rss_mib": round(median["rss_mib"], 1),
        "executor_pss_mib": round(median["pss_mib"], 1),
        "host_mib_per_container": round(median["host_mib"], 1),
        "launch_seconds_each": [round(f["launch_seconds"], 2) for f in runs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
