"""Failover: kill -9 the leading master again and again; how soon is the cluster whole again?

    python benchmarks/failover.py [--quick] [--failovers N] [--agents N] [--big-agents N]

Starts a throw-away etcd (tests/etcd_server.py) and three real masters on it (lease TTL 2 s,
`--agent-reregister-timeout 60`), simulated agents that follow the leader
(benchmarks/sim_agents.py with every master's address: a standby's refusal names the
leader; other losses back off with jitter; agents re-register with their id and tasks,
over the stream each opened to the next master ahead of time, agent/standby_stream.py) and
one framework (juggler.sdk.Framework given the three addresses; it re-subscribes by itself)
running a few tasks on every agent. Then, N times: kill -9 the leader and measure

  (a) kill → a new leader accepts calls (Operator.GetTasks, polled on every live master,
      answers OK on one);
  (b) kill → every agent re-registered (Operator.GetAgents on the new leader shows all of
      them ACTIVE) and the framework re-subscribed (its new `subscribed` event arrived);

and restart the killed master at its address, as a standby, before the next kill. Before
each kill it waits until every agent has its stream to the next master open, as in a
cluster that has run for a while (agents open it 5 to 15 s after registering). A master
that dies has its election lease revoked at once by its lease reaper (store/lease_reaper.py);
so --host-losses more rounds (default 3) kill the leader together with its reaper, as when
its whole host is lost, and the lease must expire (TTL 2 s plus etcd's 0.5 s sweep). Then one
more failover with --big-agents agents in all, for (b). Default 10 failovers with 100 agents,
then 10,000 agents; --quick: 3 failovers, then 1,000 agents. Targets: (a) ≤ 2 s p50,
(b) ≤ 5 s with 10,000 agents (anchors: Mesos elects in about 10 s and re-registers 10,000
agents in about 4.5 s). Masters, etcd, simulator and framework share this host's CPUs.

A table per failover, then p50/max; the last line is one JSON object:
{"failovers": n, "new_leader_seconds": {"p50": x, "max": x},
 "recovered_seconds": {"p50": x, "max": x}, "recovered_seconds_10k_agents": x,
 "host_lost": {"failovers": n, "new_leader_seconds": {...}, "recovered_seconds": {...}}}

--py-spy DIR records every standby with py-spy during the big failover (one file per
master in DIR; the one that took over shows the takeover and the re-registrations).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests.etcd_server, when run as benchmarks/failover.py

from master_throughput import (  # noqa: E402
    Abort,
    Sim,
    cpu_seconds,
    free_port,
    spawn,
    stop_process,
)

from juggler.common.resources import Resources  # noqa: E402
from juggler.sdk import Framework, FrameworkError  # noqa: E402
from juggler.testing.etcd_server import EtcdNotInstalled, etcd_server  # noqa: E402
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc  # noqa: E402

LEASE_TTL = 2
REREGISTER_TIMEOUT = 60
AGENT_RESOURCES = "cpus:8;mem:32768"
TASK = Resources({"cpus": 0.1, "mem": 32})
REFUSE_SECONDS = 3600.0
POLL = 0.02
NEW_LEADER_DEADLINE = 30.0
RECOVER_DEADLINE = 120.0
STALL_SECONDS = 60.0
# Channels to masters that die and come back at the same address: retry it soon.
CHANNEL_OPTIONS = [("grpc.use_local_subchannel_pool", 1),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500),
                   ("grpc.max_receive_message_length", 256 * 1024 * 1024)]


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the masters ---------------------------------------------------------------------------------
class Masters:
    """Three `juggler master` processes on one etcd, each at a fixed address."""

    def __init__(self, etcd: str, tmp: Path, n: int = 3) -> None:
        self.etcd = etcd
        self.tmp = tmp
        self.addresses = {f"m{i + 1}": f"127.0.0.1:{free_port()}" for i in range(n)}
        self.procs: dict[str, subprocess.Popen] = {}  # type: ignore[type-arg]
        self.stubs: dict[str, operator_pb2_grpc.OperatorStub] = {}
        self._channels: dict[str, grpc.aio.Channel] = {}

    @property
    def spec(self) -> str:
        return ",".join(self.addresses.values())

    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    async def start(self, name: str) -> None:
        port = self.addresses[name].rsplit(":", 1)[1]
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        self.procs[name] = spawn(
            ["-m", "juggler.cli.main", "master", "--host", "127.0.0.1", "--port", port,
             "--metrics-port", "-1", "--etcd", self.etcd, "--etcd-prefix", "/bench/",
             "--lease-ttl", str(LEASE_TTL), "--agent-reregister-timeout", str(REREGISTER_TIMEOUT),
             "--work-dir", str(self.tmp / name)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        old = self._channels.pop(name, None)
        if old is not None:
            await old.close()
        self._channels[name] = ch = grpc.aio.insecure_channel(self.addresses[name],
                                                              options=CHANNEL_OPTIONS)
        self.stubs[name] = operator_pb2_grpc.OperatorStub(ch)

    async def wait_serving(self, name: str) -> None:
        """Until the master answers GetLeader and knows who leads (it has joined the election)."""
        deadline = time.monotonic() + STALL_SECONDS
        while True:
            self.check(name)
            got = await self.get_leader(name)
            if got is not None and got.address:
                return
            if time.monotonic() > deadline:
                raise Abort(f"master {name} not serving after {STALL_SECONDS:.0f} s "
                            f"(see {self.tmp / (name + '.log')})")
            await asyncio.sleep(0.05)

    def check(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is not None:
            raise Abort(f"master {name} exited with status {p.returncode} "
                        f"(see {self.tmp / (name + '.log')})")

    async def get_leader(self, name: str) -> operator_pb2.GetLeaderResponse | None:
        try:
            return await self.stubs[name].GetLeader(operator_pb2.GetLeaderRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return None

    async def leader(self) -> str:
        """The one master that says it leads (waits for one; two is an error)."""
        deadline = time.monotonic() + NEW_LEADER_DEADLINE
        while True:
            names = self.live()
            answers = await asyncio.gather(*(self.get_leader(n) for n in names))
            leaders = [n for n, a in zip(names, answers, strict=True) if a and a.is_leader]
            if len(leaders) > 1:
                raise Abort(f"two masters say they lead: {leaders}")
            if leaders:
                return leaders[0]
            if time.monotonic() > deadline:
                raise Abort(f"no leader after {NEW_LEADER_DEADLINE:.0f} s")
            await asyncio.sleep(0.05)

    async def first_to_serve(self, names: list[str]) -> tuple[str, float]:
        """Poll GetTasks on each of `names`; the first that answers OK, and when."""
        async def poll(name: str) -> tuple[str, float]:
            while True:
                try:
                    await self.stubs[name].GetTasks(operator_pb2.GetTasksRequest(), timeout=1)
                    return name, time.monotonic()
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(POLL)

        polls = [asyncio.create_task(poll(n)) for n in names]
        try:
            done, _ = await asyncio.wait(polls, timeout=NEW_LEADER_DEADLINE,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in polls:
                p.cancel()
        if not done:
            raise Abort(f"no master accepted calls within {NEW_LEADER_DEADLINE:.0f} s of the kill")
        return min((t.result() for t in done), key=lambda r: r[1])

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()


# -- the framework -------------------------------------------------------------------------------
class Driver:
    """The framework: puts `quota` small tasks on every agent it is first offered, declines
    everything else, acknowledges every update, and notes each re-subscription."""

    def __init__(self, fw: Framework, quota: int) -> None:
        self.fw = fw
        self.quota = quota
        self.planned: dict[str, int] = {}  # agent id -> tasks launched there
        self.launched = 0
        self.running: set[str] = set()
        self.resubscribed = 0
        self.resubscribed_at = 0.0
        self.call_errors = 0
        self.fatal = ""
        self._calls = asyncio.Semaphore(256)
        self._pending: set[asyncio.Task[None]] = set()
        self._seq = 0

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def run(self) -> None:
        try:
            async for event in self.fw.events():
                kind = event.WhichOneof("event")
                if kind == "subscribed":
                    self.resubscribed += 1
                    self.resubscribed_at = time.monotonic()
                elif kind == "offers":
                    self._on_offers(event.offers.offers)
                elif kind == "update":
                    status = event.update.status
                    if status.state == common_pb2.TASK_RUNNING:
                        self.running.add(status.task_id)
                    self._spawn(self._call(self.fw.acknowledge(status)))
                elif kind == "error":
                    self.fatal = f"the master dropped the framework: {event.error.message}"
                    return
        except FrameworkError as e:
            self.fatal = f"the subscription broke for good: {e}"

    def _on_offers(self, offers: Any) -> None:
        declined: list[str] = []
        for offer in offers:
            if offer.agent_id in self.planned:
                declined.append(offer.id)
                continue
            self.planned[offer.agent_id] = self.quota
            tasks = []
            for _ in range(self.quota):
                self._seq += 1
                tasks.append(common_pb2.TaskInfo(
                    name="sleep", task_id=f"t{self._seq:06d}", agent_id=offer.agent_id,
                    resources=TASK.to_proto(),
                    command=common_pb2.CommandInfo(argv=["sleep", "infinity"])))
            self.launched += len(tasks)
            self._spawn(self._call(self.fw.launch([offer.id], tasks,
                                                  refuse_seconds=REFUSE_SECONDS)))
        if declined:
            self._spawn(self._call(self.fw.decline(declined, refuse_seconds=REFUSE_SECONDS)))

    async def _call(self, coro: Any) -> None:
        """Calls may fail around a failover (a dead leader, an old stream id): count them."""
        async with self._calls:
            try:
                await coro
            except FrameworkError:
                self.call_errors += 1

    async def close(self) -> None:
        for t in list(self._pending):
            t.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        await self.fw.close()


# -- one failover --------------------------------------------------------------------------------
@dataclass
class Round:
    number: str
    agents: int
    killed: str
    leader: str
    new_leader: float  # (a)
    agents_back: float
    framework_back: float
    tasks: int
    cpu: dict[str, float]  # CPU seconds each process spent from the kill to recovery
    rss: dict[str, float]  # MiB each master held just before the kill

    @property
    def recovered(self) -> float:  # (b)
        return max(self.agents_back, self.framework_back)


class Cluster:
    def __init__(self, masters: Masters, driver: Driver, sims: list[Sim], etcd_pid: int) -> None:
        self.etcd_pid = etcd_pid
        self.masters = masters
        self.driver = driver
        self.sims = sims

    @property
    def agents(self) -> int:
        return sum(s.agents for s in self.sims)  # type: ignore[attr-defined]

    def sum(self, key: str) -> int:
        return sum(int(s.report.get(key, 0)) for s in self.sims)

    def alive(self) -> None:
        for s in self.sims:
            if s.proc.poll() is not None:
                raise Abort(f"a simulator exited with status {s.proc.returncode}")
        if self.driver.fatal:
            raise Abort(self.driver.fatal)

    async def wait(self, what: str, count: Any, target: int) -> None:
        """Until count() >= target; Abort after STALL_SECONDS without progress."""
        start = last_change = last_note = time.monotonic()
        last = -1
        while (n := count()) < target:
            self.alive()
            now = time.monotonic()
            if n != last:
                last, last_change = n, now
            elif now - last_change > STALL_SECONDS:
                raise Abort(f"no progress for {STALL_SECONDS:.0f} s while {what}: "
                            f"{n:,} of {target:,}")
            if now - last_note > 10:
                last_note = now
                note(f"  ... {what}: {n:,} of {target:,} after {now - start:.0f} s")
            await asyncio.sleep(0.05)

    async def all_active(self, name: str, total: int) -> bool:
        try:
            got = await self.masters.stubs[name].GetAgents(operator_pb2.GetAgentsRequest(),
                                                           timeout=10)
        except grpc.aio.AioRpcError:
            return False
        return (len(got.agents) == total
                and all(a.state == operator_pb2.AGENT_ACTIVE for a in got.agents))

    async def failover(self, number: str, profile: Path | None = None,
                       lose_host: bool = False) -> Round:
        m = self.masters
        # Once registered, every agent opens a stream to the master that would lead
        # next (agent/standby_stream.py): in a cluster that has run for a while,
        # all of them have one when the leader dies.
        await self.wait("agents stand by with the next master",
                        lambda: self.sum("standby"), self.agents)
        killed = await m.leader()
        rss = {n: rss_mib(m.procs[n].pid) for n in m.live()}
        reaper = lease_reaper_of(m.procs[killed].pid) if lose_host else None
        total = self.agents
        registered_before = self.sum("registered")
        subs_before = self.driver.resubscribed
        spies = start_py_spy(m, [n for n in m.live() if n != killed], profile, number)
        if spies:
            await asyncio.sleep(1.0)  # let py-spy attach
        pids = {**{n: m.procs[n].pid for n in m.live() if n != killed}, "etcd": self.etcd_pid,
                **{f"sim{i + 1}": s.proc.pid for i, s in enumerate(self.sims)}}
        cpu_before = {n: cpu_seconds(pid) for n, pid in pids.items()}
        cpu_before["framework"] = sum(os.times()[:2])
        try:
            started = time.monotonic()
            if reaper is not None:
                os.kill(reaper, signal.SIGKILL)  # first: else it sees its master die
            m.procs[killed].kill()
            m.procs[killed].wait()
            # (a) a new leader accepts calls.
            leader, served = await m.first_to_serve([n for n in m.live() if n != killed])
            # (b) every agent back (the simulators' own count first: it costs the master
            # nothing; then GetAgents confirms) and the framework re-subscribed.
            deadline = started + RECOVER_DEADLINE
            agents_back = 0.0
            while True:
                self.alive()
                now = time.monotonic()
                if now > deadline:
                    raise Abort(f"failover {number}: not recovered after {RECOVER_DEADLINE:.0f} s "
                                f"({self.sum('registered') - registered_before:,} of {total:,} "
                                f"agents re-registered, framework re-subscribed: "
                                f"{self.driver.resubscribed > subs_before})")
                if not agents_back and self.sum("registered") - registered_before >= total \
                        and await self.all_active(leader, total):
                    agents_back = time.monotonic()
                if agents_back and self.driver.resubscribed > subs_before:
                    break
                await asyncio.sleep(POLL)
        finally:
            stop_py_spy(spies)
        cpu = {n: cpu_seconds(pid) - cpu_before[n] for n, pid in pids.items()}
        cpu["framework"] = sum(os.times()[:2]) - cpu_before["framework"]
        framework_back = self.driver.resubscribed_at
        tasks = await m.stubs[leader].GetTasks(operator_pb2.GetTasksRequest(), timeout=30)
        # Back as a standby at its old address before the next kill.
        await m.start(killed)
        await m.wait_serving(killed)
        return Round(number, total, killed, leader, served - started, agents_back - started,
                     framework_back - started, len(tasks.tasks), cpu, rss)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def lease_reaper_of(pid: int) -> int:
    """The pid of a master's lease reaper (its child running juggler.store.lease_reaper)."""
    for thread in Path(f"/proc/{pid}/task").iterdir():
        for child in (thread / "children").read_text().split():
            with contextlib.suppress(OSError):
                if b"lease_reaper" in Path(f"/proc/{child}/cmdline").read_bytes():
                    return int(child)
    raise Abort(f"master {pid} has no lease reaper")


