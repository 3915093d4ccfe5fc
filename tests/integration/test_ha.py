"""High availability with a real etcd and real processes: three masters elect a
leader, survive kill -9 and SIGSTOP of the leader, and keep every task and
status update; agents and frameworks follow the leader.

Masters listen on ports they pick (juggler/testing/daemons.py); tasks and
processes are found by what only the test knows (markers, its own processes'
children): another suite may run these tests on this host at the same time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.testing import secure
from juggler.testing.daemons import Daemons
from juggler.testing.etcd_server import EtcdNotInstalled, EtcdServer, etcd_server
from juggler.testing.processes import argv_of, children_of, marker, processes_with
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc
from tests.conftest import needs_root, three_masters_up, wait_for
from tests.framework_client import Client, run, task
from tests.integration.test_master_contract import wait_async

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
# Elections, restarts and re-registrations, on a 2-core machine two suites may share.
DEADLINE = 30.0


def says_it_leads(address: str, timeout: float = 1.0) -> bool | None:
    """A master's answer to GetLeader: True if it leads, False if it is a standby,
    None if it does not answer."""
    try:
        with servers.sync_channel(address) as ch:
            return operator_pb2_grpc.OperatorStub(ch).GetLeader(
                operator_pb2.GetLeaderRequest(), timeout=timeout).is_leader
    except grpc.RpcError:
        return None


class HA(Daemons):
    def __init__(self, work: Path, etcd: EtcdServer) -> None:
        super().__init__(work)
        self.etcd = etcd
        self.masters: dict[str, str] = {}

    def start_masters(self, n: int = 3, *flags: str) -> None:
        for i in range(n):
            name = f"m{i + 1}"
            self.masters[name] = self.start_master(
                "--etcd", self.etcd.endpoint, "--etcd-prefix", "/test/", "--lease-ttl", "2",
                "--agent-reregister-timeout", "30", *flags, name=name)
        self.master = ",".join(self.masters.values())

    def leader(self) -> tuple[str, str] | None:
        """(name, address) of the master that says it leads, if exactly one does."""
        leaders = []
        for name, address in self.masters.items():
            if self.procs[name].poll() is None and says_it_leads(address):
                leaders.append((name, address))
        assert len(leaders) <= 1, f"two masters say they lead: {leaders}"
        return leaders[0] if leaders else None

    def lose_host(self, name: str) -> None:
        """SIGKILL a master and its lease reaper, as when its whole host is lost: its
        lease is left to expire (a master that alone dies has it revoked at once)."""
        reapers = [c for c in children_of(self.procs[name].pid)
                   if any("lease_reaper" in arg for arg in argv_of(c))]
        assert len(reapers) == 1, f"{name} should have one lease reaper: {reapers}"
        os.kill(reapers[0], signal.SIGKILL)
        self.procs[name].kill()
        self.procs[name].wait(10)

    def standby_answer(self, address: str) -> grpc.RpcError:
        with servers.sync_channel(address) as ch:
            try:
                operator_pb2_grpc.OperatorStub(ch).GetTasks(operator_pb2.GetTasksRequest(),
                                                            timeout=2)
            except grpc.RpcError as e:
                return e
        raise AssertionError(f"{address} answered GetTasks although it does not lead")

    def agents(self, master: str = "") -> list[operator_pb2.AgentView]:
        """The leader's agents; none while no master answers as the leader (a
        failover, or one too slow to answer), so that waits on agents go on."""
        leader = self.leader()
        if leader is None:
            return []
        try:
            return super().agents(leader[1])
        except grpc.RpcError:  # it lost its lead, or answered too late
            return []

    def operator(self):  # type: ignore[no-untyped-def]
        leader = self.leader()
        assert leader is not None
        ch = servers.sync_channel(leader[1])
        return ch, operator_pb2_grpc.OperatorStub(ch)


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[HA]:
    needs_root()
    try:
        (tmp_path / "etcd").mkdir()
        ctx = etcd_server(tmp_path / "etcd")
        etcd = ctx.__enter__()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    d = HA(tmp_path, etcd)
    try:
        yield d
    finally:
        d.close()
        ctx.__exit__(None, None, None)


def test_one_leader_and_standbys_name_it(ha: HA) -> None:
    ha.start_masters(3)
    name, address = wait_for(ha.leader, DEADLINE, what="a leader")
    for other, other_address in ha.masters.items():
        if other == name:
            continue
        # A standby learns of the leader from its watch on the election, a
        # moment after the leader itself knows.
        def names_the_leader(standby: str = other_address) -> grpc.RpcError | None:
            answer = ha.standby_answer(standby)
            return answer if address in (answer.details() or "") else None  # type: ignore[attr-defined]

        e = wait_for(names_the_leader, DEADLINE, what=f"{other} to name the leader")
        assert e.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert ("juggler-leader", address) in (e.trailing_metadata() or ())  # type: ignore[attr-defined]
        # A client that lost its connection to the leader, which this standby
        # still reaches: sent back to it, not held for an election (a held call
        # would run into the deadline: no election comes while the leader lives).
        with servers.sync_channel(other_address) as ch, \
                pytest.raises(grpc.RpcError) as back:
            operator_pb2_grpc.OperatorStub(ch).GetTasks(
                operator_pb2.GetTasksRequest(), timeout=10,
                metadata=(("juggler-lost-leader", address),))
        assert back.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert ("juggler-leader", address) in (back.value.trailing_metadata() or ())  # type: ignore[attr-defined]


def test_a_standby_holds_a_client_that_lost_the_leader_until_a_new_one_leads(ha: HA) -> None:
    """Right after the leader dies its lease still runs, and a standby would name
    the dead leader. A call that says it lost that leader (as agents and the
    SDK do) is held instead, and answered once a new leader is elected: refused
    naming the new leader, or served by the standby that won."""
    ha.start_masters(3)
    name, address = wait_for(ha.leader, DEADLINE, what="a leader")
    ha.lose_host(name)
    standby = next(a for n, a in ha.masters.items() if n != name)
    with servers.sync_channel(standby) as ch:
        try:
            operator_pb2_grpc.OperatorStub(ch).GetTasks(
                operator_pb2.GetTasksRequest(), timeout=DEADLINE,
                metadata=(("juggler-lost-leader", address),))
            served = True
        except grpc.RpcError as e:
            served = False
            assert e.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            named = dict(e.trailing_metadata() or ()).get("juggler-leader")  # type: ignore[attr-defined]
            assert named and named != address, named
    new = wait_for(ha.leader, DEADLINE, what="a new leader")
    assert new[1] != address
    assert served == (new[1] == standby)


def test_kill9_the_leader_repeatedly_while_launching(ha: HA) -> None:
    ha.start_masters(3)
    wait_for(ha.leader, DEADLINE, what="a leader")
    ha.start_agent("a1", "--status-update-retry", "0.3", resources="cpus:4;mem:4096;disk:1024")
    ha.start_agent("a2", "--status-update-retry", "0.3", resources="cpus:4;mem:4096;disk:1024")
    wait_for(lambda: len([a for a in ha.agents() if a.state == operator_pb2.AGENT_ACTIVE]) == 2,
             DEADLINE, what="two agents")
    launched: list[str] = []
    long_sleep = f"sleep {marker()}"  # this test's long tasks, and no other process

    async def body() -> None:
        async with Client(ha.master, "ha-fw", failover_timeout=120) as c:
            c.fw.reconnect_timeout = 60

            async def launch(n: int) -> None:
                for _ in range(n):
                    tid = f"t{len(launched)}"
                    while True:
                        offer = await c.offer(Resources({"cpus": 0.1, "mem": 16}))
                        try:
                            await c.fw.launch([offer.id], [task(
                                tid, 0.1, 16, "sh", "-c", "sleep 0.3" if len(launched) % 2
                                else f"exec {long_sleep}")], refuse_seconds=0)
                            launched.append(tid)
                            break
                        except Exception:
                            # Offer of a dead leader, or the leader changed mid-call: retry
                            # on a fresh offer (the task id was not used).
                            continue

            await launch(4)
            for kill in range(3):
                name, _ = wait_for(ha.leader, DEADLINE, what="a leader")
                started = time.monotonic()
                kill_task = asyncio.create_task(launch(2))  # launching while it dies
                # Not a wait for anything: lets the launches start before the kill.
                # Whether a launch lands before, during or after it, every task
                # must be accounted for below.
                await asyncio.sleep(0.05)
                ha.procs[name].kill()
                ha.procs[name].wait()
                await kill_task
                new = await asyncio.to_thread(wait_for, ha.leader, DEADLINE, 0.05,
                                              "a new leader")
                assert new[0] != name, f"kill {kill}: {name} still leads"
                print(f"failover {kill}: new leader after {time.monotonic() - started:.2f} s")
                # Bring the dead one back as a standby, at its old address.
                ha.start_master("--etcd", ha.etcd.endpoint, "--etcd-prefix", "/test/",
                                "--lease-ttl", "2", "--agent-reregister-timeout", "30",
                                name=name, port=int(ha.masters[name].rsplit(":", 1)[1]))
            await launch(2)
            # Every task is accounted for. A launch accepted by a leader that died before
            # telling the agent never ran: the new leader answers explicit reconciliation
            # with TASK_UNKNOWN, as Mesos does. Every other task reaches its state: the
            # short ones FINISHED (that terminal update acknowledged), the long ones RUNNING.
            await asyncio.to_thread(
                wait_for, lambda: len([a for a in ha.agents()
                                       if a.state == operator_pb2.AGENT_ACTIVE]) == 2,
                DEADLINE, 0.1, "both agents re-registered")
            await c.fw.reconcile([(t, "") for t in launched])
            outcome: dict[str, int] = {}
            for i, tid in enumerate(launched):
                want = S.TASK_FINISHED if i % 2 else S.TASK_RUNNING

                def settled(tid: str = tid, want: int = want) -> bool:
                    states = [s.state for s in c.history.get(tid, [])]
                    if want in states:
                        outcome[tid] = want
                    elif S.TASK_UNKNOWN in states and S.TASK_RUNNING not in states:
                        outcome[tid] = S.TASK_UNKNOWN
                    return tid in outcome

                seen = [(S.Name(s.state), s.message) for s in c.history.get(tid, [])]
                await wait_async(settled, 60, f"{tid} to settle (saw {seen})")
            running = [t for t, s in outcome.items() if s == S.TASK_RUNNING]
            unknown = [t for t, s in outcome.items() if s == S.TASK_UNKNOWN]
            print(f"launched {len(launched)}: {len(running)} running, "
                  f"{len(launched) - len(running) - len(unknown)} finished, "
                  f"{len(unknown)} never started ({unknown})")
            assert len(unknown) <= 3  # at most one per failover
            # (A task just started may be between its sh and its sleep: wait.)
            await asyncio.to_thread(wait_for, lambda: len(processes_with(long_sleep)) ==
                                    len(running), DEADLINE, 0.05, "one process per RUNNING task")
    run(body)


class LeaderHistory:
    """Polls every master's GetLeader in the background: who said it leads, when."""

    def __init__(self, ha: HA) -> None:
        import threading

        self.ha = ha
        self.samples: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeaderHistory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            leaders = [name for name, address in list(self.ha.masters.items())
                       if says_it_leads(address, timeout=0.3)]
            self.samples.append((time.monotonic(), leaders))
            self._stop.wait(0.05)

    def overlaps(self) -> list[tuple[float, list[str]]]:
        return [s for s in self.samples if len(s[1]) > 1]


