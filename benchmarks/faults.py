"""A Jepsen-style fault campaign: faults at random (from a seed) against a
multi-host lab while a workload runs; then a checker reads the history.

    python benchmarks/faults.py --minutes N [--seed S] [--hosts 2|3] [--overlap P] [--keep]
    python benchmarks/faults.py --minutes N --seed S --check DIR   # re-check a kept run

Starts a 3-member etcd and `juggler up --masters 3 --hosts N --etcd …` (agent
ping timeout 1 s × 3) in a temporary directory, then for N minutes runs
together (testing/faults/):

  workload  a framework launching short, long and failing tasks, killing long
            ones, acknowledging and recording every update, reconciling after
            every re-subscription; two apps (/v2/apps) scaled, restarted and
            redeployed; two containers (`juggler run -d`) stopped and started;
            now and then an agent drained (maintenance) and brought back
  nemesis   faults healed after a few seconds each: kill -9 or SIGSTOP of the
            leading master, a standby, an agent, the leading apps service, an
            etcd member; a host's link down; a host's outgoing or incoming
            packets dropped. One at a time, or with --overlap P, each joined
            with probability P by a second one on another target while it
            lasts (faults arriving together). The schedule is a pure function
            of the seed (and P).
  watch     every master's GetLeader and etcd's election, twice a second

then heals, lets the cluster settle (agents back, apps at their counts,
containers in their desired states: a deadline each), asks once more on the
healed cluster (every container started or restarted, every app redeployed:
what it still refuses is refused for good), kills every task, reconciles,
and checks (testing/faults/checker.py): lost updates, tasks run twice, kills
not applied, two leaders at once, apps/containers not converged, operations
refused after healing, faults not healed, leaks. Exit status 1 on any
anomaly, with the seed and the command that replays it. Needs root
(namespaces, cgroups).

A table, then the last line one JSON object:
{"minutes": x, "seed": s, "operations": n, "faults": {"kind": n, ...}, "anomalies": n}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from juggler.testing.faults import checker, leaks, nemesis, observe
from juggler.testing.faults.actions import Nemesis
from juggler.testing.faults.cluster import lab as start_lab
from juggler.testing.faults.cluster import wait_until
from juggler.testing.faults.history import History
from juggler.testing.faults.history import load as load_history
from juggler.testing.faults.workload import (
    AppsWorkload,
    ContainersWorkload,
    DrainWorkload,
    FrameworkWorkload,
)

WHOLE_DEADLINE = 90.0    # after the last heal: a leader and every agent ACTIVE
SETTLE_DEADLINE = 120.0  # then: every app at its count, every container as desired
LEAK_DEADLINE = 30.0     # after the last task is killed: its executor, cgroups, mounts gone


def note(message: str) -> None:
    print(f"faults: {message}", file=sys.stderr, flush=True)


def campaign(minutes: float, seed: int, hosts: int, base: Path,
             overlap: float = 0.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one campaign in `base`: (the history's records, the final state)."""
    plan = nemesis.schedule(seed, minutes * 60, overlap=overlap)
    note(f"{len(plan)} faults planned: " + ", ".join(
        f"{p.at:.0f}s {'+' if p.joins else ''}{p.kind.value}" for p in plan))
    note("starting etcd (3 members) and juggler up …")
    with start_lab(base, hosts) as lab:
        note(f"lab {lab.lab.index} up: masters {lab.master_spec}; logs in {lab.work}")
        history = History(base / "history.jsonl")
        rng = random.Random(seed)
        stop = threading.Event()
        watch = observe.LeaderWatch(lab, history, stop)
        fw = FrameworkWorkload(lab, history, random.Random(rng.random()))
        apps = AppsWorkload(lab, history, random.Random(rng.random()), stop)
        containers = ContainersWorkload(lab, history, random.Random(rng.random()), stop)
        drains = DrainWorkload(lab, history, random.Random(rng.random()), stop)
        nem = Nemesis(lab, history, plan, threading.Event())
        final: dict[str, Any] = {}
        try:
            for part in (watch, fw, apps, containers, drains):
                part.start()
            nem.start()
            end = time.monotonic() + minutes * 60
            while time.monotonic() < end and lab.up_alive():
                time.sleep(1.0)
            nem.stop.set()
            nem.join(120)
            stop.set()
            apps.join()
            containers.join()
            drains.join()
            note("nemesis done; waiting for the cluster to be whole …")
            if not lab.up_alive():
                history.op("up-exited", "juggler up", False, f"status {lab.up.returncode}")
            if not observe.wait_whole(lab, WHOLE_DEADLINE):
                history.op("whole", "cluster", False,
                           f"no leader with every agent ACTIVE within {WHOLE_DEADLINE:.0f} s")
            note("settling: apps and containers …")

            def settled() -> bool:
                a = apps.observed()
                c = containers.observed()
                apps_done = all(x["running"] == x["desired"] == x["instances"]
                                and not x["deploying"] for x in a.values())
                return apps_done and all(x["state"] == x["desired"] for x in c.values())
            wait_until("settled", settled, SETTLE_DEADLINE, step=2.0)
            final["apps"] = _or_empty(apps.observed)
            final["containers"] = _or_empty(containers.observed)
            note("after healing: every container started or restarted, every app "
                 "redeployed …")
            # Nothing else may change what they ask for meanwhile: the workload's
            # threads have ended, and no agent is left in maintenance.
            for part in (apps, containers, drains):
                if part.alive():
                    history.op("workload", type(part).__name__, False,
                               "still running when the healed phase began")
            if not observe.wait_whole(lab, WHOLE_DEADLINE, in_service=True):
                history.op("whole", "cluster", False, "an agent still in maintenance "
                           f"{WHOLE_DEADLINE:.0f} s after the workload stopped")
            containers.after_healing()
            apps.after_healing()
            wait_until("settled after healing", settled, SETTLE_DEADLINE, step=2.0)
            final["after_healing"] = {"apps": _or_empty(apps.observed),
                                      "containers": _or_empty(containers.observed)}
            note("killing every task, reconciling …")
            fw.finish()
            if fw.fatal:
                history.op("framework", "faults", False, fw.fatal)
            framework_id = fw.fw.framework_id if hasattr(fw, "fw") else ""
            final["tasks"] = _or_empty(lambda: observe.final_tasks(lab, framework_id))
            apps.remove()
            containers.remove()
            note("looking for leaks …")

            def gone() -> leaks.Inventory | None:
                inv = leaks.scan(lab)
                return inv if not leaks.leaks_of(inv) else None
            inv = wait_until("nothing left", gone, LEAK_DEADLINE, step=1.0) or leaks.scan(lab)
            final["leaks"] = leaks.leaks_of(inv)
            final["executors"] = leaks.executors_by_task(inv)
            final["started"] = leaks.started(lab)
        finally:
            stop.set()
            nem.stop.set()
            nem.join(60)
            watch.join()
            history.close()
        return history.records, final


