"""Master throughput: task launches per second through the real master, with simulated agents.

    python benchmarks/master_throughput.py [--quick] [--agents N] [--tasks N]

Starts the real master process (`juggler master`, 0.1 s allocation interval) and, in one
other process, N simulated agents speaking the real AgentChannel.Connect protocol
(benchmarks/sim_agents.py: register, answer pings, report TASK_RUNNING at once for every
run_task). One framework (juggler.sdk.Framework) in this process fills every offer with as
many small tasks (cpus 0.1, mem 32) as fit, acknowledges every update, and stops once
--tasks tasks are RUNNING. So the master is measured alone, but it shares this host's CPUs
with the simulator and the framework (their CPU use is printed too).

Figures: launches per second from the first Accept to the last RUNNING; Accept→RUNNING
latency per task (the Accept call that launched it to its RUNNING update reaching the
framework); the master's RSS before agents, after they registered and after every task
runs, as bytes per agent and per task. Default 1,000 agents and 20,000 tasks (the target is
≥ 1,000 launches/s sustained at that size); --quick: 100 agents, 2,000 tasks. The last line
is one JSON object for machines.

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
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc, scheduler_pb2

HERE = Path(__file__).resolve().parent
STALL_SECONDS = 60.0
PROGRESS_SECONDS = 10.0
AGENT_RESOURCES = "cpus:8;mem:32768"
TASK = Resources({"cpus": 0.1, "mem": 32})
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

    # -- the framework --
    fw = Framework(address, common_pb2.FrameworkInfo(name="master-throughput", user="bench"))
    await fw.subscribe()
    launcher = Launcher(fw, args.tasks, args.per_offer)
    cpu0 = {"master": cpu_seconds(master.pid), "sim": cpu_seconds(sim.proc.pid),
            "framework": time.process_time()}
    wall0 = time.monotonic()
    reader = asyncio.create_task(launcher.run())
    try:
        await wait_progress("tasks reach RUNNING", lambda: launcher.running, args.tasks, alive,
                            launcher.done)
        if launcher.failures:
            raise Abort(f"{len(launcher.failures)} failures; first: {launcher.failures[0]}")
        await wait_progress("the last acknowledgements complete", lambda: launcher.acks_done,
                            launcher.acks_sent, alive)
        wall = time.monotonic() - wall0
        cpu = {"master": cpu_seconds(master.pid) - cpu0["master"],
               "sim": cpu_seconds(sim.proc.pid) - cpu0["sim"],
               "framework": time.process_time() - cpu0["framework"]}
        if launcher.failures:
            raise Abort(f"{len(launcher.failures)} failures; first: {launcher.failures[0]}")
        await asyncio.sleep(0.5)
        rss_tasks = rss_bytes(master.pid)
    finally:
        reader.cancel()
        await fw.close()

    assert launcher.first_accept is not None
    span = launcher.last_running - launcher.first_accept
    lat = sorted(launcher.latencies)
    return {
        "agents": args.agents, "tasks": args.tasks, "span": span,
        "launches_per_second": args.tasks / span if span > 0 else float("inf"),
        "p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "max": lat[-1], "register_seconds": register_seconds,
        "rss_idle": rss_idle, "rss_agents": rss_agents, "rss_tasks": rss_tasks,
        "offers": launcher.offers, "accepts": launcher.accepts, "cpu": cpu, "wall": wall,
        "secure": bool(args.secure),
    }


def report(r: dict[str, Any]) -> None:
    per_agent = (r["rss_agents"] - r["rss_idle"]) / r["agents"]
    per_task = (r["rss_tasks"] - r["rss_agents"]) / r["tasks"]
    mib = 1024 * 1024
    rows = [
        ("agents", f"{r['agents']:,}", f"registered in {r['register_seconds']:.2f} s"),
        ("tasks RUNNING", f"{r['tasks']:,}",
         f"{r['offers']:,} offers, {r['accepts']:,} Accept calls"),
        ("launches / s", f"{r['launches_per_second']:,.0f}",
         f"first Accept → last RUNNING: {r['span']:.2f} s (target ≥ 1,000 at 1,000 agents)"),
        ("Accept→RUNNING p50", f"{r['p50'] * 1000:.1f} ms", ""),
        ("Accept→RUNNING p99", f"{r['p99'] * 1000:.1f} ms", f"max {r['max'] * 1000:.1f} ms"),
        ("master RSS idle", f"{r['rss_idle'] / mib:.1f} MiB", ""),
        ("master RSS + agents", f"{r['rss_agents'] / mib:.1f} MiB",
         f"{per_agent / 1024:.1f} KiB per agent"),
        ("master RSS + tasks", f"{r['rss_tasks'] / mib:.1f} MiB",
         f"{per_task / 1024:.2f} KiB per task"),
    ]
    for name, seconds in r["cpu"].items():
        rows.append((f"CPU {name}", f"{seconds:.2f} s",
                     f"{100 * seconds / r['wall']:.0f}% of one core over the launch phase"))
    width = max(len(n) for n, _, _ in rows)
    vwidth = max(len(v) for _, v, _ in rows)
    mode = "TLS and access rules on" if r["secure"] else "plain text, no rules"
    print(f"master throughput, {mode} ({os.cpu_count()} CPUs shared by master, agents and "
          "framework)")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>{vwidth}}  {note}".rstrip())
    print(json.dumps({
        "agents": r["agents"], "tasks": r["tasks"], "secure": r["secure"],
        "launches_per_second": round(r["launches_per_second"], 1),
        "accept_to_running_ms": {"p50": round(r["p50"] * 1000, 2),
                                 "p99": round(r["p99"] * 1000, 2)},
        "rss_bytes_per_agent": round(per_agent),
        "rss_bytes_per_task": round(per_task),
    }))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="100 agents, 2,000 tasks")
    p.add_argument("--agents", type=int, default=None, help="default 1,000 (--quick: 100)")
    p.add_argument("--tasks", type=int, default=None, help="default 20,000 (--quick: 2,000)")
    p.add_argument("--per-offer", type=int, default=0,
                   help="at most this many tasks per offer (default 0: as many as fit)")
    p.add_argument("--profile-master", metavar="FILE", default="",
                   help="run the master under cProfile, writing FILE when it stops")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--secure", action="store_true",
                   help="mutual TLS and access rules on every link (as `juggler up --tls`)")
    args = p.parse_args()
    args.agents = args.agents or (100 if args.quick else 1000)
    args.tasks = args.tasks or (2000 if args.quick else 20000)
    per_agent = Resources.parse(AGENT_RESOURCES)
    fit = min(a // t for a, t in zip(per_agent.milli_vector(), TASK.milli_vector(),
                                     strict=True) if t)
    if args.agents < 1 or args.tasks < 1 or args.tasks > args.agents * fit:
        p.error(f"--tasks must be 1..{args.agents * fit} ({fit} per agent of {AGENT_RESOURCES})")
    if args.profile_master:
        args.profile_master = str(Path(args.profile_master).resolve())

    # SIGTERM (and SIGHUP) clean up as Ctrl-C does.
    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

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