def test_paused_leader_is_fenced_and_steps_down(ha: HA) -> None:
    ha.start_masters(3)
    old, _ = wait_for(ha.leader, DEADLINE, what="a leader")
    ha.start_agent("a1", resources="cpus:2;mem:1024;disk:1024")
    wait_for(lambda: len(ha.agents()) == 1, DEADLINE, what="the agent")
    with LeaderHistory(ha) as history:
        ha.send(old, signal.SIGSTOP)
        new, _ = wait_for(lambda: (lead := ha.leader()) and lead[0] != old and lead, DEADLINE,
                          what="another master to take over")
        ha.send(old, signal.SIGCONT)
        # The old leader finds its lease gone and steps down; it never leads again
        # beside the new one (the election proves it; fenced writes back it up).
        wait_for(lambda: ha.leader() == (new, ha.masters[new]), DEADLINE,
                 what="one leader again")
        wait_for(lambda: "leadership lost" in (ha.work / f"{old}.log").read_text()
                 or "restarting as a standby" in (ha.work / f"{old}.log").read_text(),
                 DEADLINE, what="the old leader to step down")
        wait_for(lambda: any(a.state == operator_pb2.AGENT_ACTIVE for a in ha.agents()),
                 DEADLINE, what="the agent under the new leader")
    assert history.overlaps() == []
    assert any(new in leaders for _, leaders in history.samples)


