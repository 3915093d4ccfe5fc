"""Simulated agents: many clients of the real AgentChannel.Connect protocol in one process.

Each simulated agent keeps one Connect stream open to the master, as agent/server.py does:
it sends `register` (no id, so the master assigns one), answers every `heartbeat` ping, and
on `run_task` at once sends a TASK_RUNNING `status_update` (source AGENT, a fresh uuid). It
launches nothing and retries nothing; an `acknowledgement` needs no answer. A task stays
RUNNING, unless its command is `sleep N` with N a number of seconds: then N seconds after
RUNNING it sends TASK_FINISHED (source EXECUTOR, a fresh uuid) and forgets the task, as if the
command had exited 0 (paced runs of master_throughput.py keep capacity free that way; a
single --master only).
On `kill_task` it sends TASK_KILLED (source AGENT, a fresh uuid) and forgets the
task; a kill of a task whose TASK_KILLED is not acknowledged yet gets no answer (that update
is on its way), a kill of a task it never ran gets TASK_LOST (REASON_TASK_UNKNOWN), as the
real agent answers both (agent/state.py). Streams share a few HTTP/2 connections
(--streams-per-channel).

    python benchmarks/sim_agents.py --master HOST:PORT --agents N [--resources "cpus:8;mem:32768"]

Given several masters (--master H1:P1,H2:P2,...) each simulated agent follows the leader as
agent/server.py `_master_loop` does: a standby's UNAVAILABLE naming the leader (trailing
metadata `juggler-leader`) sends it there at once; any other loss reconnects to the next
master after an exponential backoff with full jitter; once it has an id it comes back with
`reregister`, carrying its id and the tasks it runs (benchmarks/failover.py's helper). As
the agent does, a while after registering it opens a stream to the master that would lead
next and re-registers over it when its leader is lost (agent/standby_stream.py).

Reports on stdout, one JSON object a line: {"registered": n, "running": n, "killed": n,
"finished": n, "errors": n, ...} when
registration completes and then every --report-interval seconds. Exits when stdin closes (its
parent is gone), on SIGTERM or SIGINT; it is benchmarks/master_throughput.py's helper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid
from typing import Any

import grpc

from juggler.agent.standby_stream import standby_delay
from juggler.common import batching, gc_policy, servers, tls
from juggler.common.leader import (
    STANDBY_FOR_KEY,
    LeaderFollower,
    backoff,
    from_standby,
    leader_of,
    parse_masters,
)
from juggler.common.resources import Resources
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2

SIM_VERSION = "0.1.0-sim"
_HEARTBEAT = agent_pb2.AgentMessage(heartbeat=agent_pb2.AgentMessage.Heartbeat())


class Counts:
    def __init__(self) -> None:
        self.registered = 0
        self.running = 0  # RUNNING updates sent
        self.killed = 0  # KILLED updates sent (answers to kill_task)
        self.finished = 0  # FINISHED updates sent (`sleep N` tasks that ended)
        self.acked = 0
        self.errors = 0
        self.last_error = ""
        self.connected = 0  # following agents whose stream is registered now
        self.lost = 0  # following agents' sessions that ended (a failover, a refusal)
        self.standby = 0  # streams open ahead of a failover now


    def report(self) -> dict[str, object]:
        out: dict[str, object] = {"registered": self.registered, "running": self.running,
                                  "killed": self.killed, "finished": self.finished,
                                  "acked": self.acked, "errors": self.errors,
                                  "connected": self.connected, "lost": self.lost,
                                  "standby": self.standby}
        if self.last_error:
            out["last_error"] = self.last_error
        return out


class Kills:
    """What one simulated agent needs to answer kills: the tasks it runs and the
    TASK_KILLED updates not acknowledged yet (by uuid)."""

    def __init__(self) -> None:
        self.running: set[tuple[str, str]] = set()  # (framework id, task id)
        self.unacked: dict[tuple[str, str], bytes] = {}

    def kill(self, kill: agent_pb2.MasterMessage.KillTask, agent_id: str,
             counts: Counts) -> agent_pb2.AgentMessage | None:
        """The answer to a kill_task (None: none is due)."""
        key = (kill.framework_id, kill.task_id)
        if key in self.unacked:
            return None
        if key in self.running:
            self.running.discard(key)
            state, reason, message = (common_pb2.TASK_KILLED, common_pb2.REASON_TASK_KILLED,
                                      "killed (simulated)")
            counts.killed += 1
        else:
            state, reason, message = (common_pb2.TASK_LOST, common_pb2.REASON_TASK_UNKNOWN,
                                      "the agent has no such task")
        uid = uuid.uuid4().bytes
        self.unacked[key] = uid
        return agent_pb2.AgentMessage(status_update=agent_pb2.AgentMessage.StatusUpdate(
            status=common_pb2.TaskStatus(
                task_id=kill.task_id, state=state, reason=reason, message=message,
                source=common_pb2.SOURCE_AGENT, agent_id=agent_id,
                framework_id=kill.framework_id, uuid=uid, timestamp=time.time())))

    def acknowledged(self, ack: agent_pb2.MasterMessage.Acknowledgement) -> None:
        key = (ack.framework_id, ack.task_id)
        if self.unacked.get(key) == ack.uuid:
            del self.unacked[key]


async def sim_agent(index: int, stub: agent_pb2_grpc.AgentChannelStub,
                    resources: list[common_pb2.Resource], counts: Counts) -> None:
    outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
    outbox.put_nowait(agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
        agent=common_pb2.AgentInfo(hostname=f"sim-{index:06d}", resources=resources,
                                   address=f"127.0.0.1:{10000 + index % 50000}"),
        version=SIM_VERSION)))

    async def outgoing():  # type: ignore[no-untyped-def]
        yield await outbox.get()
        while True:  # batched as the real agent's (common/batching.py)
            yield batching.message(batching.drain(outbox, await outbox.get()),
                                   agent_pb2.AgentMessage)

    call = stub.Connect(outgoing())
    agent_id = ""
    kills = Kills()
    try:
        while True:
            got = await call.read()
            if got is grpc.aio.EOF:
                counts.errors += 1
                counts.last_error = f"sim-{index}: the master ended the stream"
                return
            for msg in batching.unpack(got):
                if msg.WhichOneof("message") == "registered":
                    agent_id = msg.registered.agent_id
                if _handle_plain(msg, index, agent_id, outbox, counts, kills):
                    return
    except grpc.aio.AioRpcError as e:
        counts.errors += 1
        counts.last_error = f"sim-{index}: {e.code().name}: {e.details()}"
    finally:
        call.cancel()


def sleep_seconds(task: common_pb2.TaskInfo) -> float | None:
    """N for a task whose command is `sleep N` (N a finite number ≥ 0), else None."""
    argv = task.command.argv
    if len(argv) != 2 or argv[0] != "sleep":
        return None
    try:
        seconds = float(argv[1])
    except ValueError:
        return None
    return seconds if 0 <= seconds < float("inf") else None


def _finish(framework_id: str, task_id: str, agent_id: str,
            outbox: asyncio.Queue[agent_pb2.AgentMessage], counts: Counts, kills: Kills) -> None:
    """A `sleep N` task's command exited 0 (unless it was killed meanwhile)."""
    key = (framework_id, task_id)
    if key not in kills.running:
        return
    kills.running.discard(key)
    counts.finished += 1
    outbox.put_nowait(agent_pb2.AgentMessage(status_update=agent_pb2.AgentMessage.StatusUpdate(
        status=common_pb2.TaskStatus(
            task_id=task_id, state=common_pb2.TASK_FINISHED,
            reason=common_pb2.REASON_COMMAND_EXITED, message="exited 0 (simulated)",
            source=common_pb2.SOURCE_EXECUTOR,
            agent_id=agent_id, framework_id=framework_id, uuid=uuid.uuid4().bytes,
            timestamp=time.time()))))


