"""Apps deploy: the apps service deploying, restarting and listing at Marathon's scale.

    python benchmarks/apps_deploy.py [--quick] [--agents N] [--instances N] [--apps N]
                                     [--profile-apps FILE] [--keep]

Starts the real master (`juggler master`, 0.1 s allocation interval), N simulated agents
of "cpus:8;mem:32768" in one other process (benchmarks/sim_agents.py: TASK_RUNNING at once
for every launch, TASK_KILLED at once for every kill) and the real apps service (`juggler
apps`, its embedded store in a temporary directory), then talks to the service's Marathon
REST API with one keep-alive HTTP client (aiohttp), as Marathon's users would:

1. deploy: POST /v2/apps {"id": "/bench", "cmd": "sleep 1000", "instances": 1000,
   "cpus": 0.1, "mem": 32, "upgradeStrategy": {"minHealthySeconds": 0}}, no health checks
   (a running instance is a healthy one, as Marathon counts). Timed from the POST until
   its deployment is gone from GET /v2/deployments and the app's tasksRunning is 1,000
   (both polled every 25 ms); the time at which 1,000 first ran is shown too.
2. rolling restart: PUT /v2/apps/bench {"cmd": "sleep 2000"} (a partial update, Marathon's
   default) until the deployment is gone and GET /v2/apps/bench?embed=apps.tasks shows
   1,000 RUNNING tasks, all of the app's versionInfo.lastConfigChangeAt. tasksRunning is
   sampled at every poll: with minimumHealthCapacity 1 its minimum must stay ≥ 1,000.
3. list: 1,000 more apps (/list/app-0000 …, instances 0) created by one PUT /v2/apps (a
   bulk list: one deployment); once it is done, GET /v2/apps timed client-side (wall time
   until the whole body is read; 2 warm-up requests, then 20), median and p99, with /bench
   and its 1,000 tasks still there. GET /v2/apps?embed=apps.tasks is timed beside it.

minHealthySeconds is juggler's Nomad-style extension (default 10 s: a new instance counts
as healthy only after 10 s of health, so a rolling restart of 1,000 could not take less
than 10 s by design); it is set to 0 here to compare with Marathon, which has no such
wait. Everything else is Marathon's default upgrade strategy (minimumHealthCapacity 1,
maximumOverCapacity 1: up to 2 × instances live during the restart, hence the room for
2,000 on the agents).

Targets (the issue's): 1,000 instances deployed ≤ 3 s, their rolling restart ≤ 10 s,
GET /v2/apps with 1,000 apps ≤ 100 ms. Anchors: Marathon 0.15 took 14.2 s for 500
instances on 189 agents; Marathon's /v2/apps took 12 s at 1,000 tasks.

The CPU seconds of the apps service, the master, the simulator and this client in each
phase are printed (every thread's /proc/PID/task/*/schedstat), so the reader sees where
the time goes: they all share this host's CPUs. --quick: 200 instances, 20 agents, 200
apps. The last line is one JSON object: {"instances", "deploy_seconds",
"rolling_restart_seconds", "list_apps_ms"} (list_apps_ms: the median).

--profile-apps FILE runs the apps service under cProfile (`python -m cProfile -o FILE -m
juggler.cli.main apps ...`), stops it with SIGINT at the end (it then writes FILE) and
prints its top costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import pstats
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

import aiohttp
from launch_1000 import cpu_seconds
from master_throughput import (
    AGENT_RESOURCES,
    Abort,
    Sim,
    free_port,
    spawn,
    stop_process,
    wait_progress,
    wait_serving,
)

from juggler.common.resources import Resources

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 0.025
PROGRESS_SECONDS = 2.0
STALL_SECONDS = 60.0
READY_SECONDS = 60.0
LIST_SAMPLES = 20
LIST_WARMUP = 2
EMBED_SAMPLES = 5
APP_ID = "/bench"
APP_CPUS, APP_MEM = 0.1, 32.0
PROCS = ("apps", "master", "sim")

TARGETS = {"deploy_seconds": 3.0, "rolling_restart_seconds": 10.0, "list_apps_ms": 100.0}


class Api:
    """The apps service's REST API over one keep-alive session."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base = base
        self.session = session

    async def call(self, method: str, path: str, *, body: Any = None,
                   params: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201),
                   ) -> Any:
        """The answer's JSON; Abort on any other status than `ok`."""
        async with self.session.request(method, self.base + path, json=body,
                                        params=params) as r:
            raw = await r.read()
            status = r.status
        if status not in ok:
            raise Abort(f"{method} {path}: HTTP {status}: {raw[:500].decode(errors='replace')}")
        return json.loads(raw) if raw else None

    async def timed_get(self, path: str, params: dict[str, str] | None = None,
                        ) -> tuple[float, bytes]:
        """(seconds until the whole body was read, the body)."""
        t = time.perf_counter()
        async with self.session.get(self.base + path, params=params) as r:
            raw = await r.read()
            status = r.status
        took = time.perf_counter() - t
        if status != 200:
            raise Abort(f"GET {path}: HTTP {status}: {raw[:500].decode(errors='replace')}")
        return took, raw


