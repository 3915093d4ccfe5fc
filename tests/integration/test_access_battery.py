"""The access battery of issue 18: every call of every service — Scheduler,
Operator, the master's AgentChannel, Agent, the executor link, the apps
service's Marathon REST API and Docker Engine API — as (a) a caller without
credentials, (b) a certificate from another CA, (c) a valid principal that no
rule names, (d) a principal the rules give exactly what the call needs.

Only (d) gets through: (a) and (b) are refused at the transport (gRPC
UNAVAILABLE, an HTTP 401 or a refused TLS handshake), (c) with
PERMISSION_DENIED / 403 naming the rule. (d) may still fail for another
reason (NOT_FOUND for a made-up id, 501 for what juggler does not
implement): what it shows is that authorization let it through. Each
refusal changes nothing: the master's and the agent's state, the apps,
deployments and containers are compared before and after it.

The calls come from the service descriptors and the apps service's router:
a new method or route without a case here fails the coverage test.

One cluster for the module (testing/access_battery.py): a master, agents
a1 and spare, an apps service, all with mutual TLS and one rules file.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from juggler.testing.access_battery import (
    CALLERS,
    HTTP_CALLERS,
    Battery,
    Outcome,
    battery_cluster,
)
from juggler.testing.battery_grpc import CALLS, Framework, launch_live_task
from juggler.testing.battery_http import (
    LAST,
    LISTS,
    OPEN,
    PRINCIPAL_ONLY,
    ROUTES,
    routes,
)
from juggler.testing.waiting import wait_for
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    executor_pb2,
    operator_pb2,
    scheduler_pb2,
)
from tests.conftest import needs_root

REFUSED_AT_TRANSPORT = ("none", "anonymous", "other")
TRANSPORT_WORDS = ("failed to connect", "socket closed", "connection reset", "handshake",
                   "ssl", "tls", "certificate")


@pytest.fixture(scope="module")
def battery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Battery]:
    needs_root()
    with battery_cluster(tmp_path_factory.mktemp("battery")) as b:
        fw = Framework(b)
        b.fid, b.sid = fw.fid, fw.sid
        try:
            launch_live_task(b, fw)
            # A running app instance on a1 (its task id is named by refused
            # requests); an app whose deployment never ends (cpus no agent has);
            # a container created and never started.
            b.ok("POST", "/v2/apps", {"id": "/battery/app", "cmd": "sleep 3600", "cpus": 0.1,
                                      "mem": 16, "instances": 1,
                                      "constraints": [["hostname", "CLUSTER", "a1"]]})
            b.ok("POST", "/v2/apps", {"id": "/battery/waiting", "cmd": "sleep 3600",
                                      "cpus": 64, "mem": 16, "instances": 1})
            b.ok("POST", "/containers/create?name=battery-idle",
                 {"Image": str(b.rootfs), "Cmd": ["true"]})
            wait_for(lambda: b.ok("GET", "/v2/apps/battery/app")["app"]["tasksRunning"] == 1,
                     timeout=60, what="the app's instance to run")
            b.settled()
            yield b
        finally:
            fw.close()


def test_the_battery_has_a_case_for_every_call_and_route() -> None:
    served = {s.full_name: {m.name for m in s.methods}
              for module in (scheduler_pb2, operator_pb2, agent_pb2)
              for s in module.DESCRIPTOR.services_by_name.values()}
    assert {name: set(calls) for name, calls in CALLS.items()} == served
    assert set(ROUTES) == routes()


def _grpc_outcome(b: Battery, who: str, address: str, call: Any) -> Outcome:
    with b.channel(who, address) as ch:
        try:
            call(ch)
        except grpc.RpcError as e:
            return Outcome(e.code().name, e.details() or "")
    return Outcome("OK")


def _judge_grpc(who: str, o: Outcome) -> str:
    """"" when the outcome is what `who` must get, else what is wrong."""
    if who in REFUSED_AT_TRANSPORT:
        return "" if o.code == "UNAVAILABLE" else "not refused at the transport"
    if who == "denied":
        ok = o.code == "PERMISSION_DENIED" and "permission denied" in o.detail \
            and "rule" in o.detail
        return "" if ok else "not PERMISSION_DENIED naming the rule"
    # UNAVAILABLE from the service itself (a registry it cannot reach) is not a
    # refusal; from the transport it is.
    transport = o.code == "UNAVAILABLE" and any(
        s in o.detail.lower() for s in TRANSPORT_WORDS)
    refused = o.code in ("PERMISSION_DENIED", "UNAUTHENTICATED") or transport
    return "refused" if refused else ""


# Calls whose allowed case changes the state: they show that the comparison
# would see a refused call applied by mistake.
GRPC_CHANGES = {"DrainAgent", "UpAgent", "UpdateWeights", "UpdateQuota"}
HTTP_CHANGES = {"POST /v2/apps", "POST /containers/create", "POST /containers/{id}/rename"}


def test_every_grpc_call(battery: Battery) -> None:
    b = battery
    wrong: list[str] = []
    changed: set[str] = set()
    before = b.state()
    for service, calls in CALLS.items():
        for method, build in calls.items():
            for who in CALLERS:
                address, call = build(b, who)
                outcome = _grpc_outcome(b, who, address, call)
                print(f"{service}/{method} as {who}: {outcome.code} {outcome.detail[:150]}")
                why = _judge_grpc(who, outcome)
                if why:
                    wrong.append(f"{service}/{method} as {who}: {why}: {outcome}")
                after = b.state()
                if after != before and who != "allowed":
                    wrong.append(f"{service}/{method} as {who} changed the state: "
                                 f"{_diff(before, after)}")
                elif after != before:
                    changed.add(method)
                before = after
    assert not wrong, "\n".join(wrong)
    assert changed >= GRPC_CHANGES, changed


def _diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {before[k]} -> {after[k]}" for k in before if before[k] != after[k])


def _executor_pid(b: Battery) -> int:
    """The live task's executor, as the agent checkpointed it (agent/checkpoint.py)."""
    meta = b.d.work / "a1" / "meta" / "frameworks" / b.fid / "tasks" / b.task_id
    return int((meta / "executor.pid").read_text().split()[0])