def _handle_plain(msg: agent_pb2.MasterMessage, index: int, agent_id: str,
                  outbox: asyncio.Queue[agent_pb2.AgentMessage], counts: Counts,
                  kills: Kills) -> bool:
    """One master message to a plain simulated agent; True: the stream must end.
    (Its agent id is set by the caller on `registered`.)"""
    kind = msg.WhichOneof("message")
    if kind == "run_task":
        task = msg.run_task.task
        kills.running.add((msg.run_task.framework.id, task.task_id))
        seconds = sleep_seconds(task)
        if seconds is not None:
            asyncio.get_running_loop().call_later(
                seconds, _finish, msg.run_task.framework.id, task.task_id, agent_id, outbox,
                counts, kills)
        outbox.put_nowait(agent_pb2.AgentMessage(
            status_update=agent_pb2.AgentMessage.StatusUpdate(
                status=common_pb2.TaskStatus(
                    task_id=task.task_id, state=common_pb2.TASK_RUNNING,
                    source=common_pb2.SOURCE_AGENT, agent_id=agent_id,
                    framework_id=msg.run_task.framework.id, uuid=uuid.uuid4().bytes,
                    timestamp=time.time()))))
        counts.running += 1
    elif kind == "acknowledgement":
        counts.acked += 1
        kills.acknowledged(msg.acknowledgement)
    elif kind == "kill_task":
        answer = kills.kill(msg.kill_task, agent_id, counts)
        if answer is not None:
            outbox.put_nowait(answer)
    elif kind == "heartbeat":
        outbox.put_nowait(_HEARTBEAT)
    elif kind == "registered":
        counts.registered += 1
    elif kind == "shutdown":
        counts.errors += 1
        counts.last_error = f"sim-{index}: shutdown: {msg.shutdown.message}"
        return True
    return False


