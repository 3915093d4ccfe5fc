"""What outlived the tasks: taken once every task is killed and the apps and
containers are removed, while the lab still runs (its agents' pooled
network attachments are theirs to keep).

    scan(lab) ─▶ Inventory (facts from /proc, /sys/fs/cgroup, /proc/mounts,
                 `ip link` in each host's netns, the CNI IPAM dirs, the work dir)
    leaks_of(inventory) ─▶ [{"kind", "what"}]  (pure)

Everything is scoped to this lab: sandboxes, mounts and network attachments
under its work dir, cgroups named after its frameworks' ids, IPAM leases whose
container id one of its agents logged (each lab host has its own lease dir,
/run/juggler/cni/<host's netns>/<subnet>: `juggler up`'s --ipam-dir).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from juggler.testing.faults.cluster import Lab

CGROUPS = Path("/sys/fs/cgroup")


@dataclass
class Inventory:
    executors: list[tuple[int, str]] = field(default_factory=list)  # (pid, task id)
    cgroups: list[str] = field(default_factory=list)         # task cgroups of our frameworks
    mounts: list[str] = field(default_factory=list)          # mount points in our sandboxes
    veths: dict[str, int] = field(default_factory=dict)      # host → veths in its netns
    attachments: dict[str, set[str]] = field(default_factory=dict)  # host → container ids
    leases: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # host → (ip, cid)
    logged: set[str] = field(default_factory=set)           # container ids our agents logged


def executors_by_task(inv: Inventory) -> dict[str, int]:
    return dict(Counter(task for _, task in inv.executors))


def leaks_of(inv: Inventory) -> list[dict[str, str]]:
    """The leaks in `inv` (module docstring): every executor, task cgroup and
    sandbox mount left; veths beyond the agent's attachments; leases of ours
    whose attachment is gone."""
    out = [{"kind": "executor", "what": f"pid {pid} (task {task})"}
           for pid, task in inv.executors]
    out += [{"kind": "cgroup", "what": c} for c in inv.cgroups]
    out += [{"kind": "mount", "what": m} for m in inv.mounts]
    for host, n in sorted(inv.veths.items()):
        have = len(inv.attachments.get(host, set()))
        if n > have:
            out.append({"kind": "veth", "what": f"{host}: {n} veths, {have} attachments"})
    for host, leases in sorted(inv.leases.items()):
        for ip, cid in leases:
            if cid in inv.logged and cid not in inv.attachments.get(host, set()):
                out.append({"kind": "ipam", "what": f"{host}: {ip} leased to {cid}"})
    return out


_SANDBOX = re.compile(r"/agent-\d+/frameworks/([^/]+)/tasks/([^/]+)")


def started(lab: Lab) -> list[str]:
    """Task ids some agent of the lab logged "executor started" for."""
    out: set[str] = set()
    for log in lab.work.glob("agent-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            if '"executor started"' in line:
                m = re.search(r'"task_id": "([^"]+)"', line)
                if m:
                    out.add(m.group(1))
    return sorted(out)


def scan_executors(lab: Lab) -> Inventory:
    """Only the executors: processes whose working directory is a sandbox of
    this lab (an executor runs in its task's sandbox; the task itself in its
    own root)."""
    inv = Inventory()
    work = str(lab.work)
    in_sandbox: dict[int, tuple[str, int]] = {}   # pid → (sandbox, parent pid)
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        m = _SANDBOX.search(cwd) if cwd.startswith(work) else None
        if m:
            in_sandbox[int(pid)] = (m.group(0), ppid)
    # An executor's own children (a fork on its way to exec, a helper) are
    # not executors: only the topmost process in a sandbox counts.
    for pid, (sandbox, ppid) in in_sandbox.items():
        if in_sandbox.get(ppid, ("", 0))[0] != sandbox:
            inv.executors.append((pid, sandbox.rsplit("/", 1)[1]))
    return inv


def scan(lab: Lab) -> Inventory:
    """Facts about this lab's leftovers, read from the machine now."""
    inv = Inventory()
    work = str(lab.work)
    frameworks: set[str] = set()
    for agent in lab.work.glob("agent-*"):
        frameworks |= {p.name for p in (agent / "frameworks").glob("*")}
    inv.executors = scan_executors(lab).executors
    for controller in ("cpu", "memory", "pids", "unified"):
        base = CGROUPS / controller / "juggler"
        if base.is_dir():
            inv.cgroups += [str(p) for p in base.iterdir()
                            if p.is_dir() and p.name.split(".", 1)[0] in frameworks]
    with open("/proc/mounts") as f:
        for line in f:
            point = line.split()[1]
            if point.startswith(work) and "/frameworks/" in point:
                inv.mounts.append(point)
    for h in lab.lab.hosts:
        agent = lab.work / f"agent-{h.index}"
        inv.attachments[h.name] = {p.name for d in ("networks", "network-pool")
                                   for p in (agent / d).glob("*")}
        links = subprocess.run(["ip", "-n", h.netns, "-o", "link", "show", "type", "veth"],
                               capture_output=True, text=True, timeout=10).stdout
        inv.veths[h.name] = sum(1 for x in links.splitlines() if "master juggler0" in x)
        leases = []
        for p in (h.ipam_dir / h.bridge_subnet.replace("/", "_")).glob("*/*"):
            if re.fullmatch(r"[0-9.]+", p.name):
                try:
                    leases.append((p.name, p.read_text().split()[0]))
                except (OSError, IndexError):
                    continue
        inv.leases[h.name] = leases
        try:
            log = (lab.work / f"agent-{h.index}.log").read_text(errors="replace")
        except OSError:
            log = ""
        inv.logged |= set(re.findall(r'"container_id": "([0-9a-f]{32})"', log))
    return inv