def _forge(path: Path, hello_pid: int, b: Battery) -> bytes:
    """Connect to the agent's executor socket, say hello for the live task as
    `hello_pid`, send an update that it failed: what the agent answers
    before it hangs up (b"" when it hangs up at once)."""
    hello = executor_pb2.ExecutorMessage(hello=executor_pb2.ExecutorMessage.Hello(
        framework_id=b.fid, task_id=b.task_id, pid=hello_pid, container_pid=hello_pid))
    update = executor_pb2.ExecutorMessage(update=executor_pb2.ExecutorMessage.Update(
        status=common_pb2.TaskStatus(task_id=b.task_id, framework_id=b.fid,
                                     agent_id=b.agent_id, state=common_pb2.TASK_FAILED,
                                     message="forged", uuid=os.urandom(16))))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(str(path))
        for msg in (hello, update):
            raw = msg.SerializeToString()
            try:
                s.sendall(struct.pack(">I", len(raw)) + raw)
            except (BrokenPipeError, ConnectionResetError):
                return b""
        try:
            return s.recv(1 << 16)   # the agent hangs up: b""
        except ConnectionResetError:
            return b""


def _connect_as_nobody(path: Path) -> str:
    """What connect(2) to `path` gives a process running as nobody:
    "connected", "refused" (EACCES) or "failed: …". A fresh interpreter, not a
    fork of this threaded one (gRPC's threads make a forked child unreliable)."""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            "try:\n"
            "    s.connect(sys.argv[1])\n"
            "except PermissionError:\n"
            "    sys.exit(13)\n"
            "sys.exit(0)\n")
    # The system interpreter: nobody may not be able to reach this checkout's venv.
    result = subprocess.run(["/usr/bin/python3", "-c", code, str(path)], user="nobody",
                            group=pwd.getpwnam("nobody").pw_gid, extra_groups=[],
                            capture_output=True, text=True, timeout=30)
    return {0: "connected", 13: "refused"}.get(result.returncode,
                                               f"failed: {result.stderr[-500:]}")