class CpuMeter:
    """CPU seconds of every process of the run (and of this client) over a phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = self._read()

    def _read(self) -> dict[str, float]:
        out = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        out["client"] = time.process_time()
        return out

    def spent(self) -> dict[str, float]:
        now = self._read()
        return {k: now[k] - self.start[k] for k in now}


@dataclass
class Followed:
    """How a deployment went, in seconds from its request."""

    done: float                 # the deployment gone and the tasks as wanted
    gone: float                 # the deployment first seen gone
    all_running: float | None   # tasksRunning first reached the instance count
    running_min: int            # tasksRunning over the polls (after the request)
    running_max: int
    polls: int


async def follow(api: Api, t0: float, deployment_id: str, n: int, what: str, alive: Any,
                 *, new_version: bool) -> Followed:
    """Poll until deployment `deployment_id` of APP_ID is gone and the app runs `n`
    tasks (and, with `new_version`, every one of its current config version)."""
    running_min, running_max, polls = math.inf, 0, 0
    all_running: float | None = None
    gone: float | None = None
    last_seen: tuple[Any, ...] = ()
    last_change = last_print = time.monotonic()
    while True:
        alive()
        deployments, listed = await asyncio.gather(
            api.call("GET", "/v2/deployments"), api.call("GET", "/v2/apps",
                                                         params={"id": APP_ID}))
        now = time.monotonic()
        polls += 1
        app = next((a for a in listed["apps"] if a["id"] == APP_ID), None)
        if app is None:
            raise Abort(f"{what}: GET /v2/apps?id={APP_ID} does not list {APP_ID}")
        running, staged = int(app["tasksRunning"]), int(app["tasksStaged"])
        in_progress = any(d.get("id") == deployment_id for d in deployments)
        running_min, running_max = min(running_min, running), max(running_max, running)
        if all_running is None and running >= n:
            all_running = now - t0
        if gone is None and not in_progress:
            gone = now - t0
        if not in_progress and running == n:
            if not new_version:
                return Followed(now - t0, gone or now - t0, all_running, int(running_min),
                                running_max, polls)
            full = (await api.call("GET", f"/v2/apps{APP_ID}",
                                   params={"embed": "apps.tasks"}))["app"]
            version = full["versionInfo"]["lastConfigChangeAt"]
            tasks = full.get("tasks") or []
            if len(tasks) == n and all(t.get("version") == version and
                                       t.get("state") == "TASK_RUNNING" for t in tasks):
                return Followed(time.monotonic() - t0, gone or now - t0, all_running,
                                int(running_min), running_max, polls)
        seen = (running, staged, in_progress)
        if seen != last_seen:
            last_seen, last_change = seen, now
        elif now - last_change > STALL_SECONDS:
            raise Abort(f"{what}: no progress for {STALL_SECONDS:.0f} s: {running} running, "
                        f"{staged} staged, deployment {deployment_id} "
                        f"{'in progress' if in_progress else 'gone'}")
        if now - last_print >= PROGRESS_SECONDS:
            last_print = now
            print(f"  ... {what}: {running:,} running, {staged:,} staged"
                  f"{', deployment in progress' if in_progress else ''} after {now - t0:.1f} s",
                  file=sys.stderr)
        await asyncio.sleep(POLL_SECONDS)


async def wait_gone(api: Api, t0: float, deployment_id: str, what: str, alive: Any) -> float:
    """Seconds from t0 until `deployment_id` is no longer in GET /v2/deployments."""
    last_print = time.monotonic()
    while True:
        alive()
        deployments = await api.call("GET", "/v2/deployments")
        now = time.monotonic()
        if not any(d.get("id") == deployment_id for d in deployments):
            return now - t0
        if now - t0 > STALL_SECONDS:
            raise Abort(f"{what}: deployment {deployment_id} still in progress after "
                        f"{STALL_SECONDS:.0f} s")
        if now - last_print >= PROGRESS_SECONDS:
            last_print = now
            print(f"  ... {what}: deployment in progress after {now - t0:.1f} s",
                  file=sys.stderr)
        await asyncio.sleep(POLL_SECONDS)


async def wait_ready(api: Api, alive: Any) -> None:
    """Until the service leads: /v2/info says elected, with a framework id."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        alive()
        with contextlib.suppress(aiohttp.ClientError, Abort):
            info = await api.call("GET", "/v2/info")
            if info.get("elected") and info.get("frameworkId"):
                return
        if time.monotonic() > deadline:
            raise Abort(f"the apps service did not lead within {READY_SECONDS:.0f} s")
        await asyncio.sleep(0.05)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, math.ceil(len(sorted_values) * p) - 1)]