# A gRPC channel retries a dead address with its own backoff (1 s, growing to 2 min): a
# master restarted at that address would stay unreachable for that long. Agents back off
# themselves, so the channel should only fail fast and reconnect soon.
_FOLLOW_OPTIONS = [*servers.OPTIONS, ("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 1000)]


def _channel(address: str, options: list[tuple[str, Any]]) -> grpc.aio.Channel:
    """A channel to a master: mutual TLS with this process's certificate when
    --tls-* were given (tls.current()), else plain text."""
    cfg = tls.current()
    if cfg is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.channel_credentials(cfg), options=options)


class Channels:
    """One channel per master for a group of agents, opened on first use."""

    def __init__(self) -> None:
        self.by_address: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> agent_pb2_grpc.AgentChannelStub:
        ch = self.by_address.get(address)
        if ch is None:
            ch = self.by_address[address] = _channel(address, _FOLLOW_OPTIONS)
        return agent_pb2_grpc.AgentChannelStub(ch)

    async def close(self) -> None:
        for ch in self.by_address.values():
            await ch.close()


class FollowingAgent:
    """A simulated agent that follows the leading master and re-registers with its tasks."""

    def __init__(self, index: int, channels: Channels, masters: list[str],
                 resources: list[common_pb2.Resource], counts: Counts) -> None:
        self.index = index
        self.channels = channels
        self.masters = list(masters)
        self.resources = resources
        self.counts = counts
        self.agent_id = ""
        # (framework id, task id) -> what the agent runs; every task stays RUNNING.
        self.tasks: dict[tuple[str, str], agent_pb2.AgentMessage.RunningTask] = {}
        self.kills = Kills()  # its `running` mirrors the keys of `tasks`
        self.registered = False  # on the current stream
        self.session_address = ""
        # (address, call): the stream opened ahead of a failover to the master that
        # would lead next, as the real agent keeps one (agent/standby_stream.py).
        self.standby: tuple[str, grpc.aio.StreamStreamCall] | None = None
        self.standby_target: tuple[str, str] | None = None  # (that master, the leader)
        self.standby_timer: asyncio.TimerHandle | None = None
        self.backoff_cap = 5.0  # agent/server.py's
        self.follower: LeaderFollower | None = None  # while run() runs

    def _info(self) -> common_pb2.AgentInfo:
        return common_pb2.AgentInfo(id=self.agent_id, hostname=f"sim-{self.index:06d}",
                                    resources=self.resources,
                                    address=f"127.0.0.1:{10000 + self.index % 50000}")

    def _hello(self) -> agent_pb2.AgentMessage:
        if not self.agent_id:
            return agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
                agent=self._info(), version=SIM_VERSION))
        rr = agent_pb2.AgentMessage.Reregister(agent=self._info(), version=SIM_VERSION)
        for (fid, tid), rt in self.tasks.items():
            rr.running.append(rt)
            rr.tasks.append(common_pb2.TaskStatus(task_id=tid, state=common_pb2.TASK_RUNNING,
                                                  framework_id=fid, agent_id=self.agent_id))
        return agent_pb2.AgentMessage(reregister=rr)

    def _stand_by(self, successor: str | None, leader: str) -> None:
        """Open a stream to `successor` after the real agent's delay (standby_delay)."""
        if (successor, leader) == self.standby_target:
            return
        self._drop_standby()
        if successor is not None:
            self.standby_target = (successor, leader)
            self.standby_timer = asyncio.get_running_loop().call_later(
                standby_delay(), self._open_standby)

    def _open_standby(self, attempt: int = 0) -> None:
        self.standby_timer = None
        if self.standby_target is not None:
            successor, leader = self.standby_target
            call = self.channels.stub(successor).Connect(metadata=((STANDBY_FOR_KEY, leader),))
            standby = self.standby = (successor, call)
            self.counts.standby += 1
            call.add_done_callback(lambda _: self._standby_ended(standby, attempt + 1))

    def _standby_ended(self, standby: tuple[str, grpc.aio.StreamStreamCall],
                       attempt: int) -> None:
        """A standby stream ended unused (its master restarted): open it again after a
        backoff, as the real agent does."""
        if self.standby is not standby:
            return  # taken, or dropped
        self.standby = None
        self.counts.standby -= 1
        self.standby_timer = asyncio.get_running_loop().call_later(
            backoff(attempt, base=0.5, cap=10.0), self._open_standby, attempt)

    def _take_standby(self, address: str) -> grpc.aio.StreamStreamCall | None:
        """The standby stream to `address`, now to be used (any other is dropped)."""
        standby = self.standby
        if standby is None or standby[0] != address:
            self._drop_standby()
            return None
        self.standby = None  # kept open: _drop_standby cancels only what is left
        self.counts.standby -= 1
        self._drop_standby()
        return standby[1]

    def _drop_standby(self) -> None:
        self.standby_target = None
        if self.standby_timer is not None:
            self.standby_timer.cancel()
            self.standby_timer = None
        standby, self.standby = self.standby, None
        if standby is not None:
            standby[1].cancel()
            self.counts.standby -= 1

    async def run(self) -> None:
        # The very policy the real agent uses (common/leader.py).
        follower = self.follower = LeaderFollower(self.masters, cap=self.backoff_cap)
        while True:
            address = follower.address
            leader = None
            answered = True
            self.registered = False
            try:
                await self._session(address, follower.metadata(), self._take_standby(address))
            except grpc.aio.AioRpcError as e:
                leader = leader_of(e)
                answered = from_standby(e)
            except Exception as e:
                answered = False
                self.counts.errors += 1
                self.counts.last_error = f"sim-{self.index}: {type(e).__name__}: {e}"
            self.counts.lost += 1
            await asyncio.sleep(follower.ended(time.monotonic(), answered=answered,
                                               leader=leader, registered=self.registered))

    async def _session(self, address: str, metadata: tuple[tuple[str, str], ...] = (),
                       standby: grpc.aio.StreamStreamCall | None = None) -> None:
        """One Connect stream, until it ends or breaks (`metadata`: the leader
        this agent lost, as the real agent sends it): dialled now, or the one
        opened ahead of the failover (`standby`)."""
        # Written with call.write(), not from a request iterator: gRPC would run a
        # task per stream to drain one, and ten thousand of them cost this
        # simulator (which shares the CPUs with the masters) a fifth of its time.
        self.session_address = address
        call = standby if standby is not None else (
            self.channels.stub(address).Connect(metadata=metadata))
        try:
            await call.write(self._hello())
            while True:
                got = await call.read()
                if got is grpc.aio.EOF:
                    return
                out: list[agent_pb2.AgentMessage] = []  # answered in one write
                for msg in batching.unpack(got):
                    self._handle(msg, out)
                if out:
                    await call.write(batching.message(out, agent_pb2.AgentMessage))
        finally:
            if self.registered:
                self.counts.connected -= 1
            call.cancel()

    def _handle(self, msg: agent_pb2.MasterMessage, out: list[agent_pb2.AgentMessage]) -> None:
        kind = msg.WhichOneof("message")
        if kind == "run_task":
            task, framework = msg.run_task.task, msg.run_task.framework
            self.tasks[(framework.id, task.task_id)] = (
                agent_pb2.AgentMessage.RunningTask(task=task, framework=framework))
            self.kills.running.add((framework.id, task.task_id))
            out.append(agent_pb2.AgentMessage(
                status_update=agent_pb2.AgentMessage.StatusUpdate(
                    status=common_pb2.TaskStatus(
                        task_id=task.task_id, state=common_pb2.TASK_RUNNING,
                        source=common_pb2.SOURCE_AGENT, agent_id=self.agent_id,
                        framework_id=framework.id, uuid=uuid.uuid4().bytes,
                        timestamp=time.time()))))
            self.counts.running += 1
        elif kind == "acknowledgement":
            self.counts.acked += 1
            self.kills.acknowledged(msg.acknowledgement)
        elif kind == "kill_task":
            self.tasks.pop((msg.kill_task.framework_id, msg.kill_task.task_id), None)
            answer = self.kills.kill(msg.kill_task, self.agent_id, self.counts)
            if answer is not None:
                out.append(answer)
        elif kind == "heartbeat":
            out.append(_HEARTBEAT)
        elif kind == "registered":
            self.agent_id = msg.registered.agent_id
            if self.follower is not None:
                self.follower.follow_succession(msg.registered.masters)
                self._stand_by(self.follower.successor(), self.session_address)
            if not self.registered:
                self.registered = True
                self.counts.registered += 1
                self.counts.connected += 1
        elif kind == "shutdown":
            # Declared gone: forget the id and tasks, register afresh.
            self.counts.errors += 1
            self.counts.last_error = f"sim-{self.index}: shutdown: {msg.shutdown.message}"
            self.agent_id = ""
            self.tasks.clear()
            self.kills = Kills()


