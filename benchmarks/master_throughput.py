"""Master throughput and latency: task launches through the real master, with simulated agents.

    python benchmarks/master_throughput.py [--quick] [--agents N] [--tasks N]
        [--rate R[,R...]] [--duration S] [--task-seconds S] [--saturate] [--samples PREFIX]

Starts the real master process (`juggler master`, 0.1 s allocation interval) and, in one
other process, N simulated agents speaking the real AgentChannel.Connect protocol
(benchmarks/sim_agents.py: register, answer pings, report TASK_RUNNING at once for every
run_task). So the master is measured alone, but it shares this host's CPUs with the
simulator, the framework (their CPU use is printed too) and whatever else runs here (the
"others" figure: the machine's busy CPU time less ours, from /proc/stat).

Saturating burst (the default run, or --saturate): one framework (juggler.sdk.Framework) in
this process fills every offer with as many small tasks (cpus 0.1, mem 32) as fit,
acknowledges every update, and stops once --tasks tasks are RUNNING. Figures: launches per
second from the first Accept to the last RUNNING; Accept→RUNNING latency per task (the
Accept call that launched it to its RUNNING update reaching the framework: in a burst this
is mostly queueing); the master's RSS before agents, after they registered and after every
task runs, as bytes per agent and per task. Default 1,000 agents and 20,000 tasks (the
target is ≥ 1,000 launches/s sustained at that size); --quick: 100 agents, 2,000 tasks.
Its framework then disconnects (no failover timeout: the master kills its tasks).

Paced launches (--rate; by default 200, 500 and 1,000/s after the burst, --quick 200/s):
for each rate a fresh framework launches R tasks/s for --duration s (default 30, --quick 5):
it holds its offers, and every 10 ms launches the tasks due by then (R × elapsed) with one
Accept per offer they need (refuse_seconds 0: the rest comes back at the next allocation).
Each task is `sleep --task-seconds` (default 5), which the simulated agents finish then, so
capacity stays free; updates are acknowledged through the SDK (batched per loop turn, as
frameworks do). Figures per rate: achieved rate, launches, Accept→RUNNING p50/p99/max (the
Accept call to the RUNNING update reaching the framework: time waiting for an offer is not
counted; the master's Accept handling, the agent round trip and the update's forwarding
are). The target is p99 ≤ 100 ms at 500/s with 1,000 agents. --samples PREFIX writes each
task's (Accept time, latency) to PREFIX.RATE.csv. Given --rate, only the paced phases run
unless --saturate. This process tunes its garbage collector as the master and the
simulator do (common/gc_policy.py), lest its own collections count as the master's latency.

A readable table, then the last line is one JSON object for machines: the burst's figures
(when it ran) and "paced": {"RATE": {"p50_ms", "p99_ms", "max_ms", "rate" (achieved),
"launches"}}.

--secure turns mutual TLS and access rules on for every link (a CA and certificates made
here: the master's, the simulated agents' and the framework's; a rules file that lets each
do only what it does), as `juggler up --tls` does; benchmarks/tls.py compares both modes.

--profile-master FILE runs the master under cProfile (written when it stops on SIGINT);
the master's pid is printed at start for `py-spy record --pid PID`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
from paced_launcher import TASK, Paced, percentiles

from juggler.common import gc_policy, servers
from juggler.common.resources import Resources
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc, scheduler_pb2

HERE = Path(__file__).resolve().parent
STALL_SECONDS = 60.0
PROGRESS_SECONDS = 10.0
AGENT_RESOURCES = "cpus:8;mem:32768"
DECLINE_REFUSE_SECONDS = 3600.0
ACK_CONCURRENCY = 256
TICKS = os.sysconf("SC_CLK_TCK")

# Children die with this process even if it is SIGKILLed: the wrapper sets PR_SET_PDEATHSIG
# (kept across exec) and then becomes the real command, so its pid is the command's.
_PDEATHSIG = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
)


class Abort(Exception):
    """The benchmark cannot go on; the message says why."""


# -- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(args: list[str], **kw: Any) -> subprocess.Popen:  # type: ignore[type-arg]
    """Start `python ARGS...` in its own session (Ctrl-C reaches only us; we stop it)."""
    return subprocess.Popen([sys.executable, "-c", _PDEATHSIG, *args],
                            start_new_session=True, **kw)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise Abort(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (threads included)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def stop_process(proc: subprocess.Popen | None, sig: int, wait: float) -> None:  # type: ignore[type-arg]
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


class Sim:
    """The simulated agents' process and its latest report."""

    def __init__(self, proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
        self.proc = proc
        self.report: dict[str, Any] = {"registered": 0, "running": 0, "errors": 0}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.report = json.loads(line)


# -- the framework -----------------------------------------------------------------------------
class Launcher:
    """Fills offers with small tasks as fast as they come; records Accept→RUNNING per task."""

    def __init__(self, fw: Framework, tasks: int, per_offer: int) -> None:
        self.fw = fw
        self.target = tasks
        self.per_offer = per_offer
        self.to_launch = tasks
        self.seq = 0
        self.accepted_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.first_accept: float | None = None
        self.last_running = 0.0
        self.running = 0
        self.offers = 0
        self.accepts = 0
        self.acks_sent = 0
        self.acks_done = 0
        self.failures: list[str] = []
        self.done = asyncio.Event()
        self._acks = asyncio.Semaphore(ACK_CONCURRENCY)
        self._pending: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def run(self) -> None:
        try:
            async for event in self.fw.events():
                kind = event.WhichOneof("event")
                if kind == "offers":
                    self._on_offers(event.offers.offers)
                elif kind == "update":
                    self._on_update(event.update.status)
                elif kind == "error":
                    self.failures.append(f"the master dropped the framework: "
                                         f"{event.error.message}")
                    self.done.set()
                    return
        except FrameworkError as e:
            self.failures.append(f"subscription stream broke: {e}")
            self.done.set()

    def _fits(self, offer: common_pb2.Offer) -> int:
        have = Resources.from_proto(offer.resources).milli_vector()
        need = TASK.milli_vector()
        return min(h // n for h, n in zip(have, need, strict=True) if n)

    def _on_offers(self, offers: Any) -> None:
        self.offers += len(offers)
        declined: list[str] = []
        for offer in offers:
            fit = self._fits(offer)
            n = min(fit, self.to_launch, self.per_offer or fit)
            if n <= 0:
                declined.append(offer.id)
                continue
            self.to_launch -= n
            tasks = []
            for _ in range(n):
                self.seq += 1
                tasks.append(common_pb2.TaskInfo(
                    name="sleep", task_id=f"t{self.seq:07d}", agent_id=offer.agent_id,
                    resources=TASK.to_proto(), command=common_pb2.CommandInfo(
                        argv=["sleep", "infinity"])))
            # The unused rest comes back unfiltered only if another task could use it.
            refuse = None if fit - n > 0 and self.to_launch > 0 else DECLINE_REFUSE_SECONDS
            self._spawn(self._accept(offer.id, tasks, refuse))
        if declined:
            self._spawn(self._decline(declined))

    async def _accept(self, offer_id: str, tasks: list[common_pb2.TaskInfo],
                      refuse: float | None) -> None:
        now = time.monotonic()
        if self.first_accept is None:
            self.first_accept = now
        for t in tasks:
            self.accepted_at[t.task_id] = now
        self.accepts += 1
        request = scheduler_pb2.AcceptRequest(
            framework_id=self.fw.framework_id, stream_id=self.fw.stream_id, offer_ids=[offer_id],
            operations=[scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(
                tasks=tasks))])
        if refuse is not None:
            request.filters.refuse_seconds = refuse
        try:
            # No deadline (the SDK's is 30 s): a slow master is what we measure, and the
            # stall watchdog bounds the run.
            await self.fw.stub.Accept(request)
        except grpc.aio.AioRpcError as e:
            self.failures.append(f"Accept of {len(tasks)} tasks failed: "
                                 f"{e.code().name}: {e.details()}")
            self.done.set()

    async def _decline(self, offer_ids: list[str]) -> None:
        try:
            await self.fw.stub.Decline(scheduler_pb2.DeclineRequest(
                framework_id=self.fw.framework_id, stream_id=self.fw.stream_id,
                offer_ids=offer_ids,
                filters=common_pb2.Filters(refuse_seconds=DECLINE_REFUSE_SECONDS)))
        except grpc.aio.AioRpcError as e:
            self.failures.append(f"Decline failed: {e.code().name}: {e.details()}")
            self.done.set()

    def _on_update(self, status: common_pb2.TaskStatus) -> None:
        now = time.monotonic()
        if status.state == common_pb2.TASK_RUNNING:
            started = self.accepted_at.pop(status.task_id, None)
            if started is not None:
                self.latencies.append(now - started)
                self.running += 1
                self.last_running = now
        else:
            self.failures.append(f"task {status.task_id}: "
                                 f"{common_pb2.TaskState.Name(status.state)} {status.message}")
            self.done.set()
        if status.uuid:
            self.acks_sent += 1
            self._spawn(self._ack(status))
        if self.running >= self.target:
            self.done.set()

    async def _ack(self, status: common_pb2.TaskStatus) -> None:
        async with self._acks:
            try:
                await self.fw.stub.Acknowledge(scheduler_pb2.AcknowledgeRequest(
                    framework_id=self.fw.framework_id, stream_id=self.fw.stream_id,
                    agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))
            except grpc.aio.AioRpcError as e:
                self.failures.append(f"Acknowledge of {status.task_id} failed: "
                                     f"{e.code().name}: {e.details()}")
                self.done.set()
        self.acks_done += 1



# -- the run -----------------------------------------------------------------------------------
async def wait_progress(what: str, count: Any, target: int, alive: Any,
                        done: asyncio.Event | None = None) -> None:
    """Wait until count() >= target (or `done`); Abort after STALL_SECONDS without progress."""
    start = last_change = last_print = time.monotonic()
    last = -1
    while True:
        alive()
        n = count()
        if n >= target or (done is not None and done.is_set()):
            return
        now = time.monotonic()
        if n != last:
            last, last_change = n, now
        if now - last_print >= PROGRESS_SECONDS:
            last_print = now
            print(f"  ... {what}: {n:,} of {target:,} after {now - start:.0f} s", file=sys.stderr)
        elif now - last_change > STALL_SECONDS:
            raise Abort(f"no progress for {STALL_SECONDS:.0f} s while {what}: {n} of {target}")
        await asyncio.sleep(0.02)


async def wait_serving(address: str, alive: Any) -> None:
    deadline = time.monotonic() + STALL_SECONDS
    async with servers.channel(address) as ch:
        stub = operator_pb2_grpc.OperatorStub(ch)
        while True:
            alive()
            try:
                leader = await stub.GetLeader(operator_pb2.GetLeaderRequest(), timeout=1)
                if leader.is_leader:
                    return
            except grpc.aio.AioRpcError:
                pass
            if time.monotonic() > deadline:
                raise Abort(f"the master did not serve on {address} within {STALL_SECONDS:.0f} s")
            await asyncio.sleep(0.05)


# What each principal of the --secure run may do (the rules file's format: README,
# "Securing a cluster"); nothing else is allowed.
SECURE_RULES = {
    "register_agents": [{"principals": {"values": ["agent"]}, "agents": {"type": "ANY"}}],
    "register_frameworks": [{"principals": {"values": ["bench"]}, "roles": {"values": ["*"]}}],
    "run_tasks": [{"principals": {"values": ["bench"]}, "users": {"values": ["bench"]}}],
    "run_host_filesystem": [{"principals": {"values": ["bench"]}, "roles": {"values": ["*"]}}],
    "view_cluster": [{"principals": {"values": ["bench"]}}],
}


def secure_setup(tmp: Path) -> dict[str, Any]:
    """A CA, the three certificates and the rules file of a --secure run."""
    from juggler.common import tls

    d = tmp / "tls"
    d.mkdir()
    tls.make_ca(d)
    rules = d / "acls.json"
    rules.write_text(json.dumps(SECURE_RULES))
    return {"master": tls.issue(d, "master", ["127.0.0.1", "localhost"], d),
            "agent": tls.issue(d, "agent", ["127.0.0.1"], d),
            "bench": tls.issue(d, "bench", ["127.0.0.1"], d), "rules": rules}


async def bench(args: argparse.Namespace, tmp: Path, procs: dict[str, Any]) -> dict[str, Any]:
    from juggler.common import tls

    port = free_port()
    address = f"127.0.0.1:{port}"
    master_args = ["-m", "juggler.cli.main", "master", "--host", "127.0.0.1", "--port", str(port),
                   "--metrics-port", "-1", "--work-dir", str(tmp / "master"),
                   "--allocation-interval", "0.1"]
    secure = secure_setup(tmp) if args.secure else None
    if secure is not None:
        master_args += [*secure["master"].flags(), "--acls", str(secure["rules"])]
        tls.configure(secure["bench"])   # this process: the framework
    if args.profile_master:
        master_args = ["-m", "cProfile", "-o", args.profile_master, *master_args]
    master_log = open(tmp / "master.log", "wb")  # noqa: SIM115
    master = procs["master"] = spawn(master_args, stdout=master_log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
    print(f"master pid {master.pid} on {address} (log {tmp / 'master.log'})", file=sys.stderr)

    def alive() -> None:
        for name, p in procs.items():
            if p is not None and p.poll() is not None:
                raise Abort(f"the {name} process exited with status {p.returncode} "
                            f"(see {tmp / (name + '.log')})")

    await wait_serving(address, alive)
    await asyncio.sleep(0.5)
    rss_idle = rss_bytes(master.pid)

    # -- agents --
    sim_log = open(tmp / "sim.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    sim = Sim(spawn([str(HERE / "sim_agents.py"), "--master", address, "--agents",
                     str(args.agents), "--resources", AGENT_RESOURCES,
                     *(secure["agent"].flags() if secure else [])],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sim_log, text=True))
    procs["sim"] = sim.proc
    print(f"simulated agents pid {sim.proc.pid}", file=sys.stderr)

    def sim_registered() -> int:
        if sim.report.get("errors"):
            raise Abort(f"simulated agents failed: {sim.report.get('last_error')}")
        return int(sim.report.get("registered", 0))

    await wait_progress("agents register", sim_registered, args.agents, alive)
    register_seconds = time.monotonic() - t0
    await asyncio.sleep(0.5)
    rss_agents = rss_bytes(master.pid)

    result: dict[str, Any] = {
        "agents": args.agents, "register_seconds": register_seconds, "rss_idle": rss_idle,
        "rss_agents": rss_agents, "secure": bool(args.secure), "saturating": None, "paced": {}}
    pids = {"master": master.pid, "sim": sim.proc.pid}
    if args.saturate:
        result["saturating"] = await saturating(args, address, pids, alive)
        await wait_sim_idle(sim, alive)
    for rate in args.rates:
        result["paced"][rate] = await paced(args, address, rate, pids, alive)
        await wait_sim_idle(sim, alive)
    return result