def test_etcd_down_stops_leading_and_the_cluster_resumes(ha: HA) -> None:
    ha.start_masters(3)
    wait_for(ha.leader, DEADLINE, what="a leader")
    ha.start_agent("a1", resources="cpus:2;mem:1024;disk:1024")
    wait_for(lambda: len(ha.agents()) == 1, DEADLINE, what="the agent")
    ha.etcd.pause()
    try:
        started = time.monotonic()
        # No master may go on leading past its lease (TTL 2 s).
        wait_for(lambda: ha.leader() is None, 10, what="every master to stop leading")
        print(f"stopped leading {time.monotonic() - started:.2f} s after etcd went away")
    finally:
        ha.etcd.resume()
    wait_for(ha.leader, DEADLINE, what="a leader once etcd is back")
    wait_for(lambda: any(a.state == operator_pb2.AGENT_ACTIVE for a in ha.agents()), DEADLINE,
             what="the agent to re-register")

    async def body() -> None:
        async with Client(ha.master, "after-etcd") as c:
            offer = await c.offer(Resources({"cpus": 0.1, "mem": 16}))
            await c.fw.launch([offer.id], [task("resumed", 0.1, 16, "true")])
            await c.until("resumed", S.TASK_FINISHED)
    run(body)


def test_agents_are_told_which_master_would_lead_next(ha: HA) -> None:
    """The leader's Registered names every master in the election's order; when
    the leader's host is lost, the next of them is the one that takes over (an
    agent that lost its leader dials that one first, common/leader.py)."""
    from juggler.v1 import agent_pb2, agent_pb2_grpc

    ha.start_masters(3)
    name, address = wait_for(ha.leader, DEADLINE, what="a leader")
    hello = agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
        agent=common_pb2.AgentInfo(hostname="probe", resources=Resources(
            {"cpus": 1, "mem": 64}).to_proto())))

    def succession() -> list[str] | None:
        with servers.sync_channel(address) as ch:
            try:
                for msg in agent_pb2_grpc.AgentChannelStub(ch).Connect(iter([hello]),
                                                                        timeout=10):
                    if msg.HasField("registered"):
                        masters = list(msg.registered.masters)
                        # Every standby's key must be seen before the order means anything.
                        return masters if len(masters) == 3 else None
            except grpc.RpcError:  # slow to answer: ask again
                return None
        return None

    masters = wait_for(succession, DEADLINE, what="the leader to name all three masters")
    assert masters[0] == address and sorted(masters) == sorted(ha.masters.values())

    told: list[str] = []

    async def subscribe() -> None:  # frameworks are told the same order
        from juggler.sdk import Framework

        fw = Framework(ha.master, common_pb2.FrameworkInfo(name="succession", user="root"))
        try:
            told.extend((await fw.subscribe()).masters)
        finally:
            await fw.close()
    run(subscribe)
    assert told == masters
    ha.lose_host(name)
    _, new = wait_for(lambda: (lead := ha.leader()) and lead[1] != address and lead, DEADLINE,
                      what="a new leader")
    assert new == masters[1]


