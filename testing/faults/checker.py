"""The checker: pure. A history (history.py records) and the cluster's final
state in, anomalies out — each with the evidence that makes it one.

`final` (what benchmarks/faults.py gathers once every fault is healed, the apps
and containers had a settle deadline, and every framework task was killed):

    {"tasks":      {task_id: {"state": "TASK_KILLED", "agent_id": "..."}},  the masters' view
     "apps":       {app_id: {"desired": n, "instances": n, "running": n, "deploying": n}},
     "containers": {name: {"desired": "running" | "exited", "state": "running" | ...}},
     "after_healing": {"apps": {...}, "containers": {...}}   the same, once the healed-
                                                             phase operations were made
     "executors":  {task_id: number of executor processes left for it},
     "started":    [task ids an agent logged "executor started" for],
     "leaks":      [{"kind": "cgroup" | "mount" | "veth" | "ipam" | "executor", "what": str}]}

Anomaly kinds (one function each):

    lost-update      a task ended on the cluster and the framework never heard how (neither
                     by an update nor by reconciling), or heard another terminal state
    ran-twice        one task id RUNNING on two agents, or two executors for it
    kill-not-applied a kill (or drain) the cluster accepted, and the task is not terminal
    two-leaders      a master answered "I lead" between two such answers of another master
                     in one of its terms, with no re-election seen in etcd in between
    not-converged    an app not at its instance count, a container not in its desired state
                     (stopped is as good as running once its agent was drained after its
                     last start: drained_since_started)
    refused-after-healing
                     an operation the workload made once every fault was healed and the
                     cluster whole (the "healed-" kinds: a start, restart or redeploy of
                     each container and app) that the cluster still refused at its last
                     try, or that did not bring its subject to the state asked for
                     (final["after_healing"]): a refusal for good, which the final state
                     alone cannot show, since the workload's desired state follows only
                     what was accepted
    not-healed       a fault that was never healed
    leak             an executor, cgroup, mount, veth or IPAM lease left after the end
    unavailable      up stopped the cluster, it was not whole after the faults (or an
                     agent stayed in maintenance), the masters dropped the framework, or a
                     workload thread outlived the campaign (it could change what the healed
                     phase asks for)
"""

from __future__ import annotations

import bisect
import itertools
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from juggler.testing.faults.history import Record

TERMINAL = frozenset({"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
                      "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR"})
RUNNING = "TASK_RUNNING"
UNKNOWN = "TASK_UNKNOWN"
STALE = 2.0   # seconds a master may answer "I lead" after etcd showed another leader key


@dataclass(frozen=True)
class Anomaly:
    kind: str
    subject: str
    explanation: str


def check(records: Iterable[Record], final: dict[str, Any]) -> list[Anomaly]:
    """Every anomaly in the history and final state (module docstring)."""
    records = list(records)
    return [*lost_updates(records, final), *ran_twice(records, final),
            *kills_not_applied(records, final), *two_leaders(records),
            *not_converged(final, records), *refused_after_healing(records, final),
            *not_healed(records), *leaks(final), *unavailable(records)]


def _updates(records: list[Record]) -> dict[str, list[Record]]:
    by_task: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        if r["type"] == "update":
            by_task[r["task_id"]].append(r)
    return by_task


def _story(updates: list[Record]) -> str:
    return ", ".join(f"{u['state'].removeprefix('TASK_')}@{u['t']:.1f}s"
                     + ("(reconcile)" if u.get("source") == "reconcile" else "")
                     for u in updates) or "nothing"


def lost_updates(records: list[Record], final: dict[str, Any]) -> list[Anomaly]:
    """A task that ran (an agent started its executor, or the framework
    heard of it) must end with the framework knowing a terminal state (by an
    update or reconciliation); where the masters know its terminal state, the
    framework's last terminal state is that one."""
    updates = _updates(records)
    known = final.get("tasks", {})
    started = set(final.get("started", []))
    out = []
    launched = [r["task_id"] for r in records if r["type"] == "launch"]
    for task_id in dict.fromkeys([*launched, *known]):
        heard = updates.get(task_id, [])
        terminal = [u["state"] for u in heard if u["state"] in TERMINAL]
        master = known.get(task_id, {}).get("state")
        if master in TERMINAL and terminal and terminal[-1] != master:
            out.append(Anomaly("lost-update", task_id,
                               f"the masters say {master}; the framework last heard "
                               f"{terminal[-1]} ({_story(heard)})"))
        elif master in TERMINAL and not terminal:
            out.append(Anomaly("lost-update", task_id,
                               f"the masters say {master}; the framework heard {_story(heard)}"))
        elif master is None and not terminal and (task_id in started or [
                u for u in heard if u["state"] != UNKNOWN]):
            # Never started and unknown everywhere: a launch its master took
            # and died with before telling the agent, of an agent the masters
            # no longer know (reconciliation answers UNKNOWN; naming an agent
            # they know, TASK_GONE: master/reconciliation.py). Started, or
            # heard of: it ran, and how it ended was lost.
            out.append(Anomaly("lost-update", task_id,
                               "unknown to the masters at the end"
                               + (", an executor started for it" if task_id in started else "")
                               + f"; the framework heard only {_story(heard)}"))
    return out