def start_py_spy(m: Masters, names: list[str], directory: Path | None,
                 number: str) -> list[subprocess.Popen]:  # type: ignore[type-arg]
    if directory is None:
        return []
    exe = shutil.which("py-spy")
    if exe is None:
        raise Abort("--py-spy: py-spy is not installed (pip install py-spy)")
    directory.mkdir(parents=True, exist_ok=True)
    spies = [subprocess.Popen([exe, "record", "--pid", str(m.procs[n].pid), "--rate", "200",
                               "--format", "raw", "--nonblocking",
                               "-o", str(directory / f"failover-{number}-{n}.txt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for n in names]
    return spies


def stop_py_spy(spies: list[subprocess.Popen]) -> None:  # type: ignore[type-arg]
    for p in spies:
        stop_process(p, signal.SIGINT, 10.0)


# -- the run -------------------------------------------------------------------------------------
def start_sim(masters: Masters, agents: int, first: int, tmp: Path, procs: list[Any],
              backoff_cap: float) -> Sim:
    log = open(tmp / f"sim-{first}.log", "ab")  # noqa: SIM115
    sim = Sim(spawn([str(HERE / "sim_agents.py"), "--master", masters.spec, "--follow",
                     "--agents", str(agents), "--first-index", str(first),
                     "--resources", AGENT_RESOURCES, "--report-interval", str(POLL),
                     "--backoff-cap", str(backoff_cap)],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True))
    log.close()
    sim.agents = agents  # type: ignore[attr-defined]
    procs.append(sim.proc)
    return sim


async def bench(args: argparse.Namespace, etcd: str, etcd_pid: int, tmp: Path,
                procs: list[Any]) -> tuple[list[Round], list[Round], Round]:
    m = Masters(etcd, tmp)
    try:
        procs.append(m.procs)
        for name in m.addresses:
            await m.start(name)
        for name in m.addresses:
            await m.wait_serving(name)
        note(f"masters {m.spec}: {await m.leader()} leads (logs in {tmp})")

        sims = [start_sim(m, args.agents, 0, tmp, procs, args.agent_backoff_cap)]
        fw = Framework(m.spec, common_pb2.FrameworkInfo(name="failover-bench", user="bench",
                                                        failover_timeout=REFUSE_SECONDS),
                       reconnect_timeout=RECOVER_DEADLINE)
        driver = Driver(fw, args.tasks_per_agent)
        cluster = Cluster(m, driver, sims, etcd_pid)
        await cluster.wait("agents register", lambda: cluster.sum("connected"), args.agents)
        await fw.subscribe(timeout=30)
        reader = asyncio.create_task(driver.run())
        try:
            await cluster.wait("tasks reach RUNNING", lambda: len(driver.running),
                               args.agents * args.tasks_per_agent)
            note(f"{args.agents} agents, {len(driver.running)} tasks RUNNING")
            rounds = []
            print(HEADER)
            for i in range(args.failovers):
                r = await cluster.failover(str(i + 1))
                print(row(r), flush=True)
                rounds.append(r)
            host_rounds = []
            for i in range(args.host_losses):
                r = await cluster.failover(f"h{i + 1}", lose_host=True)
                print(row(r), flush=True)
                host_rounds.append(r)

            big = args.big_agents - args.agents
            driver.quota = args.big_tasks_per_agent
            note(f"adding {big:,} agents ({args.big_agents:,} in all) with "
                 f"{args.big_tasks_per_agent} task(s) each")
            cluster.sims.append(start_sim(m, big, args.agents, tmp, procs,
                                          args.agent_backoff_cap))
            await cluster.wait("agents register", lambda: cluster.sum("connected"),
                               args.big_agents)
            want = args.agents * args.tasks_per_agent + big * args.big_tasks_per_agent
            await cluster.wait("tasks reach RUNNING", lambda: len(driver.running), want)
            await cluster.wait("the framework's calls complete",
                               lambda: -len(driver._pending), 0)
            await asyncio.sleep(1.0)
            r = await cluster.failover("big", Path(args.py_spy) if args.py_spy else None)
            print(row(r), flush=True)
            print("CPU seconds from the kill to recovery: " + ", ".join(
                f"{n} ({'leader' if n == r.leader else 'standby'}) {c:.2f}"
                if n in m.addresses else f"{n} {c:.2f}" for n, c in r.cpu.items()))
            print("MiB resident just before the kill: " + ", ".join(
                f"{n} ({'killed leader' if n == r.killed else 'standby'}) {v:.0f}"
                for n, v in r.rss.items()) + " (standbys hold the agents' standby streams)")
            return rounds, host_rounds, r
        finally:
            reader.cancel()
            await driver.close()
    finally:
        await m.close()


HEADER = (f"{'#':>4} {'agents':>7} {'killed':>6} {'new':>4} {'(a) leader s':>12} "
          f"{'agents back s':>13} {'framework s':>11} {'(b) recovered s':>15} {'tasks':>7}")


def row(r: Round) -> str:
    return (f"{r.number:>4} {r.agents:>7,} {r.killed:>6} {r.leader:>4} {r.new_leader:>12.2f} "
            f"{r.agents_back:>13.2f} {r.framework_back:>11.2f} {r.recovered:>15.2f} "
            f"{r.tasks:>7,}")


def figures(rounds: list[Round]) -> dict[str, Any]:
    a = [r.new_leader for r in rounds]
    b = [r.recovered for r in rounds]
    return {"failovers": len(rounds),
            "new_leader_seconds": {"p50": round(statistics.median(a), 3),
                                   "max": round(max(a), 3)},
            "recovered_seconds": {"p50": round(statistics.median(b), 3), "max": round(max(b), 3)}}


def summary(rounds: list[Round], host_rounds: list[Round], big: Round) -> dict[str, Any]:
    for what, group in (("master killed", rounds), ("host lost", host_rounds)):
        if not group:
            continue
        f = figures(group)
        a, b = f["new_leader_seconds"], f["recovered_seconds"]
        print(f"{len(group)} failovers ({what}) with {group[0].agents:,} agents:  "
              f"(a) new leader p50 {a['p50']:.2f} s, max {a['max']:.2f} s"
              f";  (b) recovered p50 {b['p50']:.2f} s, max {b['max']:.2f} s")
    print("target: (a) ≤ 2 s p50")
    print(f"with {big.agents:,} agents: (a) {big.new_leader:.2f} s, (b) {big.recovered:.2f} s "
          f"(target ≤ 5 s at 10,000 agents)")
    result = figures(rounds)
    result["recovered_seconds_10k_agents"] = round(big.recovered, 3)
    if host_rounds:
        result["host_lost"] = figures(host_rounds)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 failovers, then 1,000 agents")
    p.add_argument("--failovers", type=int, default=None, help="default 10 (--quick: 3)")
    p.add_argument("--host-losses", type=int, default=None,
                   help="rounds killing the leader with its lease reaper (default 3; --quick: 1)")
    p.add_argument("--agents", type=int, default=100, help="agents in the N failovers")
    p.add_argument("--tasks-per-agent", type=int, default=2)
    p.add_argument("--big-agents", type=int, default=None,
                   help="agents in all for the last failover (default 10,000; --quick: 1,000)")
    p.add_argument("--big-tasks-per-agent", type=int, default=1)
    p.add_argument("--agent-backoff-cap", type=float, default=5.0,
                   help="the simulated agents' reconnect backoff cap (default 5 s, as "
                        "agent/server.py); a what-if for the agents' policy")
    p.add_argument("--py-spy", metavar="DIR", default="",
                   help="record the standbys with py-spy during the big failover")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args()
    args.failovers = args.failovers or (3 if args.quick else 10)
    if args.host_losses is None:
        args.host_losses = 1 if args.quick else 3
    args.big_agents = args.big_agents or (1000 if args.quick else 10000)
    if args.big_agents <= args.agents or args.agents < 1 or args.failovers < 1:
        p.error("need 1 <= --agents < --big-agents and --failovers >= 1")

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    tmp = Path(tempfile.mkdtemp(prefix="juggler-failover-"))
    procs: list[Any] = []  # simulators, and the masters' dict (restarted ones replace entries)
    rc = 0
    try:
        (tmp / "etcd").mkdir()
        with etcd_server(tmp / "etcd") as e:
            try:
                rounds, host_rounds, big = asyncio.run(bench(args, e.endpoint, e.process.pid,
                                                              tmp, procs))
            finally:
                with contextlib.suppress(KeyboardInterrupt):
                    signal.signal(signal.SIGINT, signal.SIG_IGN)
                    cleanup(procs)
        print(json.dumps(summary(rounds, host_rounds, big)))
    except EtcdNotInstalled as e:
        print(f"failover: {e}", file=sys.stderr)
        rc = 1
    except Abort as e:
        print(f"failover: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("failover: interrupted", file=sys.stderr)
        rc = 130
    finally:
        if rc != 0 or args.keep:
            print(f"logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return rc


def cleanup(procs: list[Any]) -> None:
    """Masters first (SIGTERM, then SIGKILL after 3 s), then the simulators."""
    masters = [p for d in procs if isinstance(d, dict) for p in d.values()]
    sims = [p for p in procs if not isinstance(p, dict)]
    for p in masters:
        with contextlib.suppress(ProcessLookupError):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
    for p in masters:
        stop_process(p, signal.SIGTERM, 3.0)
    for p in sims:
        stop_process(p, signal.SIGTERM, 5.0)


if __name__ == "__main__":
    sys.exit(main())