def _or_empty(fn: Any) -> Any:
    try:
        return fn()
    except (OSError, ValueError) as e:
        note(f"cannot read the final state: {e}")
        return {}


def report(minutes: float, seed: int, records: list[dict[str, Any]],
           anomalies: list[checker.Anomaly]) -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    operations, faults = checker.summary(records)
    console = Console(stderr=False)
    ops: dict[str, list[int]] = {}
    for r in records:
        if r["type"] == "op":
            ok = ops.setdefault(r["kind"], [0, 0])
            ok[0 if r["ok"] else 1] += 1
        elif r["type"] == "launch":
            ops.setdefault("launch", [0, 0])[0] += 1
    t = Table(title=f"operations (seed {seed})")
    t.add_column("operation")
    t.add_column("ok", justify="right")
    t.add_column("failed", justify="right")
    for kind, (good, bad) in sorted(ops.items()):
        t.add_row(kind, str(good), str(bad))
    updates = sum(1 for r in records if r["type"] == "update")
    t.add_row("(status updates received)", str(updates), "")
    drained = [r for r in records if r["type"] == "drained"]
    t.add_row("(drains ended in time)", str(sum(not r["left"] for r in drained)),
              str(sum(bool(r["left"]) for r in drained)))
    console.print(t)
    f = Table(title="faults")
    f.add_column("kind")
    f.add_column("count", justify="right")
    f.add_column("targets")
    for kind, n in faults.items():
        targets = sorted({r["target"] for r in records if r["type"] == "fault"
                          and r["kind"] == kind})
        f.add_row(kind, str(n), ", ".join(targets))
    together = checker.overlapping_faults(records)
    f.add_row("(at once with another)", str(together), "")
    console.print(f)
    a = Table(title=f"anomalies: {len(anomalies)}")
    a.add_column("kind")
    a.add_column("subject")
    a.add_column("explanation")
    for x in anomalies:
        a.add_row(x.kind, x.subject, x.explanation)
    console.print(a)
    return {"minutes": minutes, "seed": seed, "operations": operations, "faults": faults,
            "faults_together": together, "anomalies": len(anomalies)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--seed", type=int, default=None, help="default: random")
    parser.add_argument("--overlap", type=float, default=0.0, metavar="P",
                        help="probability (0-1) that a fault is joined by a second one "
                             "while it lasts (default 0: one at a time)")
    parser.add_argument("--hosts", type=int, default=2, choices=(2, 3))
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir (logs, history.jsonl) even when all is well")
    parser.add_argument("--check", metavar="DIR", type=Path,
                        help="only check again the history.jsonl and final.json a kept "
                             "campaign left in DIR (no cluster)")
    args = parser.parse_args()
    if args.check is not None:
        records = load_history(args.check / "history.jsonl")
        final = json.loads((args.check / "final.json").read_text())
        anomalies = checker.check(records, final)
        print(json.dumps(report(final.get("minutes", args.minutes),
                                final.get("seed", args.seed or 0), records, anomalies)))
        return 1 if anomalies else 0
    if not 0.0 <= args.overlap <= 1.0:
        parser.error(f"--overlap {args.overlap}: a probability, from 0 to 1")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"faults: seed {seed}", flush=True)
    if os.geteuid() != 0:
        note("needs root (network namespaces, cgroups)")
        return 1
    base = Path(tempfile.mkdtemp(prefix="juggler-faults-"))
    records, final = campaign(args.minutes, seed, args.hosts, base, args.overlap)
    # Kept before checking: a checker that fails leaves what --check needs.
    final["seed"], final["minutes"], final["overlap"] = seed, args.minutes, args.overlap
    (base / "final.json").write_text(json.dumps(final, indent=1))
    note("checking the history …")
    anomalies = checker.check(records, final)
    summary = report(args.minutes, seed, records, anomalies)
    replay = f"python benchmarks/faults.py --minutes {args.minutes:g} --seed {seed}" + (
        f" --hosts {args.hosts}" if args.hosts != 2 else "") + (
        f" --overlap {args.overlap!r}" if args.overlap else "")
    if anomalies:
        print(f"faults: {len(anomalies)} anomalies with seed {seed}; replay: {replay}; "
              f"history and logs in {base}", flush=True)
    elif args.keep:
        print(f"faults: history and logs in {base}", flush=True)
    else:
        shutil.rmtree(base, ignore_errors=True)
    print(json.dumps(summary), flush=True)
    return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