def ran_twice(records: list[Record], final: dict[str, Any]) -> list[Anomaly]:
    """RUNNING on two agents, or two executors left for one task id."""
    out = []
    for task_id, heard in _updates(records).items():
        agents = sorted({u["agent_id"] for u in heard if u["state"] == RUNNING and u["agent_id"]})
        if len(agents) > 1:
            out.append(Anomaly("ran-twice", task_id,
                               f"RUNNING on agents {', '.join(agents)}"))
    seen: dict[str, tuple[int, float]] = {}
    for r in records:
        if r["type"] == "executors":
            for task_id, n in r["counts"].items():
                if n > 1 and task_id not in seen:
                    seen[task_id] = (n, r["t"])
    for task_id, n in final.get("executors", {}).items():
        if n > 1 and task_id not in seen:
            seen[task_id] = (n, -1.0)
    for task_id, (n, t) in sorted(seen.items()):
        when = f" at {t:.1f}s" if t >= 0 else " at the end"
        out.append(Anomaly("ran-twice", task_id, f"{n} executor processes for it{when}"))
    return out


def kills_not_applied(records: list[Record], final: dict[str, Any]) -> list[Anomaly]:
    """Every kill the cluster accepted ends in a terminal state (the masters'
    or, if they forgot the task, the framework's last); a drained agent runs
    nothing by the drain's deadline ("drained" records: the tasks left)."""
    updates = _updates(records)
    known = final.get("tasks", {})

    def end(task_id: str) -> str:
        # The masters forget completed tasks across a failover (they rebuild
        # from the agents, as Mesos does) and may then answer TASK_UNKNOWN
        # (no agent named, or one they do not know): that says nothing about
        # the task, so the framework's last other word counts.
        master = known.get(task_id, {}).get("state")
        heard = [u["state"] for u in updates.get(task_id, []) if u["state"] != UNKNOWN]
        return master or (heard[-1] if heard else "nothing")

    out = []
    for r in records:
        if r["type"] != "op" or not r["ok"]:
            continue
        if r["kind"] == "kill" and end(r["target"]) not in TERMINAL:
            out.append(Anomaly("kill-not-applied", r["target"],
                               f"killed at {r['t']:.1f}s, ended {end(r['target'])} "
                               f"({_story(updates.get(r['target'], []))})"))
    for r in records:
        if r["type"] == "drained":
            for task_id in r["left"]:
                out.append(Anomaly("kill-not-applied", task_id,
                                   f"agent {r['agent_id']} drained; at {r['t']:.1f}s, past the "
                                   "drain deadline, the leader still had the task running"))
    return out


def leader_terms(records: list[Record]) -> dict[str, list[list[Record]]]:
    """Per master, its terms as seen by polling: maximal runs of is_leader
    answers with no other answer (not leading, or no answer) between."""
    terms: dict[str, list[list[Record]]] = defaultdict(list)
    current: dict[str, list[Record] | None] = {}
    for r in sorted((r for r in records if r["type"] == "leader"), key=lambda r: r["t0"]):
        m = r["master"]
        if r["is_leader"]:
            run = current.get(m)
            if run is None:
                run = current[m] = []
                terms[m].append(run)
            run.append(r)
        else:
            current[m] = None
    return terms


