"""One task's supervisor: launch its container, report, kill on request, reap.

    start ─▶ launching ─▶ running ─▶ exited ─▶ (terminal update acked) ─▶ exit 0
                │            │
                │            ├─ kill ─▶ KILLING, SIGTERM (or the kill's signal),
                │            │          SIGKILL the cgroup after the grace period
                │            └─ signal ─▶ that signal to PID 1, nothing else
                └─ kill before launch ─▶ KILLED without running

A kill's first signal is the Kill message's `kill_policy.signal`, else the
task's (the agent put the image's StopSignal there when the task named none),
else SIGTERM. It goes to PID 1 for an argv task (as `docker stop`), to every
process of the task's cgroup for a shell command (as Mesos's command
executor): executor/kill.py says why and how. A kill for health
(`kill_when_unhealthy`) takes the same path. A `signal` message from the agent
(Agent.Signal, `docker kill -s`) goes to PID 1 only, as Docker's.

The TASK_RUNNING updates carry the task's PID 1 as the host sees it
(`TaskStatus.pid`, Docker's State.Pid); the terminal one of a container that
ran carries `oom_killed`, read from its cgroup (Docker's State.OOMKilled);
its exit code is PID 1's own, and its reason the memory limitation only when
PID 1 itself was OOM-killed (executor/status.py).
Limits the host cannot apply (a swap limit without swap accounting) are one
"WARNING: ..." line each in the task's stderr, before its own output, as the
docker CLI prints the daemon's warnings.

Every container is hardened by container/launch.py whatever the task asks:
Docker's capabilities (its default set ± the task's --cap-add/--cap-drop),
masked and read-only /proc and /sys paths, a minimal /dev and a pids limit
(see container/); no_new_privs when the task asks, as Docker's flag. A task
with neither image nor rootfs sees the host's filesystem read-only but for
its sandbox ($MESOS_SANDBOX) and a private /tmp, unless its
ContainerInfo.writable_host_filesystem (container/host_view.py). It runs as
command.user, else the image's User, else FrameworkInfo.user, else root.
Its secret environment values are masked in this executor's log lines
(common/secrets.py). Its cpus are a
CFS quota too, unless the task leaves that out (label juggler.cpu_quota=false:
Docker's --cpu-shares without --cpus).

A task's health check (executor/health.py) runs from TASK_RUNNING until the
kill or the exit; once it has decided the task's health, every update carries
`healthy`, and an unhealthy task with `kill_when_unhealthy` is killed with
its grace period and ends KILLED with REASON_TASK_UNHEALTHY.

A task on a CNI network (NETWORK_BRIDGE) comes with a pinned network
namespace whose ADD the agent started at launch (sandbox/network.json;
container/network.py): the executor adopts it first thing, so the plugins
run while the executor starts, makes the cgroup and the container mounts its
root filesystem; the container joins that namespace and may exec only once
ADD is done (its IP is then in its /etc/hosts and in the TASK_RUNNING update).
Every terminal update is sent after DEL and the unpinning, whichever way the
task ended; an executor that dies first leaves that to the agent
(agent/networks.py).

The executor is the container's direct parent (see container/launch.py) and
waits for its exit through a pidfd, without polling. Once pid 1 is reaped and
the cgroup empty, no attached client holds the task's output back any more
(executor/attach.py): the terminal update follows the last byte on disk and
at most attach.FINISH_SECONDS for the clients. It exits once the agent has
acknowledged the terminal update or sent `shutdown`, and a client that is
behind got the rest (or took none of it for attach.STALL_SECONDS); until the
ack it keeps reconnecting, because the agent owns the executor's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import select
import signal
from pathlib import Path

from juggler.common import logs, secrets, task_states
from juggler.common.task_check import TaskError, parse_signal, signal_name
from juggler.container import launch
from juggler.container.cgroups import Cgroup, open_cgroup
from juggler.container.cni_config import CniError
from juggler.container.spec import DEFAULT_GRACE_SECONDS, ContainerSpec
from juggler.executor import health, kill
from juggler.executor import status as st
from juggler.executor.agent_link import AgentLink
from juggler.executor.attach import AttachServer
from juggler.executor.network import ContainerNetwork
from juggler.executor.stdio import TaskStdio
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2

EXEC_WAIT = 1.0  # seconds the executor blocks waiting for its container's exec
PROCESSES_GONE_SECONDS = 2.0  # after pid 1's exit, for the rest of its pid namespace to go


class Executor:
    def __init__(self, sandbox: Path, spec: executor_pb2.ExecutorSpec) -> None:
        self.sandbox = sandbox
        self.spec = spec
        self.task_id = spec.task.task_id
        # Its secret environment values never reach a log line (common/secrets.py).
        secrets.register(secrets.values(spec.task.command))
        self.log = logs.get(__name__, task_id=self.task_id, framework_id=spec.framework.id)
        self.link = AgentLink(spec.agent_socket, self._hello, self._on_message, self.log)
        self.container_pid = 0
        self.cgroup: Cgroup | None = None
        self.kill_requested = False
        self.kill_grace: float | None = None
        self.kill_signal = signal.SIGTERM  # set by the kill request
        self._killing = False
        self._kill_deadline: float | None = None  # loop time of the SIGKILL to come
        self._term: asyncio.Future | None = None  # the first signal to every process
        self._exited = False
        self._done = asyncio.Event()  # shutdown from the agent
        self.stdio: TaskStdio | None = None  # the task's pipes or pty (stdio.py)
        self.attach: AttachServer | None = None  # sandbox/attach.sock (attach.py)
        self.health_checker: health.HealthChecker | None = None
        self.healthy: bool | None = None  # set once a health check decided
        self.kill_reason = pb.REASON_TASK_KILLED
        self.network = ContainerNetwork(self.sandbox, self.task_id, self.log)  # CNI

    # -- protocol ---------------------------------------------------------
    def _hello(self) -> executor_pb2.ExecutorMessage.Hello:
        return executor_pb2.ExecutorMessage.Hello(
            framework_id=self.spec.framework.id, task_id=self.task_id,
            pid=os.getpid(), container_pid=self.container_pid)

    def _on_message(self, message: executor_pb2.AgentToExecutor) -> None:
        kind = message.WhichOneof("message")
        if kind == "kill":
            grace = None
            if message.kill.kill_policy.HasField("grace_period_seconds"):
                grace = message.kill.kill_policy.grace_period_seconds
            self._request_kill(grace, message.kill.kill_policy.signal)
        elif kind == "signal":
            self._signal_pid1(message.signal.signal)
        elif kind == "shutdown":
            self.log.info("shutdown requested by the agent")
            self.kill_requested = True  # one not launched yet never is
            if self.container_pid and not self._exited:
                self._kill_now()
            self._done.set()

    def _send(self, state: int, reason: int = pb.REASON_UNSPECIFIED, message: str = "",
              exit_code: int | None = None, oom_killed: bool | None = None) -> bytes:
        status = st.make_status(
            task_id=self.task_id, agent_id=self.spec.agent_id,
            framework_id=self.spec.framework.id, state=state, reason=reason,
            message=message, exit_code=exit_code)
        if self.healthy is not None:
            status.healthy = self.healthy
        if state == pb.TASK_RUNNING and self.container_pid:
            status.pid = self.container_pid
        if state == pb.TASK_RUNNING and self.network.ip_addresses:
            status.ip_addresses.extend(self.network.ip_addresses)
        if task_states.is_terminal(state):
            self.network.down()  # nothing of its network outlives the terminal update
        if oom_killed is not None:
            status.oom_killed = oom_killed
        self.log.info("status update", state=pb.TaskState.Name(state),
                      reason=pb.Reason.Name(reason), message=message, exit_code=exit_code)
        self.link.send_update(status)
        return status.uuid

    # -- kill -------------------------------------------------------------
    def _grace(self, override: float | None) -> float:
        if override is not None:
            return max(0.0, override)
        policy = self.spec.task.kill_policy
        if policy.HasField("grace_period_seconds"):
            return max(0.0, policy.grace_period_seconds)
        return DEFAULT_GRACE_SECONDS

    def _signal(self, override: str) -> int:
        """The kill's first signal: `override` (the Kill message's), the
        task's kill policy's, or SIGTERM. One that does not parse (the master
        and the agent check them) is logged and replaced by SIGTERM."""
        text = override or self.spec.task.kill_policy.signal
        if not text:
            return signal.SIGTERM
        try:
            return parse_signal(text, "kill_policy.signal")
        except TaskError as e:
            self.log.warning("not a signal; the kill sends SIGTERM", error=str(e))
            return signal.SIGTERM

    def _signal_pid1(self, number: int) -> None:
        """Agent.Signal: `number` to the container's PID 1 (if it runs)."""
        if not self.container_pid or self._exited:
            self.log.info("signal for a task that does not run; dropped", signal=number)
            return
        self.log.info("sending a signal to the task's PID 1", signal=signal_name(number))
        try:
            os.kill(self.container_pid, number)
        except (ProcessLookupError, ValueError, OSError) as e:
            self.log.warning("could not send the signal", signal=number, error=str(e))

    def _request_kill(self, grace_override: float | None, signal_override: str = "") -> None:
        grace = self._grace(grace_override)
        if self._killing and not self._exited:
            # A kill again (re-sent by the master, or with a shorter grace period,
            # as Mesos allows): SIGKILL comes no later than the new deadline.
            loop = asyncio.get_running_loop()
            if self._kill_deadline is None or loop.time() + grace < self._kill_deadline:
                self._kill_deadline = loop.time() + grace
                loop.call_later(grace, self._kill_now)
            return
        self.kill_requested = True
        self.kill_grace = grace
        self.kill_signal = self._signal(signal_override)
        if self.stdio is not None:
            self.stdio.end_hold()  # a run being stopped waits for no client to come
        if not self.container_pid or self._exited:
            return  # before the launch: handled there; after exit: nothing to do
        self._start_kill()

    def _start_kill(self) -> None:
        self._killing = True
        self._stop_health_checks()
        grace = self.kill_grace if self.kill_grace is not None else self._grace(None)
        sig = self.kill_signal if grace > 0 else signal.SIGKILL
        self._send(pb.TASK_KILLING, self.kill_reason,
                   f"Killing the task with {signal_name(sig)} (grace period {grace:g} s)")
        if grace <= 0:
            self._kill_now()
            return
        if kill.term_every_process(self.spec.task) and self.cgroup is not None:
            self._term = asyncio.ensure_future(self._signal_every_process(self.cgroup, sig))
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.container_pid, sig)
        loop = asyncio.get_running_loop()
        self._kill_deadline = loop.time() + grace
        loop.call_later(grace, self._kill_now)

    async def _signal_every_process(self, cgroup: Cgroup, sig: int) -> None:
        started = asyncio.get_running_loop().time()
        name = signal_name(sig)
        try:
            walk = await kill.signal_every_process(cgroup, sig)
        except OSError as e:
            self.log.warning("could not list the task's processes", error=str(e))
            pids = []
        else:
            pids = walk.pids
            took = round(asyncio.get_running_loop().time() - started, 3)
            if walk.closed:
                self.log.info(f"sent {name} to every process of the task", processes=len(pids),
                              seconds=took)
            else:  # one forking as they were listed may have been missed
                self.log.warning(f"sent {name} to the task's processes, not all of which "
                                 f"stopped within {kill.STOP_SETTLE:g} s to be listed",
                                 processes=len(pids), seconds=took)
        if self.container_pid not in pids and not self._exited:
            # As Mesos's executor when killtree fails: PID 1 at least.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.container_pid, sig)

    def _kill_now(self) -> None:
        if self._exited:
            return
        self.log.info("sending SIGKILL to every process of the container")
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                self.cgroup.kill(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.container_pid, signal.SIGKILL)

    # -- life -------------------------------------------------------------
    async def run(self) -> int:
        self.link.start()
        try:
            terminal = await self._supervise()
            done = asyncio.ensure_future(self._done.wait())
            acked = asyncio.ensure_future(self.link.wait_acked(terminal))
            await asyncio.wait({done, acked}, return_when=asyncio.FIRST_COMPLETED)
            for f in (done, acked):
                f.cancel()
            if self.attach is not None and self.attach.owed:
                # The end is said; a client that was behind still gets the rest.
                self.log.info("sending attached clients the rest of the output",
                              clients=len(self.attach.owed))
                await self.attach.deliver_owed()
        finally:
            self._cleanup()
            await self.link.stop()
        self.log.info("executor exiting")
        return 0

    async def _supervise(self) -> bytes:
        """Run the task; returns the uuid of its terminal update."""
        try:
            cspec = ContainerSpec.from_executor_spec(self.spec)
            health_policy = health.policy_for(self.spec.task)
        except TaskError as e:  # SpecError, HealthCheckError
            return self._send(pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED, str(e))
        try:
            # First: the plugins (~40-80 ms of ADD) run while everything below does.
            self.network.up(cspec)
        except (OSError, ValueError, CniError) as e:
            self.log.error("could not join the network", error=str(e))
            return self._send(pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED,
                              f"Failed to join network {cspec.cni_network!r}: {e}")
        # Give a kill already queued by the agent the chance to arrive first.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                await self.link.first_attempt.wait()
        await asyncio.sleep(0)
        if self.kill_requested:
            return self._send(pb.TASK_KILLED, pb.REASON_TASK_KILLED_DURING_LAUNCH,
                              "Task killed before it was launched")
        try:
            self.cgroup = open_cgroup(self.spec.cgroup or f"juggler/{self.task_id}")
            self.cgroup.create()
            warnings = self.cgroup.set(cspec.limits)
            oom_before = self.cgroup.oom_kills()  # a reused cgroup's past kills are not this run's
            limits = cspec.limits
            self.log.info("launching", cgroup=self.cgroup.name, cpu_shares=limits.cpu_shares,
                          cpu_quota_us=limits.cpu_quota_us, memory_bytes=limits.memory_bytes,
                          pids_max=limits.pids_max, rootfs=cspec.rootfs or None,
                          user=cspec.user or None)
            self.stdio = TaskStdio.for_task(self.sandbox, self.spec.task.container.tty,
                                            self.spec.task.labels)
            self._warn(warnings)
            self.attach = AttachServer(self.sandbox, self.stdio, self.log)
            await self.attach.start()
            join = self.cgroup.join_files()  # the container moves itself in: faster
            netns_fd = self.network.open_namespace()
            try:
                started = launch.start(
                    cspec, self.sandbox, None if join else self.cgroup.add, self.stdio.child,
                    join=join, cgroup_dirs=list(self.cgroup.paths().values()),
                    netns_fd=netns_fd,
                    before_go=(lambda: self.network.ready(cspec)) if netns_fd >= 0 else None)
            finally:
                if netns_fd >= 0:
                    os.close(netns_fd)
        except (OSError, ValueError, CniError) as e:
            self.log.error("launch failed", error=str(e))
            return self._send(pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED,
                              f"Failed to launch the container: {e}")
        self.container_pid = started.pid
        # Until the container execs, every page this process writes is copied
        # for it (they share memory since the fork): sleep in select() rather
        # than run the event loop, for up to EXEC_WAIT (it is a few ms unless
        # the host is busy); after that, wait the asynchronous way.
        if not select.select([started.error_fd], [], [], EXEC_WAIT)[0]:
            await _readable(started.error_fd)
        exited = self._exit_future(started.pid)
        error = launch.read_error(started.error_fd)
        if error is not None:
            await exited
            self._exited = True
            _, wait_status = os.waitpid(started.pid, 0)
            self.log.error("launch failed", error=str(error), init=started.init)
            return self._send(pb.TASK_FAILED, pb.REASON_CONTAINER_LAUNCH_FAILED,
                              f"Failed to launch the container: {error}", error.exit_code)
        self.log.info("container started", container_pid=started.pid, init=started.init)
        self.stdio.started()  # reads the task's output from here on
        self._send(pb.TASK_RUNNING, message="Command started")
        self.link.send_hello()  # the agent learns container_pid
        if self.kill_requested and not self._killing:
            self._start_kill()
        elif health_policy is not None:
            self._start_health_checks(health_policy, cspec)
        await exited
        self._stop_health_checks()
        _, wait_status = os.waitpid(started.pid, 0)
        self._exited = True
        if await self._processes_gone(self.cgroup):
            self.attach.processes_gone()  # what is left in the pipes is read, whoever is behind
        if not await self.stdio.drain():  # every byte on disk before the terminal update
            self.log.warning("the task's output did not end; some may be lost")
        # PID 1's own status; the memory reason only if PID 1 died of the OOM
        # killer (executor/status.py has the table).
        result = st.outcome(wait_status, killed=self.kill_requested,
                            oom_kills=self.cgroup.oom_kills() - oom_before,
                            memory_mib=cspec.memory_mib)
        if result.state == pb.TASK_KILLED:
            result = dataclasses.replace(result, reason=self.kill_reason)
        await self.attach.finish(result.exit_code or 0)
        return self._send(result.state, result.reason, result.message, result.exit_code,
                          oom_killed=result.oom_killed)

    async def _processes_gone(self, cgroup: Cgroup, within: float = PROCESSES_GONE_SECONDS,
                              every: float = 0.01) -> bool:
        """Whether the cgroup is empty (pid 1 is reaped: the kernel kills the
        rest of its pid namespace), looked at every `every` s for `within` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            try:
                if not cgroup.pids():
                    return True
            except OSError:
                return True  # no cgroup: no process in it
            if loop.time() >= deadline:
                self.log.warning("processes of the task outlive its pid 1; its output is read "
                                 "as they write it", seconds=within)
                return False
            await asyncio.sleep(every)

    def _warn(self, warnings: list[str]) -> None:
        """Each warning as a "WARNING: ..." line of the task's stderr (the
        docker CLI's form of the daemon's warnings), and in the log."""
        for warning in warnings:
            self.log.warning("a limit this host cannot apply", warning=warning)
            if self.stdio is not None:
                self.stdio.logs["stderr"].write(f"WARNING: {warning}\n".encode())

    # -- health checks ----------------------------------------------------
    def _start_health_checks(self, policy: health.Policy, cspec: ContainerSpec) -> None:
        target = health.Target(pid=self.container_pid, cgroup=self.cgroup, spec=cspec)
        self.health_checker = health.HealthChecker(
            self.spec.task.health_check, policy, target, self._on_health, self.log)
        self.health_checker.start()

    def _stop_health_checks(self) -> None:
        if self.health_checker is not None:
            self.health_checker.stop()

    def _on_health(self, decision: health.Decision) -> None:
        if self._exited or self._killing:
            return
        self.healthy = decision.healthy
        if decision.update:
            self._send(pb.TASK_RUNNING, pb.REASON_TASK_HEALTH_CHECK_STATUS_UPDATED,
                       decision.message)
        if decision.kill:
            self.kill_reason = pb.REASON_TASK_UNHEALTHY
            self._request_kill(None)

    def _exit_future(self, pid: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        pidfd = os.pidfd_open(pid)

        def ready() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            if not future.done():
                future.set_result(None)

        loop.add_reader(pidfd, ready)
        return future

    def _cleanup(self) -> None:
        self._stop_health_checks()
        self.network.down()
        if self._term is not None:
            self._term.cancel()  # leaves nothing stopped (kill.signal_every_process)
        if self.attach is not None:
            self.attach.close()
        if self.stdio is not None:
            self.stdio.close()
        if self.cgroup is not None:
            try:
                self.cgroup.destroy()
            except OSError as e:
                self.log.error("could not remove the cgroup", error=str(e))


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def ready() -> None:
        loop.remove_reader(fd)
        if not future.done():
            future.set_result(None)

    loop.add_reader(fd, ready)
    await future
