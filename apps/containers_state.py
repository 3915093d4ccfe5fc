"""The containers' pure core: requests, offers, status updates and time in;
commands (apps/commands.py) out. No I/O; the clock and ids are injected.

What a user asks (create, start, stop, kill, restart, rm, rename) is
recorded as the container's desired state and persisted before anything is
sent; the runs (tasks) then follow it:

- start: a new run (`<id12>.<generation>`) waits for an offer from the
  container's agent (any agent that fits before its first run) and is
  launched there; a run waiting for fixed host ports that every agent it may
  use has allocated fails (`on_offers`), as Docker's start, and a failed or
  given-up start (`fail_start`) leaves the container stopped: nothing starts
  it later but another start;
- stop: the run is killed with the stop signal and timeout; the container
  is not restarted by its policy;
- a run that ends: the restart policy decides (containers.py); a container
  whose agent is gone is DEAD;
- rm -f: the run is killed at once, the record deleted; the writable layer
  is deleted on the agent, retried until it is (a RemoveLayer command each
  time `layer_retry_seconds` pass).

Errors are ContainerError with Docker's status and message; a refused
request changed nothing. The shell (service.py) routes to this core the
status updates of the tasks it `owns`, and offers before the apps' core sees
what is left of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from juggler.apps.commands import Command, Kill, Launch, Persist, RemoveLayer, Revive, Signal
from juggler.apps.container_tasks import (
    NETWORKING_FAILED,
    end_error,
    ports_unavailable,
    take_from,
    task_for,
)
from juggler.apps.containers import (
    CONTAINER,
    CS,
    DEFAULT_STOP_TIMEOUT,
    ID_RE,
    Container,
    ContainerConfig,
    ContainerError,
    check_name,
    next_delay,
    restart_wanted,
)
from juggler.common import task_check, task_states
from juggler.common.clock import Clock
from juggler.common.ranges import Ranges
from juggler.common.resources import ResourceError, Resources
from juggler.common.task_check import TaskError
from juggler.v1 import common_pb2 as pb

LAYER_RETRY_SECONDS = 5.0
REMOVED_KEPT = 256          # removed containers remembered for wait?condition=removed
MAX_DROPS = 5               # launches refused in a row before the start fails
EXIT_START_FAILED = 128     # dockerd's exit code for a start that failed with none set
AgentPorts = tuple[str, Ranges, Ranges]   # an agent's (name, total ports, allocated ports)

_GONE = frozenset({pb.TASK_GONE, pb.TASK_GONE_BY_OPERATOR, pb.TASK_LOST})
_AGENT_BACK = frozenset({pb.REASON_AGENT_RESTARTED, pb.REASON_RECONCILIATION})

# Generated names, as Docker's "adjective_surname" (the words are our own list).
_ADJECTIVES = ("agile", "bold", "brave", "calm", "clever", "eager", "fancy", "gentle", "happy",
               "jolly", "keen", "lucid", "merry", "nimble", "proud", "quiet", "quick", "shiny",
               "steady", "sunny", "swift", "tender", "vivid", "witty", "zealous")
_SURNAMES = ("babbage", "curie", "dijkstra", "euler", "fermi", "gauss", "hopper", "kepler",
             "knuth", "lamport", "lovelace", "meitner", "noether", "pascal", "ritchie", "shannon",
             "thompson", "turing", "volta", "wozniak")


SIGKILL = task_check.parse_signal("KILL")
SIGTERM = task_check.parse_signal("TERM")


class ContainersState:
    """Every container of the service (`containers`, by id)."""

    def __init__(self, clock: Clock, new_id: Callable[[], str], *,
                 rng: random.Random | None = None) -> None:
        self.clock = clock
        self.new_id = new_id
        self.rng = rng or random.Random()
        self.containers: dict[str, Container] = {}
        self.names: dict[str, str] = {}          # name → id
        self.tasks: dict[str, str] = {}          # current task id → container id
        # (agent id, layer name) → (agent address, monotonic time of the next try)
        self.layer_removals: dict[tuple[str, str], tuple[str, float]] = {}
        self.removed: dict[str, int] = {}        # id → last exit code (recently removed)
        # id → clients attached before its next run (not kept: they hold connections here)
        self.attaches_waiting: dict[str, int] = {}
        self.reconciling = True
        self._out: list[Command] = []

    # -- helpers -----------------------------------------------------------------------
    def _take(self) -> list[Command]:
        out, self._out = self._out, []
        return out

    def _save(self, c: Container) -> None:
        self._out.append(Persist({f"containers/{c.id}": c.record()}))

    def attach_waits(self, cid: str, waiting: bool) -> None:
        """A client attached to `cid` before its next run started (docker run,
        docker start -a: they attach, then start) — or (False) it left or got
        its run. A run launched while one waits holds its output until a
        client attaches with back-pressure (container_tasks.task_for): the
        client misses nothing the run writes first, as with Docker."""
        count = self.attaches_waiting.get(cid, 0) + (1 if waiting else -1)
        if count > 0:
            self.attaches_waiting[cid] = count
        else:
            self.attaches_waiting.pop(cid, None)

    def owns(self, task_id: str) -> bool:
        """Whether `task_id` is the current run of one of the containers."""
        return task_id in self.tasks

    def find(self, ref: str) -> Container:
        """A container by name ("/x" or "x"), full id or unique id prefix
        (Docker's lookup order). Raises ContainerError 404, or 400 for a
        prefix several ids share."""
        ref = ref.strip()
        name = ref.lstrip("/")
        if ref in self.containers:
            return self.containers[ref]
        if name in self.names:
            return self.containers[self.names[name]]
        if ref and all(ch in "0123456789abcdef" for ch in ref):
            found = [c for cid, c in self.containers.items() if cid.startswith(ref)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise ContainerError(400, f"multiple IDs found with provided prefix: {ref}")
        raise ContainerError(404, f"No such container: {ref}")

    def _new_name(self) -> str:
        while True:
            name = f"{self.rng.choice(_ADJECTIVES)}_{self.rng.choice(_SURNAMES)}"
            if name not in self.names:
                return name
            name = f"{name}{self.rng.randint(1, 9)}"   # Docker appends a digit too
            if name not in self.names:
                return name

    def _check_free(self, name: str) -> None:
        if name in self.names:
            raise ContainerError(409, f'Conflict. The container name "/{name}" is already in '
                                      f'use by container "{self.names[name]}". You have to '
                                      "remove (or rename) that container to be able to reuse "
                                      "that name.")

    # -- requests ----------------------------------------------------------------------
    def create(self, config: ContainerConfig, name: str = "") -> tuple[Container, list[Command]]:
        """A new container in CREATED. Raises ContainerError 400 (bad config or
        name), 409 (the name is taken)."""
        name = check_name(name) if name else self._new_name()
        self._check_free(name)
        if config.auto_remove and config.restart.name != "no":
            raise ContainerError(400, "can't create 'AutoRemove' container with restart policy")
        if config.image and config.rootfs:
            raise ContainerError(400, "give an image or a root filesystem, not both")
        cid = self.new_id()
        if not ID_RE.match(cid):
            raise ValueError(f"container ids are 64 hex digits, not {cid!r}")
        c = Container(id=cid, name=name, created=self.clock.time(), config=config)
        c.task_id = f"{c.short_id}.0"
        try:
            probe = task_for(c, "")
            task_check.check(probe)
            task_check.task_labels(probe.labels, probe.task_id)
        except (TaskError, ResourceError) as e:
            raise ContainerError(400, str(e)) from None
        if not probe.command.argv and not config.image:
            raise ContainerError(400, "No command specified")
        c.task_id = ""
        CONTAINER.begin(c, CS.CREATED, "created", c.created)
        self.containers[cid] = c
        self.names[name] = cid
        self._save(c)
        return c, self._take()

    def start(self, ref: str) -> tuple[bool, list[Command]]:
        """Start `ref` (False: it runs already, Docker's 304). A container
        bound to an agent starts there again, with its writable layer.
        Raises ContainerError 404, 409 (DEAD)."""
        c = self.find(ref)
        if c.status == CS.DEAD:
            why = c.error or "its agent is gone"
            raise ContainerError(409, f"cannot start container {c.name}: {why}; remove it "
                                      "(docker rm)")
        if c.status in (CS.RUNNING, CS.STARTING):
            return False, []
        c.desired, c.stopped_by_user = "running", False
        if c.status == CS.RESTARTING:
            c.restart_at = self.clock.now()
            return True, self._tick_one(c)
        self._begin_run(c, "start requested")
        return True, self._take()

    def stop(self, ref: str, timeout: float | None = None) -> tuple[bool, list[Command]]:
        """Stop `ref`: its stop signal, then SIGKILL after `timeout` seconds
        (default: its StopTimeout, else 10). False: it was not running
        (Docker's 304)."""
        c = self.find(ref)
        if c.status not in (CS.RUNNING, CS.STARTING, CS.RESTARTING):
            return False, []
        c.desired, c.stopped_by_user, c.restart_after_stop = "stopped", True, False
        if c.status == CS.RESTARTING or not c.launched:
            self._end_run(c, "stopped before it ran", exit_code=c.exit_code)
        else:
            grace = timeout if timeout is not None else (
                c.config.stop_timeout if c.config.stop_timeout is not None
                else DEFAULT_STOP_TIMEOUT)
            self._send_kill(c, max(0.0, grace), c.config.stop_signal)
        return True, self._take()

    def restart(self, ref: str, timeout: float | None = None) -> list[Command]:
        """Stop (as stop) then start again; a container that is not running
        just starts. Raises as start."""
        c = self.find(ref)
        if c.status in (CS.RUNNING, CS.STARTING) and c.launched:
            _, out = self.stop(ref, timeout)
            c.restart_after_stop = True
            return out
        if c.status in (CS.RUNNING, CS.STARTING):   # not launched yet: nothing to stop
            return []
        return self.start(ref)[1]

    def kill(self, ref: str, signal: str = "KILL") -> list[Command]:
        """`docker kill -s SIGNAL`: SIGKILL ends the run; the stop signal is
        delivered and keeps the policy from restarting the run once it ends (a
        process that traps it runs on, as in Docker); another signal is only
        delivered.
        Raises ContainerError 404, 409 (not running)."""
        c = self.find(ref)
        if c.status not in (CS.RUNNING, CS.STARTING, CS.RESTARTING):
            raise ContainerError(409, f"Cannot kill container: {ref}: Container {c.id} is not "
                                      "running")
        try:   # the check the agent makes of it too (names, any case, or 1 to 64)
            sig = task_check.parse_signal(signal or "KILL")
        except TaskError as e:
            raise ContainerError(400, f"Cannot kill container: {ref}: {e}") from None
        stop = (task_check.parse_signal(c.config.stop_signal) if c.config.stop_signal
                else SIGTERM)   # checked when the container was created
        ends = sig in (SIGKILL, stop)
        if ends and (c.status == CS.RESTARTING or not c.launched):
            c.desired, c.stopped_by_user, c.restart_after_stop = "stopped", True, False
            self._end_run(c, f"killed ({task_check.signal_name(sig)}) before it ran",
                          exit_code=c.exit_code)
            return self._take()
        if c.status != CS.RUNNING and not ends:   # refused before anything changed
            raise ContainerError(409, f"Cannot kill container: {ref}: Container {c.id} is not "
                                      "running")
        if sig == SIGKILL or (ends and c.status != CS.RUNNING):
            # SIGKILL, or the stop signal to a run launched but not running
            # yet: the run ends, and the policy does not restart it.
            c.desired, c.stopped_by_user, c.restart_after_stop = "stopped", True, False
            self._send_kill(c, 0.0 if sig == SIGKILL else None,
                            "" if sig == SIGKILL else signal)
        else:
            if ends:
                # The stop signal to a running container is only delivered, as
                # Docker's (moby's ExitOnNext): no SIGKILL follows, a process
                # that traps it runs on; when the run ends, by itself or by a
                # later stop, the policy does not restart it.
                c.stopped_by_user, c.restart_after_stop = True, False
                self._save(c)
            self._out.append(Signal(c.agent_address, c.task_id, signal))
        return self._take()

    def remove(self, ref: str, force: bool = False) -> tuple[Container, list[Command]]:
        """`docker rm [-f]`. Raises ContainerError 404, 409 (running or
        restarting, without force: Docker's message)."""
        c = self.find(ref)
        active = c.status in (CS.RUNNING, CS.STARTING, CS.RESTARTING)
        if active and not force:
            what = "restarting" if c.status == CS.RESTARTING else "running"
            raise ContainerError(409, f'cannot remove container "/{c.name}": container is '
                                      f"{what}: stop the container before removing or force "
                                      "remove")
        if c.launched and c.status in (CS.RUNNING, CS.STARTING):
            self._out.append(Kill(c.task_id, c.agent_id, 0.0))
        self._delete(c)
        return c, self._take()

    def rename(self, ref: str, new_name: str) -> list[Command]:
        """Raises ContainerError 404, 400 (bad or same name), 409 (taken)."""
        c = self.find(ref)
        name = check_name(new_name)
        if name == c.name:
            raise ContainerError(400, "Renaming a container with the same name as its current "
                                      "name")
        self._check_free(name)
        del self.names[c.name]
        c.name = name
        self.names[name] = c.id
        self._save(c)
        return self._take()

    # -- the master's events -------------------------------------------------------------
    def on_updates(self, statuses: Iterable[pb.TaskStatus]) -> list[Command]:
        """Status updates of the tasks this core owns (others are ignored)."""
        for status in statuses:
            cid = self.tasks.get(status.task_id)
            c = self.containers.get(cid) if cid else None
            if c is None or c.task_id != status.task_id:
                continue
            self._observe(c, status)
        return self._take()

    def _observe(self, c: Container, status: pb.TaskStatus) -> None:
        state = status.state
        at = status.timestamp or self.clock.time()
        if state == pb.TASK_UNKNOWN:
            # Explicit reconciliation: the master never heard of it, or forgot it.
            if c.status in (CS.RUNNING, CS.STARTING) and c.launched:
                c.launched = False
                c.error = "its task was lost: the master does not know it"
                self._end_run(c, "the master does not know its task", exit_code=c.exit_code,
                              lost=True)
            return
        if state in (pb.TASK_STAGING, pb.TASK_STARTING):
            if not c.launched:
                c.launched = True
                self._save(c)
            return
        if state in (pb.TASK_RUNNING, pb.TASK_KILLING):
            changed = not c.launched or c.unreachable or c.status != CS.RUNNING
            c.launched, c.unreachable = True, False
            if status.HasField("pid"):
                changed = changed or c.pid != status.pid
                c.pid = status.pid
            ips = list(status.ip_addresses)  # its CNI network's (NETWORK_BRIDGE)
            if ips and c.ip_address != ips[0]:
                c.ip_address, changed = ips[0], True
            if c.status == CS.STARTING:
                # What the last run left is reset, as Docker does at a start.
                c.started_at, c.error, c.exit_code, c.oom_killed = at, "", 0, False
                c.move(CS.RUNNING, "its task runs", at)
            if changed:
                self._save(c)
            return
        if state == pb.TASK_UNREACHABLE:
            if not c.unreachable:
                c.unreachable = True
                self._save(c)
            return
        if not task_states.is_terminal(state):
            return
        if state == pb.TASK_DROPPED and c.status == CS.STARTING and \
                c.desired == "running" and c.drops < MAX_DROPS:
            c.drops += 1
            self.tasks.pop(c.task_id, None)
            c.generation += 1
            c.task_id = f"{c.short_id}.{c.generation}"
            c.launched = False
            self.tasks[c.task_id] = c.id
            self._save(c)
            self._out.append(Revive())
            return
        if state in _GONE and not (state == pb.TASK_GONE and status.reason in _AGENT_BACK):
            # The agent is gone for good (or the task with it): so is the
            # writable layer. A TASK_GONE because its agent is back without the
            # task (it re-registered without it, or a reconciliation's answer
            # says it did: master/reconciliation.py) only ended the run: the
            # agent and its layer are there, and the container may start there
            # again, as a Docker container whose process died while its daemon
            # was down.
            c.error = (f"its agent {c.hostname or c.agent_id} is gone, and its writable layer "
                       f"with it ({status.message or task_states.name(state)})")
            self.tasks.pop(c.task_id, None)
            c.launched, c.pid, c.finished_at = False, 0, at
            c.exits += 1
            c.move(CS.DEAD, task_states.name(state), at)
            c.desired = "stopped"
            self._save(c)
            if c.config.auto_remove:
                self._delete(c)
            return
        code = task_states.exit_code(status)
        c.oom_killed = bool(status.oom_killed) or status.reason == \
            pb.REASON_CONTAINER_LIMITATION_MEMORY
        c.error = end_error(status)
        self._end_run(c, f"{task_states.name(state)}: {status.message}".rstrip(": "),
                      exit_code=code, at=at)

    def _end_run(self, c: Container, why: str, *, exit_code: int, at: float | None = None,
                 lost: bool = False) -> None:
        """The current run is over: restart it (policy, or `restart`), or stop."""
        at = at if at is not None else self.clock.time()
        was_running = c.status == CS.RUNNING
        ran = at - c.started_at if was_running and c.started_at else 0.0
        self.tasks.pop(c.task_id, None)
        if was_running or lost:
            # A run that never started is no exit (docker wait's next-exit does
            # not return for a failed start; the start's error says it).
            c.exits += 1
            c.finished_at = at
        c.launched, c.pid, c.unreachable, c.drops = False, 0, False, 0
        c.exit_code = exit_code
        if c.restart_after_stop:
            c.restart_after_stop, c.stopped_by_user, c.desired = False, False, "running"
            if c.status != CS.EXITED:
                c.move(CS.EXITED, why, at)
            self._begin_run(c, "restart requested")
            return
        if c.desired == "running" and restart_wanted(c.config.restart, exit_code,
                                                     c.restart_count, c.stopped_by_user):
            c.delay = next_delay(c.delay, ran)
            c.restart_at = self.clock.now() + c.delay
            if c.status != CS.RESTARTING:
                c.move(CS.RESTARTING, f"{why}; restarting in {c.delay:g} s "
                                      f"(--restart {c.config.restart.text()})", at)
            self._save(c)
            return
        c.desired = "stopped"
        if c.status != CS.EXITED:
            c.move(CS.EXITED, why, at)
        self._save(c)
        if c.config.auto_remove:
            self._delete(c)

    def _begin_run(self, c: Container, why: str) -> None:
        self.tasks.pop(c.task_id, None)
        c.generation += 1
        c.task_id = f"{c.short_id}.{c.generation}"
        c.launched, c.pid, c.drops = False, 0, 0
        c.host_ports, c.ip_address = [], ""   # given again by the launch's offer
        self.tasks[c.task_id] = c.id
        c.move(CS.STARTING, why, self.clock.time())
        self._save(c)
        self._out.append(Revive())

    def _delete(self, c: Container) -> None:
        self.containers.pop(c.id, None)
        if self.names.get(c.name) == c.id:
            del self.names[c.name]
        self.tasks.pop(c.task_id, None)
        self.removed[c.id] = c.exit_code
        while len(self.removed) > REMOVED_KEPT:
            self.removed.pop(next(iter(self.removed)))
        writes: dict[str, Any] = {f"containers/{c.id}": None}
        if c.agent_id and (c.config.image or c.config.rootfs):
            self.layer_removals[(c.agent_id, c.id)] = (c.agent_address, self.clock.now())
            writes[f"layer_removals/{c.agent_id}/{c.id}"] = {"agentAddress": c.agent_address}
            self._out.append(Persist(writes))
            self._out.append(RemoveLayer(c.agent_id, c.agent_address, c.id))
            self.layer_removals[(c.agent_id, c.id)] = (
                c.agent_address, self.clock.now() + LAYER_RETRY_SECONDS)
        else:
            self._out.append(Persist(writes))

    @staticmethod
    def _stopping(c: Container) -> bool:
        return c.desired == "stopped" and c.launched and c.status in (CS.RUNNING, CS.STARTING)

    def _send_kill(self, c: Container, grace: float | None = None, signal: str = "") -> None:
        """Kill the current run; the kill is re-driven (kill_failed, resend_kills,
        tick) until its end is seen."""
        c.kill_grace = grace if grace is not None else (
            c.config.stop_timeout if c.config.stop_timeout is not None else DEFAULT_STOP_TIMEOUT)
        c.kill_signal, c.kill_sent = signal, True
        self._save(c)   # a restarted service sends the same kill (`stop -t N`) again
        self._out.append(Kill(c.task_id, c.agent_id, c.kill_grace, c.kill_signal))

    def kill_failed(self, task_id: str) -> None:
        """The master did not take a kill (a failover, a lost connection): the
        next tick sends it again."""
        cid = self.tasks.get(task_id)
        if cid is not None and cid in self.containers:
            self.containers[cid].kill_sent = False

    def resend_kills(self) -> list[Command]:
        """Every kill not yet seen through (a new master leader after a failover)."""
        for c in self.containers.values():
            if self._stopping(c):
                self._send_kill(c, c.kill_grace, c.kill_signal)
        return self._take()

    def layer_removed(self, agent_id: str, name: str) -> list[Command]:
        """The shell removed a writable layer (or its agent is gone for good)."""
        if self.layer_removals.pop((agent_id, name), None) is not None:
            self._out.append(Persist({f"layer_removals/{agent_id}/{name}": None}))
        return self._take()

    # -- offers and time ----------------------------------------------------------------
    def waiting(self) -> list[Container]:
        """Containers whose run waits for an offer."""
        return [c for c in self.containers.values()
                if c.status == CS.STARTING and not c.launched]

    def wants_offers(self) -> bool:
        return not self.reconciling and bool(self.waiting())

    def on_offers(self, offers: Iterable[pb.Offer],
                  agents: Mapping[str, AgentPorts] | None = None
                  ) -> tuple[list[Command], list[pb.Offer]]:
        """Launch waiting runs where they fit (a container that ran before:
        on its own agent only). Returns the commands and the offers left
        untouched, for the apps' core. `agents` (agent id → (name, total
        ports, allocated ports), the master's view taken before these offers;
        None: not known) decides, as Docker's start does, the runs that wait
        for fixed host ports every agent they may use has allocated (to other
        runs, or to those these offers just launched): their start fails with
        dockerd's "port is already allocated" (`fail_start`)."""
        offers = list(offers)
        waiting = [] if self.reconciling else sorted(self.waiting(), key=lambda c: c.created)
        if not waiting:
            return [], offers
        rest = self._place(offers, waiting)
        if agents is not None:
            self._fail_taken_ports(waiting, agents)
        return self._take(), rest

    def _fail_taken_ports(self, waiting: list[Container],
                          agents: Mapping[str, AgentPorts]) -> None:
        held = dict(agents)
        for c in waiting:   # what these offers just gave counts as allocated
            if c.launched and c.agent_id in held and c.host_ports:
                name, total, allocated = held[c.agent_id]
                given = Ranges.single(*(int(r["hostPort"]) for r in c.host_ports))
                held[c.agent_id] = (name, total, allocated | given)
        for c in waiting:
            if c.launched or c.status != CS.STARTING:
                continue
            usable = [v for aid, v in held.items() if not c.agent_id or aid == c.agent_id]
            why = ports_unavailable(c, usable)
            if why.startswith(NETWORKING_FAILED):
                self._fail_start(c, why)

    def fail_start(self, ref: str, error: str) -> list[Command]:
        """A run that waits for an offer will not start: its start failed
        (`error`: State.Error) or its client was told it did not start in
        time. The container goes back to not running (its desired state
        stopped), as a Docker start that failed: nothing starts it later but
        another start. No-op for a run launched already or not waiting."""
        self._fail_start(self.find(ref), error)
        return self._take()

    def refuse_start(self, ref: str, error: str) -> list[Command]:
        """A start refused before any run began (its fixed host ports taken
        on every agent it could use: dockerd's "Bind for 0.0.0.0:P failed"):
        the container stays as it was, with `error` as its State.Error and,
        when it has none, dockerd's exit code of a failed start (128)."""
        c = self.find(ref)
        c.error, c.exit_code = error, c.exit_code or EXIT_START_FAILED
        self._save(c)
        return self._take()

    def _fail_start(self, c: Container, error: str) -> None:
        if c.status != CS.STARTING or c.launched:
            return
        c.desired, c.stopped_by_user, c.restart_after_stop = "stopped", False, False
        c.error = error
        self._end_run(c, f"start failed: {error}", exit_code=c.exit_code or EXIT_START_FAILED)

    def _place(self, offers: list[pb.Offer], waiting: list[Container]) -> list[pb.Offer]:
        rest: list[pb.Offer] = []
        for offer in offers:
            available = Resources.from_proto(offer.resources)
            tasks: list[pb.TaskInfo] = []
            for c in waiting:
                if c.launched or (c.agent_id and c.agent_id != offer.agent_id):
                    continue
                taken = take_from(c, available, self.rng)
                if taken is None:
                    continue
                available = available - taken
                c.agent_id, c.hostname = offer.agent_id, offer.hostname
                c.agent_address = offer.agent_address
                c.launched = True
                tasks.append(task_for(c, offer.agent_id,
                                      hold_output=c.id in self.attaches_waiting))
                self._save(c)
            if tasks:
                self._out.append(Launch(offer.id, tasks))
            else:
                rest.append(offer)
        return rest

    def tick(self) -> list[Command]:
        """Time passed: restart delays end; layer removals are tried again."""
        now = self.clock.now()
        for c in list(self.containers.values()):
            if c.status == CS.RESTARTING and c.restart_at <= now:
                self._tick_one(c)
            elif self._stopping(c) and not c.kill_sent:
                self._send_kill(c, c.kill_grace, c.kill_signal)
        for (agent_id, name), (address, when) in list(self.layer_removals.items()):
            if when <= now:
                self._out.append(RemoveLayer(agent_id, address, name))
                self.layer_removals[(agent_id, name)] = (address, now + LAYER_RETRY_SECONDS)
        return self._take()

    def _tick_one(self, c: Container) -> list[Command]:
        c.restart_count += 1
        self._begin_run(c, f"restart {c.restart_count} (--restart {c.config.restart.text()})")
        return self._take()

    def next_wakeup(self) -> float | None:
        ends = [c.restart_at for c in self.containers.values() if c.status == CS.RESTARTING]
        ends += [when for _, when in self.layer_removals.values()]
        return min(ends) if ends else None

    # -- recovery ---------------------------------------------------------------------
    def recover(self, records: Iterable[dict[str, Any]],
                layer_removals: Iterable[tuple[str, str, str]] = ()) -> None:
        """The store's containers and pending layer removals (agent id, name,
        agent address), after a restart of the service. `always` containers
        stopped by their user start again (Docker: when the daemon restarts)."""
        now = self.clock.now()
        for r in records:
            c = Container.from_record(r)
            CONTAINER.begin(c, c.status, "recovered from the store", self.clock.time())
            self.containers[c.id] = c
            self.names[c.name] = c.id
            if c.task_id and c.status in (CS.STARTING, CS.RUNNING):
                self.tasks[c.task_id] = c.id
            if c.status == CS.RESTARTING:
                c.restart_at = now + c.delay
            c.restart_on_recovery = (c.config.restart.name == "always" and c.stopped_by_user
                                     and c.status == CS.EXITED)
        for agent_id, name, address in layer_removals:
            self.layer_removals[(agent_id, name)] = (address, now)
        self.reconciling = True

    def known_tasks(self) -> dict[str, str]:
        """Task id → agent id of every run that may be live (to reconcile)."""
        return {c.task_id: c.agent_id for c in self.containers.values()
                if c.task_id in self.tasks and c.launched}

    def unreachable_tasks(self) -> dict[str, str]:
        """Task id → agent id of the runs last seen UNREACHABLE (asked about
        again now and then: AppsState.unreachable_tasks says why)."""
        return {c.task_id: c.agent_id for c in self.containers.values()
                if c.unreachable and c.task_id in self.tasks}

    def reconciled(self, answers: dict[str, pb.TaskStatus]) -> list[Command]:
        """The master's answers about `known_tasks()`; ends reconciliation."""
        for task_id, status in answers.items():
            cid = self.tasks.get(task_id)
            if cid is not None and cid in self.containers:
                self._observe(self.containers[cid], status)
        self.reconciling = False
        for c in list(self.containers.values()):
            if self._stopping(c):
                # A stop recorded before the service went away: sent again.
                self._send_kill(c, c.kill_grace, c.kill_signal)
                continue
            if c.config.restart.name == "always" and c.stopped_by_user and \
                    c.status == CS.EXITED and c.desired == "stopped" and c.restart_on_recovery:
                c.restart_on_recovery = False
                c.stopped_by_user = False
                c.desired = "running"
                self._begin_run(c, "the service started (--restart always)")
        if self.waiting():
            self._out.append(Revive())
        return self._take()