class _Observations:
    """One master's etcd_leader observations, sorted by the time asked (t0),
    for range questions in O(log n): which revisions etcd showed it leading
    with between two times."""

    def __init__(self, seen: list[Record]) -> None:
        seen = sorted(seen, key=lambda r: r["t0"])
        self.t0 = [r["t0"] for r in seen]
        self.seen = seen
        # Sparse table of the maximum revision over [i, i + 2**k).
        self._max = [[r["revision"] for r in seen]]
        k = 1
        while (1 << k) <= len(seen):
            prev, half = self._max[-1], 1 << (k - 1)
            self._max.append([max(prev[i], prev[i + half])
                              for i in range(len(seen) - (1 << k) + 1)])
            k += 1

    def max_revision(self, lo: float, hi: float) -> int:
        """The highest revision observed with lo <= t0 <= hi (-1: none)."""
        i, j = bisect.bisect_left(self.t0, lo), bisect.bisect_right(self.t0, hi)
        if i >= j:
            return -1
        k = (j - i).bit_length() - 1
        return max(self._max[k][i], self._max[k][j - (1 << k)])

    def revisions(self, lo: float, hi: float) -> set[int]:
        """The revisions observed with t0 >= lo and t1 <= hi."""
        i = bisect.bisect_left(self.t0, lo)
        j = bisect.bisect_right(self.t0, hi)   # t0 <= t1 <= hi
        return {r["revision"] for r in self.seen[i:j] if r["t1"] <= hi}


def two_leaders(records: list[Record]) -> list[Anomaly]:
    """Master B answered "I lead" strictly between two "I lead" answers of A
    in one term of A (A's first answered before B's was asked, B's answered
    before A's second was asked), and etcd's election showed no other leader
    key for A in that window (which a re-election of A would have made)."""
    etcd = [r for r in records if r["type"] == "etcd_leader"]
    out = stale_leaders(records, etcd)
    by_master = _by_address(etcd)
    terms = leader_terms(records)
    # Every master's "I lead" answers, sorted by the time asked.
    answers = {m: sorted((o for run in runs for o in run), key=lambda o: o["t0"])
               for m, runs in terms.items()}
    asked = {m: [o["t0"] for o in seen] for m, seen in answers.items()}
    for a, runs in terms.items():
        mine = by_master.get(a, _Observations([]))
        for run in runs:
            for a1, a2 in itertools.pairwise(run):
                for b in terms:
                    if b == a:
                        continue
                    i = bisect.bisect_right(asked[b], a1["t1"])
                    for obs in answers[b][i:bisect.bisect_left(asked[b], a2["t0"])]:
                        if not obs["t1"] < a2["t0"]:
                            continue
                        if len(mine.revisions(a1["t0"], a2["t1"])) > 1:
                            continue   # A was elected again in between: two terms
                        out.append(Anomaly(
                            "two-leaders", f"{a} and {b}",
                            f"{a} led at {a1['t1']:.2f}s and {a2['t0']:.2f}s (one term) and "
                            f"{b} said it led at {obs['t0']:.2f}-{obs['t1']:.2f}s"))
                        break
    return out


def _by_address(etcd: list[Record]) -> dict[str, _Observations]:
    grouped: dict[str, list[Record]] = defaultdict(list)
    for e in etcd:
        grouped[e["address"]].append(e)
    return {a: _Observations(seen) for a, seen in grouped.items()}


def stale_leaders(records: list[Record], etcd: list[Record]) -> list[Anomaly]:
    """Master A answered "I lead" (asked at t0) more than STALE seconds after
    etcd showed the election led by another master's key of revision r, and
    etcd never showed A leading with a key newer than r up to STALE seconds
    after that answer: A acted on a term etcd had ended.

    Per answer and per other master's term (address, revision), only that
    term's last observation before the answer's t0 - STALE is asked about:
    the latest observation leaves A the shortest window, so if A shows a
    newer key after it, A does after every earlier one too."""
    by_master = _by_address(etcd)
    terms: dict[tuple[str, int], list[Record]] = defaultdict(list)
    for e in sorted(etcd, key=lambda e: e["t1"]):
        terms[(e["address"], e["revision"])].append(e)
    ends = {k: [e["t1"] for e in seen] for k, seen in terms.items()}
    out = []
    for o in (r for r in records if r["type"] == "leader" and r["is_leader"]):
        a = o["master"]
        mine = by_master.get(a, _Observations([]))
        for (address, revision), seen in terms.items():
            if address == a:
                continue
            i = bisect.bisect_left(ends[(address, revision)], o["t0"] - STALE) - 1
            if i < 0:
                continue   # no observation of that term STALE seconds before the answer
            e = seen[i]
            if mine.max_revision(e["t0"], o["t1"] + STALE) <= revision:
                out.append(Anomaly("two-leaders", a,
                                   f"{a} said it led at {o['t0']:.2f}s; etcd showed "
                                   f"{e['address']} leading (revision {e['revision']}) at "
                                   f"{e['t1']:.2f}s and no newer term of {a}"))
                break
    return out


