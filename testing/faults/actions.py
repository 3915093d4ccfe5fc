"""The nemesis' hands: carry out a planned fault (nemesis.py) on the lab and
heal it, recording both in the history. The shell half of the nemesis: the
choice of fault, time and target index is made in nemesis.schedule().

    kill -9      up's daemon (master, agent, apps): healed when up has started it
                 again (a new pid under the same name); an etcd member: started
                 again by us after the hold
    SIGSTOP      any of them: SIGCONT after the hold
    partition    `ip -n <netns> link set eth0 down`, then the lab's heal command
    one-way      the host's outgoing (or incoming) packets dropped: an iptables DROP
                 rule on its eth0 in its netns (OUTPUT -o eth0, or INPUT -i eth0)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable

import grpc

from juggler.testing.faults.cluster import Lab, http_json
from juggler.testing.faults.history import History
from juggler.testing.faults.nemesis import Fault, Planned, admissible
from juggler.v1 import operator_pb2, operator_pb2_grpc

RESTART_DEADLINE = 60.0


def get_leader(address: str, timeout: float = 1.0) -> operator_pb2.GetLeaderResponse | None:
    """One GetLeader answer from the master at `address`, None if it gave none."""
    with grpc.insecure_channel(address) as ch:
        try:
            return operator_pb2_grpc.OperatorStub(ch).GetLeader(operator_pb2.GetLeaderRequest(),
                                                                timeout=timeout)
        except grpc.RpcError:
            return None


def leading_master(lab: Lab) -> str | None:
    """The name ("master-2") of the master the masters name as leader."""
    for address in lab.masters:
        got = get_leader(address)
        if got is not None and got.address in lab.masters:
            return f"master-{lab.masters.index(got.address) + 1}"
    return None


def leading_apps(lab: Lab) -> str | None:
    """The name ("apps-3") of the leading apps service, as /v2/leader says."""
    ports = [url.rsplit(":", 1)[1] for url in lab.apps]
    for url in lab.apps:
        try:
            leader = http_json(url + "/v2/leader", timeout=2)["leader"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        port = str(leader).rsplit(":", 1)[-1]
        if port in ports:
            return f"apps-{ports.index(port) + 1}"
    return None


class Nemesis:
    """Runs `plan` in a thread against `lab`; `stop` ends it early (the fault
    under way is healed first)."""

    def __init__(self, lab: Lab, history: History, plan: list[Planned],
                 stop: threading.Event) -> None:
        self.lab, self.h, self.plan, self.stop = lab, history, plan, stop
        self.kills: list[tuple[float, str]] = []
        self.skipped: list[str] = []
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # targets under a fault now

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        """Each fault in a thread of its own: one that joins the fault before
        it starts while that one lasts; any other once all before it healed."""
        active: list[threading.Thread] = []
        for p in self.plan:
            if not p.joins:
                for thread in active:
                    thread.join()
                active = []
            if self.stop.wait(max(0.0, p.at - self.h.now())):
                break
            thread = threading.Thread(target=self._guarded, args=(p,), daemon=True,
                                      name=f"nemesis-{p.kind.value}")
            thread.start()
            active.append(thread)
        for thread in active:
            thread.join()

    def _guarded(self, p: Planned) -> None:
        try:
            self._one(p)
        except (OSError, subprocess.SubprocessError) as e:
            # Recorded; a fault left unhealed shows as one (checker).
            self.h.op("nemesis-error", p.kind.value, False, f"{type(e).__name__}: {e}")

    def candidates(self, kind: Fault) -> list[str]:
        if kind in (Fault.KILL_LEADER_MASTER, Fault.STOP_LEADER_MASTER):
            leader = leading_master(self.lab)
            return [leader] if leader else []
        if kind in (Fault.KILL_STANDBY_MASTER, Fault.STOP_STANDBY_MASTER):
            leader = leading_master(self.lab)
            return [f"master-{i + 1}" for i in range(len(self.lab.masters))
                    if leader and f"master-{i + 1}" != leader]
        if kind in (Fault.KILL_AGENT, Fault.STOP_AGENT):
            return [f"agent-{h.index}" for h in self.lab.lab.hosts]
        if kind in (Fault.KILL_APPS_LEADER, Fault.STOP_APPS_LEADER):
            leader = leading_apps(self.lab)
            return [leader] if leader else []
        if kind in (Fault.KILL_ETCD, Fault.STOP_ETCD):
            return [m.name for m in self.lab.etcd.members]
        return [h.name for h in self.lab.lab.hosts]

    def _one(self, p: Planned) -> None:
        found = self.candidates(p.kind)
        with self._lock:   # a target under another fault is not picked
            targets = [t for t in found if t not in self._busy]
            if not targets:
                why = "every target is under another fault" if found else "no target found"
                self.skipped.append(f"{p.kind.value} at {self.h.now():.1f}s: {why}")
                self.h.op("nemesis-skip", p.kind.value, False, why)
                return
            target = targets[p.pick % len(targets)]
            kind = admissible(p.kind, target, list(self.kills), self.h.now())
            self._busy.add(target)
        try:
            heal = self._act(kind, target)
            if heal is None:
                return
            record, undo = heal
            try:
                self.stop.wait(p.hold)
            finally:
                undo()
                self.h.fault_healed(record)
        finally:
            with self._lock:
                self._busy.discard(target)

    def _act(self, kind: Fault, target: str) -> tuple[dict, Callable[[], None]] | None:
        etcd = {m.name: m for m in self.lab.etcd.members}
        host = {h.name: h for h in self.lab.lab.hosts}
        if target in etcd:
            member = etcd[target]
            if kind is Fault.KILL_ETCD:
                member.process.kill()
                member.process.wait()
                return self.h.fault_started(kind.value, target), member.restart
            member.process.send_signal(signal.SIGSTOP)
            return (self.h.fault_started(kind.value, target),
                    lambda: member.process.send_signal(signal.SIGCONT))
        if target in host:
            h = host[target]
            if kind is Fault.PARTITION_HOST:
                _sh(h.partition_command)
                return self.h.fault_started(kind.value, target), lambda: _sh(h.heal_command)
            chain = "OUTPUT -o eth0" if kind is Fault.ONE_WAY_HOST else "INPUT -i eth0"
            rule = f"{chain} -m comment --comment juggler-faults -j DROP"
            _sh(f"ip netns exec {h.netns} iptables -I {rule}")
            return (self.h.fault_started(kind.value, target),
                    lambda: _sh(f"ip netns exec {h.netns} iptables -D {rule}"))
        pid = self.lab.daemons().get(target)
        if pid is None:
            self.h.op("nemesis-skip", f"{kind.value} {target}", False, "not running")
            return None
        if kind.is_kill:
            os.kill(pid, signal.SIGKILL)
            with self._lock:
                self.kills.append((self.h.now(), target))
            record = self.h.fault_started(kind.value, target)
            # up starts it again: the fault is healed when it has.
            end = time.monotonic() + RESTART_DEADLINE
            while self.lab.daemons().get(target) in (None, pid) and time.monotonic() < end:
                time.sleep(0.1)
            if self.lab.daemons().get(target) not in (None, pid):
                self.h.fault_healed(record)
            return None

        def cont() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGSTOP)
        return self.h.fault_started(kind.value, target), cont


def _sh(command: str) -> None:
    subprocess.run(command, shell=True, check=True, timeout=30, capture_output=True)
