"""The port watch's decisions (agent/port_check.py) and the agent core's kill over a
limit (ev.LimitTask): which host-network tasks listen on ports they were not given,
the message their framework reads, and the terminal update it gets."""

from __future__ import annotations

import asyncio
import os
import socket

from hypothesis import given
from hypothesis import strategies as st

from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent import port_watch
from juggler.agent.port_check import parse_proc_net, socket_inode, violations
from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.v1 import common_pb2
from tests.unit.test_agent_state import KEY, Harness, ack, sent, to_executor, update

S = common_pb2.TaskState
AGENT = Ranges.parse("[31000-32000]")
A, B = ("fw", "a"), ("fw", "b")


def test_a_task_listening_on_an_agent_port_it_was_not_given_violates() -> None:
    [v] = violations(AGENT, {A: Ranges.single(31001), B: Ranges()},
                     {A: {(31001, "tcp")}, B: {(31002, "tcp"), (31800, "tcp"), (8080, "tcp")}},
                     agent_range_only=True)
    assert v.key == B and v.ports == ((31002, "tcp"), (31800, "tcp"))
    assert v.message == (
        "task b listens on ports 31002, 31800, which are not among its ports resources "
        "(it has none) (juggler's agent kills a host-network task listening on an agent port "
        "it was not given, as Mesos's network/ports isolator)")


def test_one_port_and_the_message_names_what_the_task_holds() -> None:
    [v] = violations(AGENT, {A: Ranges.single(31001)}, {A: {(31001, "tcp"), (31002, "tcp")}})
    assert v.message.startswith(
        "task a listens on port 31002, which is not one of its ports resources [31001] (")


def test_outside_the_agent_range_only_counts_when_every_port_is_checked() -> None:
    listening = {A: {(31800, "tcp"), (9000, "tcp")}}
    assert violations(Ranges.parse("[31700-31705]"), {A: Ranges()}, listening) == []
    [v] = violations(Ranges.parse("[31700-31705]"), {A: Ranges()}, listening,
                     agent_range_only=False)
    assert v.ports == ((9000, "tcp"), (31800, "tcp"))


def test_udp_counts_outside_the_kernels_ephemeral_ports_only() -> None:
    ephemeral = Ranges.parse("[31500-60999]")
    [v] = violations(AGENT, {A: Ranges()}, {A: {(31002, "udp"), (31600, "udp"), (31600, "tcp")}},
                     ephemeral=ephemeral)
    assert v.ports == ((31002, "udp"), (31600, "tcp"))
    assert v.message.startswith("task a listens on ports 31002/udp, 31600, which are not")


def test_tasks_not_on_the_host_network_are_not_checked() -> None:
    # A bridge task is not in `allocated`: its ports live in its own namespace.
    assert violations(AGENT, {}, {A: {(31002, "tcp")}}) == []


ports = st.integers(1, 65535)
port_sets = st.sets(st.tuples(ports, st.sampled_from(["tcp", "udp"])), max_size=8)
ranges = st.lists(st.tuples(ports, st.integers(0, 50)), max_size=3).map(
    lambda pairs: Ranges.of((b, min(b + n, 65535)) for b, n in pairs))


@given(agent=ranges, given_a=ranges, given_b=ranges, listen_a=port_sets, listen_b=port_sets,
       only=st.booleans(), ephemeral=ranges)
def test_a_violation_is_exactly_the_ports_outside_what_the_task_holds(
        agent, given_a, given_b, listen_a, listen_b, only, ephemeral  # type: ignore[no-untyped-def]
        ) -> None:
    allocated = {A: given_a, B: given_b}
    listening = {A: listen_a, B: listen_b}
    found = {v.key: v for v in violations(agent, allocated, listening, agent_range_only=only,
                                          ephemeral=ephemeral)}
    for key in (A, B):
        expected = sorted((p, proto) for p, proto in listening[key]
                          if p not in allocated[key] and (not only or p in agent)
                          and not (proto == "udp" and p in ephemeral))
        if expected:
            assert list(found[key].ports) == expected and found[key].allowed == allocated[key]
            assert all(str(p) in found[key].message for p, _ in expected)
        else:
            assert key not in found
    # Listening only on what it holds never violates.
    assert violations(agent, {A: given_a}, {A: {(p, "tcp") for p in given_a.ports()}}) == []


def row(local: str, remote: str, state: str, inode: int) -> str:
    """One row of /proc/net/tcp{,6}, as the kernel prints it."""
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000"
            f"     0        0 {inode} 1 0 100 0 0 10 0")


HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
PROC_NET_TCP = "\n".join([
    HEADER,
    row("0100007F:7A7E", "00000000:0000", "0A", 4242),
    row("0100007F:7A7E", "0100007F:D2F0", "01", 4343),
    row("00000000:1F90", "00000000:0000", "0A", 0),
    "   3: broken"])
PROC_NET_TCP6 = "\n".join([HEADER, row("0" * 32 + ":7A7F", "0" * 32 + ":0000", "0A", 777)])
# An unconnected UDP socket (a server's) and a connected one (a client's).
PROC_NET_UDP = "\n".join([HEADER, row("0100007F:7A80", "00000000:0000", "07", 55),
                          row("0100007F:8F01", "0100007F:0035", "01", 56)])


