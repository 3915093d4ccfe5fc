"""Watching the lab: who leads (every master's GetLeader, and etcd's
election), the masters' final view of the framework's tasks, and what is left
on the machine once every task is gone (leaks).

    LeaderWatch   a thread: every POLL seconds, GetLeader on each master and
                  the lowest-create-revision key under the masters' election
                  prefix in etcd; both recorded ("leader", "etcd_leader"); and
                  now and then, task ids with two executor processes ("executors")
    final_tasks   {task id: {"state", "agent_id"}} of one framework, from the leader
    agents_active whether every agent is ACTIVE on the leader
    leaks         executors, cgroups, mounts, veths and IPAM leases of the lab's
                  agents that outlived every task
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request
from typing import Any

import grpc

from juggler.testing.faults import leaks
from juggler.testing.faults.actions import get_leader
from juggler.testing.faults.cluster import Lab
from juggler.testing.faults.history import History
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc

POLL = 0.5
EXECUTORS_EVERY = 4   # polls
ELECTION_PREFIX = "/juggler/up/election/"


def etcd_leader(endpoints: list[str], prefix: str = ELECTION_PREFIX,
                timeout: float = 1.0) -> tuple[str, int] | None:
    """(address, create revision) of the election key that leads (the lowest
    create revision under `prefix`), from the first endpoint that answers."""
    key = prefix.encode()
    end = key[:-1] + bytes([key[-1] + 1])
    body = json.dumps({"key": base64.b64encode(key).decode(),
                       "range_end": base64.b64encode(end).decode()}).encode()
    for endpoint in endpoints:
        try:
            req = urllib.request.Request(f"{endpoint}/v3/kv/range", data=body, method="POST")
            with urllib.request.urlopen(req, timeout=timeout) as r:
                kvs = json.load(r).get("kvs", [])
        except (OSError, ValueError):
            continue
        if not kvs:
            return None
        first = min(kvs, key=lambda kv: int(kv["create_revision"]))
        return base64.b64decode(first["value"]).decode(), int(first["create_revision"])
    return None


class LeaderWatch:
    def __init__(self, lab: Lab, history: History, stop: threading.Event) -> None:
        self.lab, self.h, self.stop = lab, history, stop
        self._thread = threading.Thread(target=self._run, name="leaders", daemon=True)
        self._polls = 0

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(10)

    def _run(self) -> None:
        endpoints = [m.endpoint for m in self.lab.etcd.members]
        while not self.stop.wait(POLL):
            for address in self.lab.masters:
                t0 = self.h.now()
                got = get_leader(address)
                self.h.add("leader", master=address, t0=t0, t1=self.h.now(),
                           is_leader=bool(got is not None and got.is_leader),
                           answered=got is not None)
            self._executors()
            t0 = self.h.now()
            seen = etcd_leader(endpoints)
            if seen is not None:
                self.h.add("etcd_leader", address=seen[0], revision=seen[1], t0=t0,
                           t1=self.h.now())


    def _executors(self) -> None:
        """Every EXECUTORS_EVERY polls: a task id with two executor processes."""
        self._polls += 1
        if self._polls % EXECUTORS_EVERY:
            return
        counts = leaks.executors_by_task(leaks.scan_executors(self.lab))
        twice = {task: n for task, n in counts.items() if n > 1}
        if twice:
            self.h.add("executors", counts=twice, t=self.h.now())


def on_leader(lab: Lab, method: str, request: Any, timeout: float = 10.0) -> Any:
    """Call the Operator API on whichever master accepts it (the leader)."""
    for address in lab.masters:
        with grpc.insecure_channel(address) as ch:
            try:
                return getattr(operator_pb2_grpc.OperatorStub(ch), method)(request,
                                                                           timeout=timeout)
            except grpc.RpcError:
                continue
    raise OSError(f"no master answered {method}")


def final_tasks(lab: Lab, framework_id: str) -> dict[str, dict[str, str]]:
    """The leading master's view of `framework_id`'s tasks. Raises OSError."""
    got = on_leader(lab, "GetState", operator_pb2.GetStateRequest())
    return {t.info.task_id: {"state": common_pb2.TaskState.Name(t.state),
                             "agent_id": t.agent_id}
            for t in [*got.completed_tasks, *got.tasks] if t.framework_id == framework_id}


def agents_active(lab: Lab, in_service: bool = False) -> bool:
    """Whether the leader has every host's agent ACTIVE (and, `in_service`,
    none in maintenance: drained or draining)."""
    try:
        got = on_leader(lab, "GetAgents", operator_pb2.GetAgentsRequest())
    except OSError:
        return False
    ready = [a for a in got.agents if a.state == operator_pb2.AGENT_ACTIVE and (
        not in_service or a.maintenance == operator_pb2.MAINTENANCE_NONE)]
    return len(got.agents) >= len(lab.lab.hosts) and len(ready) == len(lab.lab.hosts)


def wait_whole(lab: Lab, deadline: float, in_service: bool = False) -> bool:
    """Until a master leads and every agent is ACTIVE (and, `in_service`, out
    of maintenance), or `deadline` seconds."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if agents_active(lab, in_service):
            return True
        time.sleep(0.5)
    return False