def drained_since_started(records: list[Record], name: str) -> bool:
    """Whether container `name`'s agent was drained after its last start
    ("container-placed": where that run went). A drain kills what runs on
    the agent; a container bound to it (its writable layer is there) ends its
    run, as a Docker container does when its host goes down for maintenance,
    and with restart policy "no" stays stopped."""
    placed = [r for r in records if r["type"] == "container-placed" and r["name"] == name]
    if not placed:
        return False
    last = placed[-1]
    if last["agent_id"] is None:   # where it went is not known: nothing excuses it
        return False
    return any(r["type"] == "op" and r["kind"] == "drain" and r["ok"]
               and r["target"] == last["agent_id"] and r["t"] > last["t"] for r in records)


def not_converged(final: dict[str, Any], records: list[Record] | None = None) -> list[Anomaly]:
    records = records or []
    out = []
    for app_id, a in sorted(final.get("apps", {}).items()):
        deploying = a.get("deploying", 0)
        if a["running"] != a["desired"] or a["instances"] != a["desired"] or deploying:
            still = f", {deploying} deployment(s) still in progress" if deploying else ""
            out.append(Anomaly("not-converged", app_id,
                               f"desired {a['desired']} instances; the app says "
                               f"{a['instances']}, {a['running']} running{still}"))
    for name, c in sorted(final.get("containers", {}).items()):
        # "dead" (its agent lost it: it cannot start again) is not running,
        # which is all a desired "exited" asks.
        stopped = c["state"] in ("exited", "dead")
        if c["desired"] == "running" and stopped and drained_since_started(records, name):
            continue
        if c["state"] != c["desired"] and (c["desired"], c["state"]) != ("exited", "dead"):
            why = f" ({c['why']})" if c.get("why") else ""
            out.append(Anomaly("not-converged", name,
                               f"desired {c['desired']}; the container is {c['state']}{why}"))
    return out


HEALED = "healed-"   # the kind prefix of the operations made after every heal


def refused_after_healing(records: list[Record], final: dict[str, Any]) -> list[Anomaly]:
    """Each healed-phase operation (kind, target) whose last try failed, and
    each app or container not at the state those operations asked for."""
    last: dict[tuple[str, str], Record] = {}
    for r in records:
        if r["type"] == "op" and r["kind"].startswith(HEALED):
            last[(r["kind"], r["target"])] = r
    out = [Anomaly("refused-after-healing", f"{kind} {target}",
                   f"refused at its last try, at {r['t']:.1f}s, with every fault healed: "
                   f"{r['detail']}")
           for (kind, target), r in sorted(last.items()) if not r["ok"]]
    after = final.get("after_healing")
    if after is not None:
        out += [Anomaly("refused-after-healing", a.subject, f"after the healed phase: "
                        f"{a.explanation}") for a in not_converged(after)]
    return out


def not_healed(records: list[Record]) -> list[Anomaly]:
    return [Anomaly("not-healed", f"{r['kind']} {r['target']}",
                    f"started at {r['start']:.1f}s, never healed")
            for r in records if r["type"] == "fault" and r["heal"] is None]


# What the campaign itself records when the cluster fails it as a whole.
CLUSTER_FAILURES = ("up-exited", "whole", "framework", "workload")


def unavailable(records: list[Record]) -> list[Anomaly]:
    """`juggler up` stopped the cluster, the cluster was not whole again (a
    leader, every agent ACTIVE; before the healed phase, none in maintenance)
    by its deadline, the masters dropped the framework, or a workload thread
    outlived the campaign."""
    return [Anomaly("unavailable", r["target"], r["detail"]) for r in records
            if r["type"] == "op" and r["kind"] in CLUSTER_FAILURES and not r["ok"]]


def leaks(final: dict[str, Any]) -> list[Anomaly]:
    return [Anomaly("leak", f"{x['kind']} {x['what']}",
                    "left after every task was killed and the cluster stopped tracking it")
            for x in final.get("leaks", [])]


def overlapping_faults(records: list[Record]) -> int:
    """How many faults lasted, at least for a while, at once with another
    (from its start to its heal; one never healed lasts to the end)."""
    spans = [(r["start"], r["heal"] if r["heal"] is not None else float("inf"))
             for r in records if r["type"] == "fault"]
    return sum(1 for i, (a, b) in enumerate(spans)
               if any(j != i and a < d and c < b for j, (c, d) in enumerate(spans)))


def summary(records: list[Record]) -> tuple[int, dict[str, int]]:
    """(operations: ops, launches and kills the workload made; faults by kind)."""
    ops = sum(1 for r in records if r["type"] in ("op", "launch"))
    faults: dict[str, int] = defaultdict(int)
    for r in records:
        if r["type"] == "fault":
            faults[r["kind"]] += 1
    return ops, dict(sorted(faults.items()))