# -- the run -----------------------------------------------------------------------------------
async def bench(args: argparse.Namespace, tmp: Path, procs: dict[str, Any]) -> dict[str, Any]:
    def alive() -> None:
        for name, p in procs.items():
            if p is not None and p.poll() is not None:
                raise Abort(f"the {name} process exited with status {p.returncode} "
                            f"(see {tmp / (name + '.log')})")

    # -- master --
    port = free_port()
    address = f"127.0.0.1:{port}"
    master_log = open(tmp / "master.log", "wb")  # noqa: SIM115
    procs["master"] = spawn(
        ["-m", "juggler.cli.main", "master", "--host", "127.0.0.1", "--port", str(port),
         "--metrics-port", "-1", "--work-dir", str(tmp / "master"),
         "--allocation-interval", "0.1"],
        stdout=master_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    print(f"master pid {procs['master'].pid} on {address}", file=sys.stderr)
    await wait_serving(address, alive)

    # -- agents --
    sim_log = open(tmp / "sim.log", "wb")  # noqa: SIM115
    sim = Sim(spawn([str(HERE / "sim_agents.py"), "--master", address, "--agents",
                     str(args.agents), "--resources", AGENT_RESOURCES],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sim_log, text=True))
    procs["sim"] = sim.proc
    print(f"simulated agents pid {sim.proc.pid}: {args.agents} × {AGENT_RESOURCES}",
          file=sys.stderr)

    def sim_registered() -> int:
        if sim.report.get("errors"):
            raise Abort(f"simulated agents failed: {sim.report.get('last_error')}")
        return int(sim.report.get("registered", 0))

    await wait_progress("agents register", sim_registered, args.agents, alive)

    # -- the apps service --
    http_port = free_port()
    apps_args = ["-m", "juggler.cli.main", "apps", "--master", address, "--host", "127.0.0.1",
                 "--http-port", str(http_port), "--work-dir", str(tmp / "apps")]
    if args.profile_apps:
        apps_args = ["-m", "cProfile", "-o", args.profile_apps, *apps_args]
    apps_log = open(tmp / "apps.log", "wb")  # noqa: SIM115
    procs["apps"] = spawn(apps_args, stdout=apps_log, stderr=subprocess.STDOUT,
                          stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http_port}"
    print(f"apps service pid {procs['apps'].pid} on {base}"
          + (" (under cProfile)" if args.profile_apps else ""), file=sys.stderr)

    pids = {name: procs[name].pid for name in PROCS}
    n = args.instances
    connector = aiohttp.TCPConnector(limit=8)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        api = Api(base, session)
        await wait_ready(api, alive)
        await asyncio.sleep(0.5)  # let the service settle (reconciliation, suppress)

        # -- 1. deploy --
        print(f"deploy: POST /v2/apps {APP_ID} with {n:,} instances", file=sys.stderr)
        cpu = CpuMeter(pids)
        t0 = time.monotonic()
        created = await api.call("POST", "/v2/apps", ok=(201,), body={
            "id": APP_ID, "cmd": "sleep 1000", "instances": n, "cpus": APP_CPUS,
            "mem": APP_MEM, "upgradeStrategy": {"minHealthySeconds": 0}})
        post_seconds = time.monotonic() - t0
        deployment = (created.get("deployments") or [{}])[0].get("id")
        if not deployment:
            raise Abort(f"POST /v2/apps answered no deployment: {created}")
        deploy = await follow(api, t0, deployment, n, "deploy", alive, new_version=False)
        deploy_cpu = cpu.spent()
        print(f"deploy: done in {deploy.done:.2f} s", file=sys.stderr)
        await asyncio.sleep(1.0)  # the last acknowledgements

        # -- 2. rolling restart --
        print(f"rolling restart: PUT /v2/apps{APP_ID} {{\"cmd\": \"sleep 2000\"}}",
              file=sys.stderr)
        cpu = CpuMeter(pids)
        t0 = time.monotonic()
        answer = await api.call("PUT", f"/v2/apps{APP_ID}", body={"cmd": "sleep 2000"})
        put_seconds = time.monotonic() - t0
        deployment = answer.get("deploymentId")
        if not deployment:
            raise Abort(f"PUT /v2/apps{APP_ID} answered no deployment: {answer}")
        restart = await follow(api, t0, deployment, n, "rolling restart", alive,
                               new_version=True)
        restart_cpu = cpu.spent()
        killed = int(sim.report.get("killed", 0))
        print(f"rolling restart: done in {restart.done:.2f} s", file=sys.stderr)
        await asyncio.sleep(1.0)

        # -- 3. list --
        print(f"list: PUT /v2/apps with {args.apps:,} apps", file=sys.stderr)
        cpu = CpuMeter(pids)
        t0 = time.monotonic()
        answer = await api.call("PUT", "/v2/apps", body=[
            {"id": f"/list/app-{i:04d}", "cmd": "sleep 1000", "instances": 0,
             "cpus": APP_CPUS, "mem": APP_MEM} for i in range(args.apps)])
        create_put_seconds = time.monotonic() - t0
        create_seconds = await wait_gone(api, t0, answer["deploymentId"], "create apps", alive)
        create_cpu = cpu.spent()
        cpu = CpuMeter(pids)
        samples: list[float] = []
        size = 0
        listed = 0
        for i in range(LIST_WARMUP + LIST_SAMPLES):
            alive()
            took, raw = await api.timed_get("/v2/apps")
            if i == 0:
                size, listed = len(raw), len(json.loads(raw)["apps"])
            if i >= LIST_WARMUP:
                samples.append(took)
        embed_samples: list[float] = []
        embed_size = 0
        for _ in range(EMBED_SAMPLES):
            took, raw = await api.timed_get("/v2/apps", {"embed": "apps.tasks"})
            embed_samples.append(took)
            embed_size = len(raw)
        list_cpu = cpu.spent()
        if listed < args.apps + 1:
            raise Abort(f"GET /v2/apps listed {listed} apps, not {args.apps + 1}")
        print(f"list: {listed:,} apps, median {statistics.median(samples) * 1000:.1f} ms",
              file=sys.stderr)

    samples.sort()
    embed_samples.sort()
    return {
        "agents": args.agents, "instances": n, "apps": args.apps, "listed": listed,
        "deploy": deploy, "post_seconds": post_seconds, "deploy_cpu": deploy_cpu,
        "restart": restart, "put_seconds": put_seconds, "restart_cpu": restart_cpu,
        "killed": killed,
        "create_seconds": create_seconds, "create_put_seconds": create_put_seconds,
        "create_cpu": create_cpu,
        "list_p50": statistics.median(samples), "list_p99": percentile(samples, 0.99),
        "list_bytes": size, "list_cpu": list_cpu,
        "embed_p50": statistics.median(embed_samples), "embed_bytes": embed_size,
    }


def report(r: dict[str, Any]) -> None:
    deploy: Followed = r["deploy"]
    restart: Followed = r["restart"]
    n = r["instances"]

    def verdict(key: str, value: float) -> str:
        if n != 1000 and key != "list_apps_ms":
            return "(target at 1,000)"
        return "met" if value <= TARGETS[key] else "MISSED"

    list_ms = r["list_p50"] * 1000
    rows = [
        (f"deploy {n:,} instances", f"{deploy.done:.2f} s",
         f"target ≤ 3 s {verdict('deploy_seconds', deploy.done)}; "
         "Marathon 0.15: 14.2 s for 500 (189 agents)"),
        ("  all running at", f"{deploy.all_running or 0:.2f} s",
         f"POST answered in {r['post_seconds'] * 1000:.0f} ms; {deploy.polls} polls"),
        ("rolling restart", f"{restart.done:.2f} s",
         f"target ≤ 10 s {verdict('rolling_restart_seconds', restart.done)}; default strategy, "
         "minHealthySeconds 0"),
        ("  deployment gone at", f"{restart.gone:.2f} s",
         f"PUT answered in {r['put_seconds'] * 1000:.0f} ms; {restart.polls} polls; "
         f"{r['killed']:,} kills answered"),
        ("  tasksRunning min", f"{restart.running_min:,}",
         f"must stay ≥ {n:,} (minimumHealthCapacity 1); max {restart.running_max:,} "
         f"(≤ {2 * n:,})"),
        (f"GET /v2/apps p50 ({r['listed']:,} apps)", f"{list_ms:.1f} ms",
         f"target ≤ 100 ms {verdict('list_apps_ms', list_ms)}; "
         "Marathon: 12 s at 1,000 tasks"),
        ("  p99", f"{r['list_p99'] * 1000:.1f} ms",
         f"{LIST_SAMPLES} requests, {r['list_bytes'] / 1024:,.0f} KiB each"),
        ("  ?embed=apps.tasks p50", f"{r['embed_p50'] * 1000:.1f} ms",
         f"{EMBED_SAMPLES} requests, {r['embed_bytes'] / 1024:,.0f} KiB each"),
        (f"create {r['apps']:,} apps", f"{r['create_seconds']:.2f} s",
         f"one PUT /v2/apps (answered in {r['create_put_seconds']:.2f} s) until its "
         "deployment is gone"),
    ]
    width = max(len(a) for a, _, _ in rows)
    vwidth = max(len(v) for _, v, _ in rows)
    print(f"apps deploy: {r['agents']:,} simulated agents ({AGENT_RESOURCES}), instances "
          f"cpus {APP_CPUS:g} mem {APP_MEM:g}, {os.cpu_count()} CPUs shared by the master, "
          "the agents, the apps service and this client")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>{vwidth}}  {note}".rstrip())
    phases = [("deploy", r["deploy_cpu"], deploy.done), ("restart", r["restart_cpu"], restart.done),
              ("create apps", r["create_cpu"], r["create_seconds"]),
              ("list", r["list_cpu"], None)]
    names = [*PROCS, "client"]
    print(f"  CPU seconds       {'wall':>6}" + "".join(f"{x:>9}" for x in names))
    for phase, cpu, wall in phases:
        w = f"{wall:6.2f}" if wall is not None else f"{'':>6}"
        print(f"    {phase:<15} {w}" + "".join(f"{cpu[x]:9.2f}" for x in names))
    print(json.dumps({"instances": n, "deploy_seconds": round(deploy.done, 3),
                      "rolling_restart_seconds": round(restart.done, 3),
                      "list_apps_ms": round(list_ms, 2)}))


