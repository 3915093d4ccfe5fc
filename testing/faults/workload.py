"""What the campaign asks of the cluster while the nemesis works, each part
recording into the history (history.py) what it asked and what it heard:

    FrameworkWorkload   a juggler.sdk framework: short, long and failing tasks,
                        kills of long ones, every update acknowledged and recorded,
                        reconciliation after every (re)subscription
    AppsWorkload        apps over /v2/apps: create, scale, rolling restart, redeploy
    ContainersWorkload  containers over the `juggler` CLI: run -d, stop, start
    DrainWorkload       now and then, maintenance of an agent: drain it, check it ends
                        every task it ran, then bring it back up

Each part keeps its desired state (a kill asked for, an app's instance
count, a container's running/stopped) and repeats a request that failed
until the cluster accepts it: what the cluster accepted must come to pass
(checker.py); what it never accepted is not its promise. But once every
fault is healed, the cluster must accept again: `after_healing` makes each
kind of app and container operation once more, as "healed-" operations
(checker.refused_after_healing).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import grpc

from juggler.common.resources import Resources
from juggler.sdk import Framework, FrameworkError
from juggler.testing.faults import observe
from juggler.testing.faults.cluster import Lab, http_json
from juggler.testing.faults.history import History
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
TERMINAL = {S.TASK_FINISHED, S.TASK_FAILED, S.TASK_KILLED, S.TASK_ERROR, S.TASK_LOST,
            S.TASK_DROPPED, S.TASK_GONE, S.TASK_GONE_BY_OPERATOR}
TASK = Resources({"cpus": 0.05, "mem": 16})
MAX_ACTIVE = 6          # framework tasks not yet terminal
LAUNCH_EVERY = 1.0      # seconds between launches
KILL_EVERY = 4.0        # seconds between kills of a long task
HEALED_TRIES = 3        # tries of each healed-phase operation (a refusal for good fails all)
HEALED_RETRY = 2.0      # seconds between them
HEALED_TIMEOUT = 120.0  # seconds a healed-phase CLI call may take (a start waits for RUNNING)


class FrameworkWorkload:
    """Runs in its own thread with its own event loop (start(), finish())."""

    def __init__(self, lab: Lab, history: History, rng: random.Random) -> None:
        self.lab, self.h, self.rng = lab, history, rng
        self.tasks: dict[str, dict[str, Any]] = {}   # task id → {"agent_id", "state", "long"}
        self.seq = 0
        self.launching = True
        self.fatal = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="framework", daemon=True)
        self._done = threading.Event()
        self._finish_result: dict[str, Any] = {}
        self._last_launch = 0.0
        self._jobs: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._thread.start()

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as e:   # reported, the campaign goes on to the checker
            self.fatal = f"{type(e).__name__}: {e}"
        finally:
            self._done.set()

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        info = common_pb2.FrameworkInfo(name="faults", user="root", failover_timeout=3600)
        info.capabilities.append(common_pb2.FrameworkInfo.PARTITION_AWARE)
        self.fw = Framework(self.lab.master_spec, info, reconnect_timeout=300)
        await self.fw.subscribe(timeout=60)
        self.h.op("subscribe", self.fw.framework_id, True)
        events = asyncio.create_task(self._events())
        killer = asyncio.create_task(self._killer())
        await self._stop.wait()
        killer.cancel()
        self.launching = False
        await self._kill_all()
        events.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await events
        with contextlib.suppress(FrameworkError):
            await self.fw.teardown()
        await self.fw.close()

    async def _events(self) -> None:
        async for event in self.fw.events():
            kind = event.WhichOneof("event")
            if kind == "subscribed":
                self.h.op("resubscribed", event.subscribed.master_address, True)
                job = asyncio.create_task(self._reconcile())
                self._jobs.add(job)
                job.add_done_callback(self._jobs.discard)
            elif kind == "offers":
                await self._offers(event.offers.offers)
            elif kind == "update":
                self._record(event.update.status)
                with contextlib.suppress(FrameworkError):
                    await self.fw.acknowledge(event.update.status)
            elif kind == "error":
                self.fatal = f"the master dropped the framework: {event.error.message}"
                return

    def _record(self, st: common_pb2.TaskStatus) -> None:
        source = "reconcile" if st.reason == common_pb2.REASON_RECONCILIATION else "event"
        self.h.add("update", task_id=st.task_id, state=S.Name(st.state), agent_id=st.agent_id,
                   t=self.h.now(), source=source, reason=common_pb2.Reason.Name(st.reason))
        t = self.tasks.get(st.task_id)
        if t is not None and st.state != S.TASK_UNKNOWN:
            t["state"] = st.state

    async def _offers(self, offers: Any) -> None:
        now = asyncio.get_running_loop().time()
        active = sum(1 for t in self.tasks.values() if t["state"] not in TERMINAL)
        chosen = None
        if self.launching and active < MAX_ACTIVE and now - self._last_launch >= LAUNCH_EVERY:
            chosen = next((o for o in offers
                           if Resources.from_proto(o.resources).contains(TASK)), None)
        rest = [o.id for o in offers if o is not chosen]
        if rest:
            with contextlib.suppress(FrameworkError):
                await self.fw.decline(rest, refuse_seconds=1.0)
        if chosen is None:
            return
        self._last_launch = now
        self.seq += 1
        task_id = f"fz-{self.seq:05d}"
        roll = self.rng.random()
        argv = (["sleep", "3600"] if roll < 0.5 else
                ["sleep", str(self.rng.randint(1, 4))] if roll < 0.85 else
                ["sh", "-c", "sleep 1; exit 3"])
        info = common_pb2.TaskInfo(task_id=task_id, name=task_id, agent_id=chosen.agent_id,
                                   resources=TASK.to_proto(),
                                   command=common_pb2.CommandInfo(argv=argv))
        info.kill_policy.grace_period_seconds = 0.5
        try:
            await self.fw.launch([chosen.id], [info])
        except FrameworkError as e:
            # Ambiguous: the master may have it; the final state says (checker).
            self.h.op("launch", task_id, False, str(e))
            return
        self.tasks[task_id] = {"agent_id": chosen.agent_id, "state": S.TASK_STAGING,
                               "long": argv[1] == "3600"}
        self.h.add("launch", task_id=task_id, agent_id=chosen.agent_id, t=self.h.now(),
                   argv=argv)

    async def _reconcile(self) -> None:
        live = [(tid, t["agent_id"]) for tid, t in self.tasks.items()
                if t["state"] not in TERMINAL]
        try:
            await self.fw.reconcile(live)
            self.h.op("reconcile", f"{len(live)} tasks", True)
        except FrameworkError as e:
            self.h.op("reconcile", f"{len(live)} tasks", False, str(e))

    async def _kill(self, task_id: str, attempts: int = 10) -> bool:
        """Ask until the cluster accepts (a kill it never accepted is not its promise)."""
        for _ in range(attempts):
            try:
                await self.fw.kill(task_id, self.tasks.get(task_id, {}).get("agent_id", ""))
                self.h.op("kill", task_id, True)
                return True
            except FrameworkError as e:
                self.h.op("kill", task_id, False, str(e))
                if e.code == grpc.StatusCode.NOT_FOUND:
                    return False   # the master runs no such task: nothing to kill
                await asyncio.sleep(1.0)
        return False

    async def _killer(self) -> None:
        while True:
            await asyncio.sleep(KILL_EVERY)
            running = sorted(tid for tid, t in self.tasks.items()
                             if t["long"] and t["state"] == S.TASK_RUNNING)
            if running:
                await self._kill(self.rng.choice(running))

    async def _kill_all(self, deadline: float = 90.0) -> None:
        """Kill every task not yet terminal (ours, and any the masters have of
        this framework), wait for them to end, then reconcile them all once."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        for tid in [tid for tid, t in self.tasks.items() if t["state"] not in TERMINAL]:
            await self._kill(tid)
        while loop.time() < end and any(t["state"] not in TERMINAL for t in self.tasks.values()):
            await asyncio.sleep(0.5)
        everything = [(tid, t["agent_id"]) for tid, t in self.tasks.items()]
        with contextlib.suppress(FrameworkError):
            await self.fw.reconcile(everything)
            self.h.op("reconcile", f"{len(everything)} tasks (final)", True)
        await asyncio.sleep(3.0)   # the answers come as updates

    def finish(self, timeout: float = 150.0) -> None:
        """Stop launching, kill everything, reconcile; returns when done."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._done.wait(timeout)


# -- apps ----------------------------------------------------------------------------------------
APPS = {"/faults/a": 2, "/faults/b": 1}


class _Part:
    """A workload part that runs `_run` in a daemon thread of its own, given
    `join_seconds` to end once its stop event is set."""

    name = ""
    join_seconds = 60.0

    def __init__(self, lab: Lab, history: History, rng: random.Random,
                 stop: threading.Event) -> None:
        self.lab, self.h, self.rng, self.stop = lab, history, rng, stop
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(self.join_seconds)

    def alive(self) -> bool:
        """Whether its thread still runs (after join: it outlived the wait)."""
        return self._thread.is_alive()


def _tries(n: int, attempt: Callable[[], bool]) -> None:
    """Call `attempt` until it returns True, at most `n` times, HEALED_RETRY
    seconds apart (each attempt records its own operation)."""
    for i in range(n):
        if attempt():
            return
        if i + 1 < n:
            time.sleep(HEALED_RETRY)


class AppsWorkload(_Part):
    """A thread: creates APPS, then every few seconds scales, restarts or
    redeploys one; `desired` is each app's instance count as last accepted."""

    name, join_seconds = "apps", 60.0

    def __init__(self, lab: Lab, history: History, rng: random.Random,
                 stop: threading.Event) -> None:
        super().__init__(lab, history, rng, stop)
        self.desired: dict[str, int] = {}
        self.version: dict[str, int] = {}

    def definition(self, app_id: str, instances: int) -> dict[str, Any]:
        """/faults/b is on the agents' bridge network (a veth and an IPAM lease each)."""
        app = {"id": app_id, "cmd": "sleep 3600", "cpus": 0.05, "mem": 16,
               "instances": instances, "backoffSeconds": 1, "backoffFactor": 1.0,
               "env": {"FAULTS_VERSION": str(self.version.get(app_id, 0))},
               "unreachableStrategy": {"inactiveAfterSeconds": 1, "expungeAfterSeconds": 2}}
        if app_id == "/faults/b":
            app["networks"] = [{"mode": "container/bridge"}]
        return app

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Through each apps service in turn (a standby passes it to the leader)."""
        last: Exception | None = None
        for url in self.rng.sample(self.lab.apps, len(self.lab.apps)):
            try:
                return http_json(url + path, method, body, timeout=10)
            except urllib.error.HTTPError as e:
                if e.code < 500:
                    raise
                last = e
            except (OSError, ValueError) as e:
                last = e
        raise OSError(f"no apps service took it: {last}")

    def _put(self, app_id: str, instances: int, kind: str) -> bool:
        for _ in range(10):
            if self.stop.is_set() and kind != "create":
                return False
            try:
                self.request("PUT", f"/v2/apps{app_id}?force=true",
                             self.definition(app_id, instances))
                self.desired[app_id] = instances
                self.h.op(kind, app_id, True, f"instances={instances}")
                return True
            except (OSError, ValueError) as e:
                self.h.op(kind, app_id, False, str(e)[:200])
                self.stop.wait(1.0)
        return False

    def _run(self) -> None:
        for app_id, n in APPS.items():
            self._put(app_id, n, "app-create")
        while not self.stop.wait(self.rng.uniform(3.0, 6.0)):
            app_id = self.rng.choice(sorted(self.desired))
            roll = self.rng.random()
            if roll < 0.5:
                self._put(app_id, self.rng.randint(1, 3), "app-scale")
            elif roll < 0.75:
                try:
                    self.request("POST", f"/v2/apps{app_id}/restart?force=true", {})
                    self.h.op("app-restart", app_id, True)
                except (OSError, ValueError) as e:
                    self.h.op("app-restart", app_id, False, str(e)[:200])
            else:
                self.version[app_id] = self.version.get(app_id, 0) + 1
                self._put(app_id, self.desired[app_id], "app-redeploy")

    def after_healing(self, tries: int = HEALED_TRIES) -> None:
        """Redeploy every app once more (a new version, same count), up to
        `tries` times each, a "healed-app-redeploy" operation per try."""
        def redeploy(app_id: str) -> bool:
            try:
                self.request("PUT", f"/v2/apps{app_id}?force=true",
                             self.definition(app_id, self.desired[app_id]))
            except (OSError, ValueError) as e:
                self.h.op("healed-app-redeploy", app_id, False, str(e)[:200])
                return False
            self.h.op("healed-app-redeploy", app_id, True)
            return True

        for app_id in sorted(self.desired):
            self.version[app_id] = self.version.get(app_id, 0) + 1
            _tries(tries, lambda app_id=app_id: redeploy(app_id))

    def observed(self) -> dict[str, dict[str, int]]:
        """{app id: {"desired", "instances", "running", "deploying"}} as the
        apps API says now ("deploying": its deployments in progress, Marathon's
        app "deployments"; mid-way through one, old and new instances both run)."""
        out = {}
        for app_id, want in self.desired.items():
            app = self.request("GET", f"/v2/apps{app_id}?embed=apps.tasks")["app"]
            running = sum(1 for t in app.get("tasks", []) if t.get("state") == "TASK_RUNNING")
            out[app_id] = {"desired": want, "instances": int(app["instances"]),
                           "running": running, "deploying": len(app.get("deployments", []))}
        return out

    def remove(self) -> None:
        for app_id in list(self.desired):
            with contextlib.suppress(OSError, ValueError):
                self.request("DELETE", f"/v2/apps{app_id}?force=true")


# -- containers ----------------------------------------------------------------------------------
CONTAINERS = ("fz-c1", "fz-c2")


class ContainersWorkload(_Part):
    """A thread: runs CONTAINERS (`juggler run -d`, the agent's filesystem),
    then every few seconds stops or starts one; `desired` is "running" or
    "exited" as last accepted."""

    name, join_seconds = "containers", 90.0

    def __init__(self, lab: Lab, history: History, rng: random.Random,
                 stop: threading.Event) -> None:
        super().__init__(lab, history, rng, stop)
        self.desired: dict[str, str] = {}

    def _cli(self, kind: str, name: str, *args: str, timeout: float = 30.0) -> bool:
        try:
            done = self.lab.juggler(*args, timeout=timeout)
            ok, why = done.returncode == 0, (done.stderr or done.stdout).strip()[-200:]
        except OSError as e:
            ok, why = False, str(e)
        except Exception as e:   # TimeoutExpired
            ok, why = False, f"{type(e).__name__}: {e}"[:200]
        self.h.op(kind, name, ok, "" if ok else why)
        return ok

    def _run(self) -> None:
        for name in CONTAINERS:
            for _ in range(5):
                if self._cli("container-run", name, "run", "-d", "--name", name, "--mem", "32M",
                             "--", "sleep", "3600"):
                    self.desired[name] = "running"
                    self._placed(name)
                    break
                if self.states().get(name):   # made after all (an ambiguous failure)
                    self.desired[name] = "running"
                    break
                self.stop.wait(1.0)
        while not self.stop.wait(self.rng.uniform(4.0, 8.0)):
            if not self.desired:
                return
            name = self.rng.choice(sorted(self.desired))
            verb = "stop" if self.desired[name] == "running" else "start"
            for _ in range(5):
                if self._cli(f"container-{verb}", name, verb, name):
                    self.desired[name] = "running" if verb == "start" else "exited"
                    if verb == "start":
                        self._placed(name)
                    break
                if self.stop.wait(1.0):
                    break

    def after_healing(self, tries: int = HEALED_TRIES) -> None:
        """Start every stopped container and restart every running one (each
        try a "healed-container-start" or "-restart" operation, up to `tries`
        each): every container is then desired running, wherever its agent
        was taken or drained during the campaign. A restart stops with a 1 s
        grace period (`sleep` as PID 1 ignores SIGTERM: Docker's 10 s would
        come first), and each call may take HEALED_TIMEOUT seconds: on a
        healed cluster, a call that takes longer is an anomaly too."""
        states = self.states()
        for name in sorted(self.desired):
            verb = "restart" if states.get(name) == "running" else "start"
            args = (verb, "-t", "1", name) if verb == "restart" else (verb, name)

            def start(name: str = name, verb: str = verb, args: tuple[str, ...] = args) -> bool:
                if not self._cli(f"healed-container-{verb}", name, *args,
                                 timeout=HEALED_TIMEOUT):
                    return False
                self.desired[name] = "running"
                return True
            _tries(tries, start)

    def states(self) -> dict[str, str]:
        """{name: docker state} for our containers (raises nothing: {} when unknown)."""
        try:
            done = self.lab.juggler("ps", "-a", "--format", "{{.Names}} {{.State}}", timeout=30)
        except Exception:   # TimeoutExpired: unknown
            return {}
        out = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].lstrip("/") in CONTAINERS:
                out[parts[0].lstrip("/")] = parts[1]
        return out

    def observed(self) -> dict[str, dict[str, Any]]:
        """{name: {"desired", "state"}}, and for one not in its desired state
        "why": its inspect's State (exit code, error, times), to tell apart
        an exit of its own, a kill and a start that never took."""
        states = self.states()
        out: dict[str, dict[str, Any]] = {}
        for name, want in self.desired.items():
            out[name] = {"desired": want, "state": states.get(name, "missing")}
            if out[name]["state"] != want:
                out[name]["why"] = self._inspect_state(name)
        return out

    def _inspect(self, name: str) -> dict[str, Any]:
        """`juggler inspect NAME`'s object (raises what the CLI or JSON raises)."""
        return json.loads(self.lab.juggler("inspect", name, timeout=30).stdout)[0]

    def _inspect_state(self, name: str) -> dict[str, Any]:
        try:
            state = self._inspect(name)["State"]
        except Exception as e:   # TimeoutExpired, not JSON: what was seen
            return {"unknown": f"{type(e).__name__}: {e}"[:200]}
        return {k: state.get(k) for k in ("Status", "ExitCode", "Error", "OOMKilled",
                                          "StartedAt", "FinishedAt")}

    def _placed(self, name: str) -> None:
        """Record the agent a run just started went to ("container-placed"):
        the checker lets a drain of that agent stop it (drained_since_started)."""
        t = self.h.now()   # a drain answered after the start but before this counts
        try:
            agent_id = self._inspect(name)["Node"]["ID"] or None
        except Exception:   # unknown: a record all the same (no drain matches it)
            agent_id = None
        self.h.add("container-placed", name=name, agent_id=agent_id, t=t)

    def remove(self) -> None:
        for name in self.desired:
            with contextlib.suppress(Exception):
                self.lab.juggler("rm", "-f", name, timeout=30)


# -- maintenance ---------------------------------------------------------------------------------
DRAIN_EVERY = (25.0, 40.0)   # seconds between drains
DRAIN_DEADLINE = 45.0        # a drained agent is DOWN (runs nothing) within this


class DrainWorkload(_Part):
    """A thread: every DRAIN_EVERY seconds, DrainAgent on a random agent; once
    the leader says it is DOWN, or after DRAIN_DEADLINE, records "drained"
    with the tasks the leader still has running there ("left"), then UpAgent."""

    name, join_seconds = "drain", DRAIN_DEADLINE + 60

    def _call(self, kind: str, target: str, method: str, request: Any) -> bool:
        for _ in range(20):
            try:
                observe.on_leader(self.lab, method, request)
                self.h.op(kind, target, True)
                return True
            except OSError as e:
                self.h.op(kind, target, False, str(e))
                time.sleep(1.0)
        return False

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(*DRAIN_EVERY)):
            try:
                agents = observe.on_leader(self.lab, "GetAgents", operator_pb2.GetAgentsRequest())
            except OSError:
                continue
            ids = sorted(a.info.id for a in agents.agents
                         if a.state == operator_pb2.AGENT_ACTIVE)
            if not ids:
                continue
            agent_id = self.rng.choice(ids)
            if not self._call("drain", agent_id, "DrainAgent",
                              operator_pb2.DrainAgentRequest(agent_id=agent_id)):
                continue
            end = time.monotonic() + DRAIN_DEADLINE
            left: list[str] = []
            while time.monotonic() < end:
                try:
                    state = observe.on_leader(self.lab, "GetState",
                                              operator_pb2.GetStateRequest())
                except OSError:
                    time.sleep(1.0)
                    continue
                left = sorted(t.info.task_id for t in state.tasks if t.agent_id == agent_id
                              and t.state not in TERMINAL)
                down = any(a.info.id == agent_id
                           and a.maintenance == operator_pb2.MAINTENANCE_DOWN
                           for a in state.agents)
                if down and not left:
                    break
                time.sleep(1.0)
            self.h.add("drained", agent_id=agent_id, t=self.h.now(), left=left)
            self._call("undrain", agent_id, "UpAgent",
                       operator_pb2.UpAgentRequest(agent_id=agent_id))