class Usage:
    """CPU seconds of our processes and of the whole machine over a phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.wall0 = time.monotonic()
        self.ours0 = self._ours()
        self.busy0, self.total0 = _machine()

    def _ours(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out["framework"] = time.process_time()
        return out

    def done(self) -> dict[str, Any]:
        """{"wall": s, "cpu": {name: s}, "others": s of CPU used by other processes}."""
        ours = self._ours()
        busy, _ = _machine()
        cpu = {k: ours[k] - self.ours0[k] for k in ours}
        return {"wall": time.monotonic() - self.wall0, "cpu": cpu,
                "others": max(0.0, (busy - self.busy0) - sum(cpu.values()))}


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    total = sum(fields[:8])
    return (total - idle) / TICKS, total / TICKS


async def wait_sim_idle(sim: Sim, alive: Any) -> None:
    """Until the simulated agents run no task (the last framework's were killed or ended)."""
    def live() -> int:
        r = sim.report
        return int(r.get("running", 0)) - int(r.get("killed", 0)) - int(r.get("finished", 0))
    await asyncio.sleep(1.0)  # the sim reports every 0.5 s
    await wait_progress("the last framework's tasks end", lambda: -live(), 0, alive)
    await asyncio.sleep(0.5)


async def saturating(args: argparse.Namespace, address: str, pids: dict[str, int],
                     alive: Any) -> dict[str, Any]:
    fw = Framework(address, common_pb2.FrameworkInfo(name="master-throughput", user="bench"))
    await fw.subscribe()
    launcher = Launcher(fw, args.tasks, args.per_offer)
    usage = Usage(pids)
    reader = asyncio.create_task(launcher.run())
    try:
        await wait_progress("tasks reach RUNNING", lambda: launcher.running, args.tasks, alive,
                            launcher.done)
        if launcher.failures:
            raise Abort(f"{len(launcher.failures)} failures; first: {launcher.failures[0]}")
        await wait_progress("the last acknowledgements complete", lambda: launcher.acks_done,
                            launcher.acks_sent, alive)
        used = usage.done()
        if launcher.failures:
            raise Abort(f"{len(launcher.failures)} failures; first: {launcher.failures[0]}")
        await asyncio.sleep(0.5)
        rss_tasks = rss_bytes(pids["master"])
    finally:
        reader.cancel()
        await fw.close()  # no failover timeout: the master kills its tasks

    assert launcher.first_accept is not None
    span = launcher.last_running - launcher.first_accept
    lat = sorted(launcher.latencies)
    return {
        "tasks": args.tasks, "span": span,
        "launches_per_second": args.tasks / span if span > 0 else float("inf"),
        **percentiles(lat), "rss_tasks": rss_tasks, "offers": launcher.offers,
        "accepts": launcher.accepts, **used,
    }


async def paced(args: argparse.Namespace, address: str, rate: int, pids: dict[str, int],
                alive: Any) -> dict[str, Any]:
    """One paced phase: a fresh framework launching `rate` tasks/s for args.duration s."""
    print(f"  paced: {rate} launches/s for {args.duration:g} s", file=sys.stderr)
    fw = Framework(address, common_pb2.FrameworkInfo(name=f"paced-{rate}", user="bench"))
    await fw.subscribe()
    p = Paced(fw, rate, args.duration, args.task_seconds)
    reader = asyncio.create_task(p.events())
    try:
        # Start once the first offers are in (most agents, or 2 s).
        deadline = time.monotonic() + 2.0
        while len(p.pool) < args.agents * 0.9 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        load0 = os.getloadavg()[0]
        usage = Usage(pids)
        await p.pace()
        if p.failures:
            raise Abort(f"paced {rate}/s: {len(p.failures)} failures; first: {p.failures[0]}")
        await wait_progress(f"paced {rate}/s: the last launches reach RUNNING",
                            lambda: p.running, p.launched, alive, p.failed)
        used = usage.done()
        await wait_progress(f"paced {rate}/s: the last acknowledgements complete",
                            lambda: p.acks_done, p.acks_sent, alive, p.failed)
        if p.failures:
            raise Abort(f"paced {rate}/s: {len(p.failures)} failures; first: {p.failures[0]}")
    finally:
        reader.cancel()
        await p.stop()
        await fw.close()  # no failover timeout: the master kills what still runs
    span = max(args.duration, p.last_accept - p.start)
    if args.samples:
        with open(f"{args.samples}.{rate}.csv", "w") as f:
            f.write("accept_s,latency_ms,accept_monotonic\n")
            f.writelines(f"{a:.4f},{lat * 1000:.2f},{p.start + a:.4f}\n" for a, lat in p.samples)
    return {"rate": rate, "achieved": p.launched / span, "launched": p.launched,
            "accepts": p.accepts, "behind_ticks": p.behind, "finished": p.finished,
            **percentiles(p.latencies), "load1": load0, **used}


def report(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(shutil.get_terminal_size().columns, 130))
    mib = 1024 * 1024
    mode = "TLS and access rules on" if r["secure"] else "plain text, no rules"
    console.print(f"master throughput, {mode}: {r['agents']:,} simulated agents registered in "
                  f"{r['register_seconds']:.2f} s ({os.cpu_count()} CPUs shared by master, "
                  "agents, framework and whatever else runs here)")
    out: dict[str, Any] = {"agents": r["agents"], "secure": r["secure"]}
    sat = r["saturating"]
    per_agent = (r["rss_agents"] - r["rss_idle"]) / r["agents"]
    if sat is not None:
        per_task = (sat["rss_tasks"] - r["rss_agents"]) / sat["tasks"]
        t = Table(title="saturating burst (one framework fills every offer)", title_justify="left")
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_column("note")
        t.add_row("tasks RUNNING", f"{sat['tasks']:,}",
                  f"{sat['offers']:,} offers, {sat['accepts']:,} Accept calls")
        t.add_row("launches / s", f"{sat['launches_per_second']:,.0f}",
                  f"first Accept → last RUNNING: {sat['span']:.2f} s "
                  "(target ≥ 1,000 at 1,000 agents)")
        t.add_row("Accept→RUNNING p50", f"{sat['p50'] * 1000:.1f} ms", "queueing in the burst")
        t.add_row("Accept→RUNNING p99", f"{sat['p99'] * 1000:.1f} ms",
                  f"max {sat['max'] * 1000:.1f} ms")
        t.add_row("master RSS idle", f"{r['rss_idle'] / mib:.1f} MiB", "")
        t.add_row("master RSS + agents", f"{r['rss_agents'] / mib:.1f} MiB",
                  f"{per_agent / 1024:.1f} KiB per agent")
        t.add_row("master RSS + tasks", f"{sat['rss_tasks'] / mib:.1f} MiB",
                  f"{per_task / 1024:.2f} KiB per task")
        for name, seconds in sat["cpu"].items():
            t.add_row(f"CPU {name}", f"{seconds:.2f} s",
                      f"{100 * seconds / sat['wall']:.0f}% of one core over the launch phase")
        t.add_row("CPU other processes", f"{sat['others']:.2f} s",
                  f"{100 * sat['others'] / sat['wall']:.0f}% of one core (not this benchmark)")
        console.print(t)
        out.update({
            "tasks": sat["tasks"], "launches_per_second": round(sat["launches_per_second"], 1),
            "accept_to_running_ms": {"p50": round(sat["p50"] * 1000, 2),
                                     "p99": round(sat["p99"] * 1000, 2)},
            "rss_bytes_per_agent": round(per_agent), "rss_bytes_per_task": round(per_task)})
    if r["paced"]:
        t = Table(title="paced launches (Accept call → RUNNING update at the framework; "
                  "target p99 ≤ 100 ms at 500/s)", title_justify="left")
        for col in ("rate/s", "achieved/s", "launches", "p50 ms", "p99 ms", "max ms",
                    "CPU master", "CPU sim", "CPU fw", "CPU others", "load1"):
            t.add_column(col, justify="right")
        for rate, ph in r["paced"].items():
            w = ph["wall"]
            t.add_row(str(rate), f"{ph['achieved']:,.0f}", f"{ph['launched']:,}",
                      f"{ph['p50'] * 1000:.1f}", f"{ph['p99'] * 1000:.1f}",
                      f"{ph['max'] * 1000:.1f}",
                      *(f"{100 * ph['cpu'][k] / w:.0f}%" for k in ("master", "sim", "framework")),
                      f"{100 * ph['others'] / w:.0f}%", f"{ph['load1']:.1f}")
        console.print(t)
        console.print("  CPU: % of one core over the phase; others: every other process on "
                      "this machine; load1 at the phase's start")
    out["paced"] = {str(rate): {"p50_ms": round(ph["p50"] * 1000, 2),
                                "p99_ms": round(ph["p99"] * 1000, 2),
                                "max_ms": round(ph["max"] * 1000, 2),
                                "rate": round(ph["achieved"], 1), "launches": ph["launched"]}
                    for rate, ph in r["paced"].items()}
    print(json.dumps(out))


def parse_rates(values: list[str]) -> list[int]:
    rates = []
    for v in values:
        for part in v.split(","):
            if part.strip():
                rates.append(int(part))
    return rates


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="100 agents, 2,000 tasks, paced 200/s for 5 s")
    p.add_argument("--agents", type=int, default=None, help="default 1,000 (--quick: 100)")
    p.add_argument("--tasks", type=int, default=None, help="default 20,000 (--quick: 2,000)")
    p.add_argument("--per-offer", type=int, default=0,
                   help="at most this many tasks per offer (default 0: as many as fit)")
    p.add_argument("--rate", action="append", default=[], metavar="R[,R...]",
                   help="paced launches per second (repeatable or a comma list); given, only "
                        "the paced phases run unless --saturate (default: 200,500,1000 after "
                        "the saturating burst)")
    p.add_argument("--duration", type=float, default=None,
                   help="seconds of each paced phase (default 30, --quick 5)")
    p.add_argument("--task-seconds", type=float, default=5.0,
                   help="paced tasks are `sleep N`: the simulated agents finish them after N s "
                        "(default 5)")
    p.add_argument("--samples", metavar="PREFIX", default="",
                   help="write each paced phase's (Accept time, latency) to PREFIX.RATE.csv")
    p.add_argument("--saturate", action="store_true",
                   help="run the saturating burst too when --rate is given")
    p.add_argument("--profile-master", metavar="FILE", default="",
                   help="run the master under cProfile, writing FILE when it stops")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--secure", action="store_true",
                   help="mutual TLS and access rules on every link (as `juggler up --tls`)")
    args = p.parse_args()
    args.agents = args.agents or (100 if args.quick else 1000)
    args.tasks = args.tasks or (2000 if args.quick else 20000)
    args.duration = args.duration or (5.0 if args.quick else 30.0)
    try:
        args.rates = parse_rates(args.rate)
    except ValueError:
        p.error("--rate takes whole numbers of launches per second, e.g. --rate 200,500")
    args.saturate = args.saturate or not args.rates
    if not args.rates:
        args.rates = [200] if args.quick else [200, 500, 1000]
    per_agent = Resources.parse(AGENT_RESOURCES)
    fit = min(a // t for a, t in zip(per_agent.milli_vector(), TASK.milli_vector(),
                                     strict=True) if t)
    if args.agents < 1 or args.tasks < 1 or args.tasks > args.agents * fit:
        p.error(f"--tasks must be 1..{args.agents * fit} ({fit} per agent of {AGENT_RESOURCES})")
    if any(r < 1 for r in args.rates) or args.duration <= 0 or args.task_seconds < 0:
        p.error("--rate, --duration must be > 0 and --task-seconds >= 0")
    # Paced tasks live task_seconds (plus an Ack round trip): twice that must fit.
    need = max(args.rates) * min(args.task_seconds + 1, args.duration) * 2
    if need > args.agents * fit:
        p.error(f"{max(args.rates)}/s of {args.task_seconds:g} s tasks needs about {need:,.0f} "
                f"task slots; {args.agents} agents have {args.agents * fit:,}: lower "
                "--task-seconds or add --agents")
    if args.profile_master:
        args.profile_master = str(Path(args.profile_master).resolve())

    # SIGTERM (and SIGHUP) clean up as Ctrl-C does.
    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    # This process is the framework: its collector tuned as the master's and the simulated
    # agents' are, lest its own full collections (100s of ms) count as the master's latency.
    gc_policy.tune()
    tmp = Path(tempfile.mkdtemp(prefix="juggler-throughput-"))
    procs: dict[str, Any] = {"master": None, "sim": None}
    rc = 0
    try:
        report(asyncio.run(bench(args, tmp, procs)))
    except Abort as e:
        print(f"master_throughput: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("master_throughput: interrupted", file=sys.stderr)
        rc = 130
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # The master first: it would otherwise spend its shutdown on every agent's
            # disconnection. Under cProfile give it time to write its profile.
            stop_process(procs["master"], signal.SIGINT,
                         120.0 if args.profile_master else 5.0)
            stop_process(procs["sim"], signal.SIGTERM, 5.0)
            if rc != 0 or args.keep:
                print(f"logs kept in {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