def print_profile(path: str, top: int = 30) -> None:
    if not Path(path).exists():
        print(f"apps_deploy: no profile written to {path}", file=sys.stderr)
        return
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(f"apps service profile ({path}):\n{out.getvalue()}", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="200 instances, 20 agents, 200 apps")
    p.add_argument("--agents", type=int, default=None, help="default 100 (--quick: 20)")
    p.add_argument("--instances", type=int, default=None, help="default 1,000 (--quick: 200)")
    p.add_argument("--apps", type=int, default=None,
                   help="apps to create for the list (default 1,000; --quick: 200)")
    p.add_argument("--profile-apps", metavar="FILE", default="",
                   help="run the apps service under cProfile, writing FILE when it stops")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    args = p.parse_args()
    args.agents = args.agents or (20 if args.quick else 100)
    args.instances = args.instances or (200 if args.quick else 1000)
    args.apps = args.apps if args.apps is not None else (200 if args.quick else 1000)
    task = Resources({"cpus": APP_CPUS, "mem": APP_MEM})
    fit = min(a // t for a, t in zip(Resources.parse(AGENT_RESOURCES).milli_vector(),
                                     task.milli_vector(), strict=True) if t)
    if args.agents < 1 or args.instances < 1 or 2 * args.instances > args.agents * fit:
        p.error(f"the rolling restart needs room for 2 × --instances: at most "
                f"{args.agents * fit // 2} with {args.agents} agents ({fit} per agent)")
    if args.profile_apps:
        args.profile_apps = str(Path(args.profile_apps).resolve())

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGHUP, interrupted)

    tmp = Path(tempfile.mkdtemp(prefix="juggler-apps-deploy-"))
    procs: dict[str, Any] = {"apps": None, "master": None, "sim": None}
    rc = 0
    try:
        report(asyncio.run(bench(args, tmp, procs)))
    except Abort as e:
        print(f"apps_deploy: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("apps_deploy: interrupted", file=sys.stderr)
        rc = 130
    finally:
        with contextlib.suppress(KeyboardInterrupt):
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            # The apps service first (under cProfile it writes its profile as it stops),
            # then the master, then the agents.
            stop_process(procs["apps"], signal.SIGINT, 120.0 if args.profile_apps else 10.0)
            stop_process(procs["master"], signal.SIGINT, 5.0)
            stop_process(procs["sim"], signal.SIGTERM, 5.0)
            if args.profile_apps and procs["apps"] is not None:
                print_profile(args.profile_apps)
            if rc != 0 or args.keep:
                print(f"logs kept in {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