def test_proc_net_tables_give_the_listeners_by_inode() -> None:
    # 0x7A7E = 31358: listening (kept) and an established connection (not); a
    # listener with inode 0 and a cut-short row are skipped.
    assert parse_proc_net(PROC_NET_TCP) == {4242: 31358}
    assert parse_proc_net(PROC_NET_TCP6) == {777: 31359}
    assert parse_proc_net(PROC_NET_UDP, "udp") == {55: 31360}
    assert parse_proc_net(PROC_NET_UDP, "tcp") == {}
    assert socket_inode("socket:[4242]") == 4242
    assert socket_inode("pipe:[4242]") is None and socket_inode("/dev/null") is None


def test_a_task_over_a_limit_is_killed_at_once_and_fails_with_why() -> None:
    h = Harness()
    h.running()
    out = h(ev.LimitTask(KEY, common_pb2.REASON_CONTAINER_LIMITATION,
                         "task t1 listens on port 31002"))
    [k] = to_executor(out, "kill")
    assert k.message.kill.kill_policy.grace_period_seconds == 0  # SIGKILL, no grace
    assert h(ev.LimitTask(KEY, common_pb2.REASON_CONTAINER_LIMITATION, "again")) == []  # once
    # The executor reports the kill; what is recorded for the master is TASK_FAILED
    # with the reason (sent once RUNNING is acknowledged, as every update).
    out = h(update(S.TASK_KILLED, b"k1"))
    [status] = [x.status for x in out if isinstance(x, c.CheckpointUpdate)]
    assert (status.state, status.reason, status.message) == (
        S.TASK_FAILED, common_pb2.REASON_CONTAINER_LIMITATION, "task t1 listens on port 31002")
    assert h.core.tasks[KEY].state == S.TASK_FAILED
    assert [s.state for s in sent(h(ack(b"r1")))] == [S.TASK_FAILED]


def test_an_executor_gone_before_reporting_fails_its_task_with_the_limit() -> None:
    h = Harness()
    h.running()
    h(ev.LimitTask(KEY, common_pb2.REASON_CONTAINER_LIMITATION, "task t1 listens on port 31002"))
    out = h(ev.ExecutorExited(KEY, code=-9))
    assert any(isinstance(x, c.CheckpointUpdate) and x.status.state == S.TASK_FAILED
               and x.status.message == "task t1 listens on port 31002" for x in out)


def test_a_limit_for_an_ended_or_unknown_task_does_nothing() -> None:
    h = Harness()
    h.running()
    h(update(S.TASK_FINISHED, b"f1"))
    assert h(ev.LimitTask(KEY, common_pb2.REASON_CONTAINER_LIMITATION, "late")) == []
    assert h(ev.LimitTask(("fw", "nope"), common_pb2.REASON_CONTAINER_LIMITATION, "who")) == []


def test_the_host_tables_show_a_real_listener_and_its_owner() -> None:
    # The shell half (agent/port_watch.py) on this process: a socket listening on
    # a kernel-chosen port is found in /proc/net/tcp and among this pid's fds.
    with socket.socket() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        server.bind(("127.0.0.1", 0))
        server.listen()
        udp.bind(("127.0.0.1", 0))
        port, udp_port = server.getsockname()[1], udp.getsockname()[1]
        listeners = port_watch.host_listeners()
        mine = {listeners[i] for i in port_watch.sockets_of(os.getpid()) if i in listeners}
        assert {(port, "tcp"), (udp_port, "udp")} <= mine
    assert port_watch.ephemeral_ports().count() > 0
    assert port_watch.sockets_of(2 ** 22 + 1) == set()  # no such process: nothing


def test_the_watch_checks_host_network_tasks_only_and_kills_through_the_core(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    h = Harness()
    h.running("t1")
    h.running("t2")
    for key, network in ((KEY, common_pb2.NETWORK_HOST), (("fw", "t2"), common_pb2.NETWORK_BRIDGE)):
        h.core.tasks[key].info.container.network = network
    handled: list = []

    class Agent:  # what PortWatch reads of agent/server.py's Agent
        tasks = h.core.tasks
        config = type("Config", (), {"resources": Resources({}, ports=AGENT)})()

        def handle(self, *events: ev.Event) -> None:
            handled.extend(events)
            h(*events)

    scanned: list = []

    def scan(cgroups):  # type: ignore[no-untyped-def]
        scanned.append(dict(cgroups))
        return {key: {(31002, "tcp")} for key in cgroups}

    monkeypatch.setattr(port_watch, "scan", scan)
    [v] = asyncio.run(port_watch.PortWatch(Agent(), 1.0).check_once())
    assert scanned == [{KEY: "juggler-test/fw.t1"}]  # the bridge task has ports of its own
    assert handled == [ev.LimitTask(KEY, port_watch.REASON, v.message)]
    assert h.core.tasks[KEY].limitation == (port_watch.REASON, v.message)