def log_events(path: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of a daemon's log whose event is `event`."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("event") == event:
                found.append(entry)
    return found


STANDING_BY = "standing by with the master that would lead next"
OVER_STANDBY = "re-registering over the stream opened ahead of the failover"


def test_an_agent_reregisters_over_the_stream_it_opened_ahead_of_the_failover(ha: HA) -> None:
    """Once registered, an agent opens a second stream to the master that would
    lead next (agent/standby_stream.py). When the leader dies the agent sends its
    re-registration over that stream, and the new leader serves it: no connection
    or call to set up while every agent comes back at once."""
    ha.start_masters(3)
    name, address = wait_for(ha.leader, DEADLINE, what="a leader")
    ha.start_agent("a1", "--standby-delay", "0.3")
    log = ha.work / "a1.log"
    standing = wait_for(lambda: log_events(log, STANDING_BY), DEADLINE,
                        what="the agent to stand by with the next master")
    successor = standing[-1]["master"]
    assert standing[-1]["leader"] == address and successor != address
    ha.procs[name].kill()
    ha.procs[name].wait(DEADLINE)
    _, new = wait_for(lambda: (lead := ha.leader()) and lead[1] != address and lead, DEADLINE,
                      what="a new leader")
    assert new == successor
    over = wait_for(lambda: log_events(log, OVER_STANDBY), DEADLINE,
                    what="the agent to re-register over its standby stream")
    assert (over[-1]["master"], over[-1]["lost"]) == (successor, address)
    wait_for(lambda: any(a.info.hostname == "a1" and a.state == operator_pb2.AGENT_ACTIVE
                         for a in ha.agents()), DEADLINE,
             what="the agent active at the new leader")
    # And it stands by again, now for the new leader.
    wait_for(lambda: any(e["leader"] == new for e in log_events(log, STANDING_BY)), DEADLINE,
             what="the agent to stand by for the new leader")


def test_a_stream_standing_by_for_a_live_leader_is_sent_back_to_it(ha: HA) -> None:
    """A standby master holds a stream opened ahead of a failover (counted in
    juggler_master_standby_streams). Its first message comes when the agent lost
    its leader; if this standby still reaches that leader (the agent's own
    connection broke, not the leader), it is refused naming the leader."""
    from juggler.v1 import agent_pb2, agent_pb2_grpc

    ha.start_masters(3, "--metrics-port", "0")
    name, address = wait_for(ha.leader, DEADLINE, what="a leader")
    other = next(n for n in ha.masters if n != name)
    started = log_events(ha.work / f"{other}.log", "master started")
    metrics = secure.url(f"127.0.0.1:{started[-1]['metrics_port']}/metrics")

    def standing_by() -> float:
        with urllib.request.urlopen(metrics, timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("juggler_master_standby_streams "):
                    return float(line.split()[1])
        raise AssertionError("no juggler_master_standby_streams in /metrics")

    release = threading.Event()
    hello = agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
        agent=common_pb2.AgentInfo(hostname="probe", resources=Resources(
            {"cpus": 1, "mem": 64}).to_proto())))

    def requests() -> Iterator[agent_pb2.AgentMessage]:
        release.wait(2 * DEADLINE)
        yield hello

    with servers.sync_channel(ha.masters[other]) as ch:
        call = agent_pb2_grpc.AgentChannelStub(ch).Connect(
            requests(), metadata=(("juggler-standby-for", address),), timeout=2 * DEADLINE)
        wait_for(lambda: standing_by() == 1, DEADLINE, what="the standby to hold the stream")
        release.set()
        with pytest.raises(grpc.RpcError) as refused:
            for _ in call:
                pass
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert ("juggler-leader", address) in (refused.value.trailing_metadata() or ())  # type: ignore[attr-defined]
    assert standing_by() == 0


