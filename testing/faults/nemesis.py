"""The nemesis' schedule: which fault, when, for how long — a pure function
of the seed, so that a failing campaign replays with the same faults.

    schedule(seed, seconds[, overlap]) ─▶ [Planned(at, kind, hold, pick, joins), ...]

One fault at a time by default. With `overlap` p, each fault is joined, with
probability p, by a second one that starts while it lasts (at 20-80 % of its
hold) on another target: faults arriving together, as Jepsen's composed
nemeses make them (a partition during a leader's kill, an etcd member stopped
while another is down). The next fault starts once both are healed.

`pick` chooses among the targets of that kind found at run time (the leader
is only known then): target = candidates[pick % len(candidates)]. Every fault
is healed `hold` seconds after it starts: a killed daemon is started again
(`juggler up` restarts masters, agents and apps services; the campaign
restarts etcd members), a stopped one continued, a cut link put back.

`juggler up` stops the whole cluster when one daemon exits RESTART_LIMIT (3)
times within 60 s, so `admissible` turns a third kill of one daemon within
that window into a SIGSTOP of it (decided here, from the kills so far).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass


class Fault(enum.Enum):
    KILL_LEADER_MASTER = "kill-leader-master"
    STOP_LEADER_MASTER = "stop-leader-master"
    KILL_STANDBY_MASTER = "kill-standby-master"
    STOP_STANDBY_MASTER = "stop-standby-master"
    KILL_AGENT = "kill-agent"
    STOP_AGENT = "stop-agent"
    KILL_APPS_LEADER = "kill-apps-leader"
    STOP_APPS_LEADER = "stop-apps-leader"
    KILL_ETCD = "kill-etcd"
    STOP_ETCD = "stop-etcd"
    PARTITION_HOST = "partition-host"     # the host's eth0 down: both ways
    ONE_WAY_HOST = "one-way-host"         # the host's outgoing packets dropped (iptables)
    ONE_WAY_IN_HOST = "one-way-in-host"   # the host's incoming packets dropped (iptables)

    @property
    def is_kill(self) -> bool:
        return self.value.startswith("kill-")

    @property
    def stop_instead(self) -> Fault:
        """The SIGSTOP fault on the same target (for a kill that is not admissible)."""
        return Fault(self.value.replace("kill-", "stop-", 1))


ALL = tuple(Fault)


@dataclass(frozen=True)
class Planned:
    at: float      # seconds after the campaign's start (at the earliest: after the last heal)
    kind: Fault
    hold: float    # seconds from the fault to its heal
    pick: int      # which target among the candidates found at run time
    joins: bool = False  # it starts while the fault before it lasts (`overlap`)


GAP = (2.0, 6.0)   # seconds of calm between a heal and the next fault
HOLD = (2.0, 7.0)  # seconds a fault lasts
START = 5.0        # the first fault: after the workload has started
KILL_WINDOW = 60.0  # `juggler up`'s RESTART_WINDOW
KILLS_PER_WINDOW = 2  # its RESTART_LIMIT (3) minus one


def schedule(seed: int, seconds: float, kinds: tuple[Fault, ...] = ALL,
             overlap: float = 0.0) -> list[Planned]:
    """The faults of a campaign of `seconds` seconds with this `seed`, in
    order (planned times; the campaign starts each that does not join the one
    before at max(at, the heal of those before)). `overlap` (0 to 1): the
    probability that a fault is joined by a second one while it lasts; 0
    plans exactly what earlier versions did for the same seed. Raises
    ValueError for no kinds or an overlap outside [0, 1]."""
    if not kinds:
        raise ValueError("no fault kinds to choose from")
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap {overlap} is not a probability")
    rng = random.Random(seed)
    out: list[Planned] = []
    t = START
    while True:
        kind = rng.choice(kinds)
        hold = round(rng.uniform(*HOLD), 2)
        if t + hold > seconds:
            return out
        out.append(Planned(round(t, 2), kind, hold, rng.randrange(1000)))
        end = t + hold
        if overlap and rng.random() < overlap:
            at = t + rng.uniform(0.2, 0.8) * hold
            kind = rng.choice(kinds)
            second = round(rng.uniform(*HOLD), 2)
            if at + second <= seconds:
                out.append(Planned(round(at, 2), kind, second, rng.randrange(1000), joins=True))
                end = max(end, at + second)
        t = end + rng.uniform(*GAP)


def admissible(kind: Fault, target: str, kills: list[tuple[float, str]], now: float) -> Fault:
    """The fault to carry out: `kind`, or its SIGSTOP twin when `target` was
    killed KILLS_PER_WINDOW times within the last KILL_WINDOW seconds (`kills`:
    (time, target) of the kills so far). Etcd members are restarted by the
    campaign, not by up: any number may be killed."""
    if not kind.is_kill or kind is Fault.KILL_ETCD:
        return kind
    recent = [t for t, who in kills if who == target and now - t < KILL_WINDOW]
    return kind.stop_instead if len(recent) >= KILLS_PER_WINDOW else kind