def _frames(data: bytes) -> list[Any]:
    """The AgentToExecutor messages in `data` (4-byte big-endian lengths)."""
    out = []
    while len(data) >= 4:
        (n,) = struct.unpack(">I", data[:4])
        out.append(executor_pb2.AgentToExecutor.FromString(data[4:4 + n]))
        data = data[4 + n:]
    return out


def test_the_executor_link_takes_only_the_tasks_executor(battery: Battery) -> None:
    b = battery
    # The real executor's link works: the live task reached RUNNING through it
    # (launch_live_task), and still runs.
    before = b.state()
    assert (b.task_id, b.fid, common_pb2.TASK_RUNNING) in before["tasks"]
    sock = b.d.work / "a1" / "executor-link" / "agent.sock"
    for claimed in (os.getpid(), _executor_pid(b)):
        answer = _forge(sock, claimed, b)
        assert answer == b"", (f"the agent answered a forger claiming pid {claimed}: "
                               f"{_frames(answer)}\n{(b.d.work / 'a1.log').read_text()[-3000:]}")
        assert b.state() == before
    log = (b.d.work / "a1.log").read_text()
    assert log.count("executor link refused") >= 2
    # A process of another user cannot even connect (the socket is the agent's, 0600).
    assert _connect_as_nobody(sock) == "refused"
    # The task still runs, as the agent itself says.
    with b.channel("allowed", b.agent_api) as ch:
        state = agent_pb2_grpc.AgentStub(ch).GetState(agent_pb2.GetAgentStateRequest(),
                                                      timeout=30)
    assert any(t.task_id == b.task_id and t.state == common_pb2.TASK_RUNNING
               for t in state.tasks)


def _judge_http(route: str, who: str, o: Outcome, body: Any) -> str:
    if who in ("none", "other"):   # plain text; a certificate of another CA
        return "" if o.code == "TRANSPORT" else "the connection not refused"
    if route in OPEN:
        return "" if o.code.startswith("2") else "an open path refused"
    if who == "anonymous":
        return "" if o.code == "401" else "not 401"
    if who in ("denied", "socket"):
        if route in PRINCIPAL_ONLY:
            return "" if o.code == "200" else "not 200 for any principal"
        if route in LISTS and o.code == "200":
            key = LISTS[route]
            items = body if key is None else (body or {}).get(key)
            return "" if items == [] else f"the list shows {items!r}"
        ok = o.code == "403" and "permission denied" in o.detail and "rule" in o.detail
        return "" if ok else "not 403 naming the rule"
    return "refused" if o.code in ("401", "403", "TRANSPORT") else ""


def test_every_http_route(battery: Battery) -> None:
    b = battery
    wrong: list[str] = []
    changed: set[str] = set()
    order = [r for r in ROUTES if r != LAST] + [LAST]
    before = b.state()
    for route in order:
        for who in HTTP_CALLERS:
            # Builders make things (as `allowed`) for the allowed caller only.
            for method, path, body, headers in ROUTES[route](b, who):
                outcome, answer = b.http(who, method, path, body, headers)
                print(f"{method} {path} as {who}: {outcome.code} {outcome.detail[:150]}")
                why = _judge_http(route, who, outcome, answer)
                if why:
                    wrong.append(f"{route} ({method} {path}) as {who}: {why}: {outcome}")
                if who == "allowed":
                    b.settled()
                after = b.state()
                if after != before and who != "allowed":
                    wrong.append(f"{route} ({method} {path}) as {who} changed the "
                                 f"state: {_diff(before, after)}")
                elif after != before:
                    changed.add(route)
                before = after
    assert not wrong, "\n".join(wrong)
    assert changed >= HTTP_CHANGES, changed