def test_juggler_up_with_three_masters_survives_the_leaders_death(tmp_path: Path) -> None:
    """`juggler up --masters 3` (its own etcd): kill -9 the leading master, and
    `juggler run` works again under a new leader; `up` starts the dead one again."""
    import subprocess

    with three_masters_up(tmp_path) as cluster:
        env, juggler, addresses = cluster.env, cluster.juggler, cluster.addresses

        def run_echo(word: str) -> bool:
            r = subprocess.run([*juggler, "run", "--", "echo", word], env=env,
                               capture_output=True, text=True, timeout=60)
            print(f"juggler run -- echo {word}: exit {r.returncode}\n{r.stdout}{r.stderr}")
            return r.returncode == 0 and word in r.stdout

        assert run_echo("before")

        def leader() -> str | None:
            return next((a for a in addresses if says_it_leads(a)), None)

        old = wait_for(leader, DEADLINE, what="a leader")
        os.kill(cluster.master_pid(old), signal.SIGKILL)
        wait_for(lambda: (lead := leader()) is not None and lead != old, DEADLINE,
                 what="a new leader")
        assert run_echo("after")
        assert cluster.up.poll() is None, "juggler up stopped when one master died"

        # The dead master is back, as a standby.
        wait_for(lambda: says_it_leads(old) is False, DEADLINE,
                 what="the killed master to come back as a standby")