async def run_following(args: argparse.Namespace, masters: list[str]) -> None:
    resources = Resources.parse(args.resources).to_proto()
    counts = Counts()
    groups: list[Channels] = []
    agents = []
    per = max(1, args.streams_per_channel)
    for i in range(args.agents):
        if i % per == 0:
            groups.append(Channels())
        agent = FollowingAgent(i + args.first_index, groups[-1], masters, resources, counts)
        agent.backoff_cap = args.backoff_cap
        agents.append(asyncio.create_task(agent.run()))
    await _serve_reports(args, counts)
    for t in agents:
        t.cancel()
    await asyncio.gather(*agents, return_exceptions=True)
    for g in groups:
        await g.close()


async def _stop_signal() -> asyncio.Event:
    """An event set on SIGINT, SIGTERM or EOF on stdin (the parent holds our
    stdin open; EOF means it is gone)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(Exception):
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            await reader.read()
            stop.set()
        _watchers.add(loop.create_task(watch_stdin()))
    return stop


_watchers: set[asyncio.Task[None]] = set()  # keeps the stdin watcher alive


async def _serve_reports(args: argparse.Namespace, counts: Counts) -> None:
    """Report on stdout until stdin closes, SIGTERM or SIGINT."""
    stop = await _stop_signal()

    async def reporter() -> None:
        while True:
            await asyncio.sleep(args.report_interval)
            print(json.dumps(counts.report()), flush=True)

    rep = asyncio.create_task(reporter())
    await stop.wait()
    rep.cancel()


async def run(args: argparse.Namespace) -> None:
    masters = parse_masters(args.master)
    if len(masters) > 1 or args.follow:
        await run_following(args, masters)
        return
    resources = Resources.parse(args.resources).to_proto()
    counts = Counts()
    channels = []
    agents = []
    per = max(1, args.streams_per_channel)
    for first in range(0, args.agents, per):
        # A local subchannel pool gives each channel its own TCP connection.
        ch = _channel(args.master, [*servers.OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
        channels.append(ch)
        stub = agent_pb2_grpc.AgentChannelStub(ch)
        for i in range(first, min(first + per, args.agents)):
            agents.append(asyncio.create_task(sim_agent(i, stub, resources, counts)))

    stop = await _stop_signal()

    def emit() -> None:
        print(json.dumps(counts.report()), flush=True)

    async def reporter() -> None:
        announced = False
        while True:
            await asyncio.sleep(0.05 if not announced else args.report_interval)
            if not announced and counts.registered < args.agents:
                continue
            announced = True
            emit()

    rep = asyncio.create_task(reporter())
    await stop.wait()
    rep.cancel()
    for t in agents:
        t.cancel()
    await asyncio.gather(*agents, return_exceptions=True)
    for ch in channels:
        await ch.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--master", required=True,
                   help="host:port of the master (or a comma-separated list to follow)")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--resources", default="cpus:8;mem:32768")
    p.add_argument("--streams-per-channel", type=int, default=100)
    p.add_argument("--report-interval", type=float, default=0.5)
    p.add_argument("--follow", action="store_true",
                   help="follow the leader and re-register (implied by several --master)")
    p.add_argument("--backoff-cap", type=float, default=5.0,
                   help="following agents' reconnect backoff cap (default 5 s, as the agent's)")
    p.add_argument("--first-index", type=int, default=0,
                   help="number hostnames from here (several simulators, one cluster)")
    p.add_argument("--tls-ca", default=None, help="CA certificate (mutual TLS to the master)")
    p.add_argument("--tls-cert", default=None, help="the agents' certificate")
    p.add_argument("--tls-key", default=None, help="its key")
    args = p.parse_args()
    tls.configure(tls.from_flags(args.tls_ca, args.tls_cert, args.tls_key))
    gc_policy.tune()  # as the real agent does
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
