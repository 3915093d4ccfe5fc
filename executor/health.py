"""A task's health checks, as Mesos runs them: decided in pure code, run in the container.

    TASK_RUNNING sent ──delay──▶ check ──result──▶ wait `interval` ──▶ check ──▶ …
    │                              │                 (until the kill or the exit)
    │                              └─ longer than `timeout`: killed, counted as a failure
    ├───────────── grace ─────────────┤  a check STARTED in here that fails is ignored
                                          while no check has passed yet

    health:  unknown ──success────────────────────────▶ healthy
             unknown ──failure inside the grace───────▶ unknown (ignored, not counted)
             unknown ──N consecutive failures─────────▶ unhealthy
             healthy ──N consecutive failures─────────▶ unhealthy ──success──▶ healthy

N is `consecutive_failures`, grace is `grace_period_seconds`. Every change of health,
the first success included, is a TASK_RUNNING update with `healthy` set and reason
TASK_HEALTH_CHECK_STATUS_UPDATED; once health is known every later update of the
task carries it. With `kill_when_unhealthy`, turning unhealthy kills the task with
its own grace period, and its terminal update says REASON_TASK_UNHEALTHY
(healthy=false).

Mesos's defaults apply to fields left 0: delay 15 s, interval 10 s (counted from the
end of the previous check, as Mesos's `scheduleNext`), timeout 20 s, 3 consecutive
failures. proto3 cannot tell 0 from unset, so a task wanting checks at once asks for a
tiny delay. The grace period is the exception: 0 is no grace period (Mesos's default
is 10 s, Marathon's 300 s; juggler's 0 keeps what tasks got before the field existed).

The grace period (Mesos's grace_period_seconds, Marathon's gracePeriodSeconds) counts
from TASK_RUNNING, the delay included. While no check has passed, the failure (a
timeout included) of a check that started before RUNNING + grace is ignored: it does
not count toward N, sends no update and kills nothing. The first success ends the
grace period at once; after it, and for every check started once the period is over,
failures count. So Marathon's defaults (grace 300 s, interval 60 s, delay 15 s) give
a task five minutes to come up, yet one that answers at 15 s is healthy at 15 s: the
delay alone can do only one of the two. Mesos compares the time a failure is *seen*
with the period; juggler the time its check *started*, so a check that starts inside
the period and times out after it is still ignored (a slow answer from a starting
task is what the period is for).

Where Mesos's executors flip `healthy` to false at the first failure and kill after
N, a task here turns unhealthy at the N-th consecutive failure, so one slow answer
does not flap the flag, and "unhealthy" and "killed for it" happen together.

The check's fields and defaults (`Policy`, `policy_for`) are common/health_policy.py,
checked by common/task_check.py as the master does in Accept. `Health` is the
decision: synchronous, no I/O, time read from an injected clock.
`HealthChecker` is the shell in the executor's asyncio loop. The probes enter the
container from the outside:

- command: a fork of the executor (its children are born in the container's pid
  namespace, see container/launch.py; otherwise the child also setns(pid) and forks
  once more) joins the task's cgroup, setns(ipc, uts, net, mnt), takes the container's
  root (as nsenter: fchdir to /proc/<pid>/root, chroot), then, as the task and
  `juggler exec` do (container/process.py), takes the task's working directory,
  capabilities, user and no_new_privs and execs `/bin/sh -c CMD` or argv. Exit 0 is
  healthy; a command not found fails with 127, one not executable 126, a setup step
  125, each with its message. A timeout SIGKILLs its process group.
- http / tcp: the executor setns(CLONE_NEWNET) into /proc/<pid>/ns/net, creates the
  socket there and steps back at once (a socket keeps its namespace; the executor
  cannot use a thread for it, see `socket_in_netns`); the loop connects it to
  127.0.0.1:port. HTTP status 200–399 is healthy; for tcp, connecting is.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from juggler.common.health_policy import (
    DEFAULT_CONSECUTIVE_FAILURES,
    DEFAULT_DELAY,
    DEFAULT_GRACE,
    DEFAULT_INTERVAL,
    DEFAULT_TIMEOUT,
    HealthCheckError,
    Policy,
    policy_for,
)
from juggler.container import process, syscalls
from juggler.container.cgroups import Cgroup
from juggler.container.spec import ContainerSpec
from juggler.v1 import common_pb2 as pb

EXIT_SETUP_FAILED = process.EXIT_SETUP_FAILED
OUTPUT_TAIL = 512  # bytes of a command check's output kept for the message
_NAMESPACES = (("ipc", syscalls.CLONE_NEWIPC), ("uts", syscalls.CLONE_NEWUTS),
               ("net", syscalls.CLONE_NEWNET), ("mnt", syscalls.CLONE_NEWNS))

__all__ = ["DEFAULT_CONSECUTIVE_FAILURES", "DEFAULT_DELAY", "DEFAULT_GRACE",
           "DEFAULT_INTERVAL", "DEFAULT_TIMEOUT", "Decision", "Health", "HealthCheckError",
           "HealthChecker", "Policy", "Target", "policy_for", "probe_http", "probe_tcp",
           "run_command"]


# -- the decision (pure) ----------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """What one check's result means for the task."""

    healthy: bool | None  # the task's health now; None while still unknown
    update: bool  # send TASK_RUNNING with `healthy` (health changed)
    kill: bool  # kill the task now (at most once)
    next_check_at: float | None  # clock time of the next check; None: no more
    message: str
    ignored: bool = False  # a failure inside the grace period: not counted


class Health:
    """A task's health from its check results over time: results in, decisions out."""

    def __init__(self, policy: Policy, clock: Callable[[], float]) -> None:
        self.policy = policy
        self.clock = clock
        self.healthy: bool | None = None
        self.consecutive_failures = 0
        self.checks = 0
        self.killed = False
        self.started_at = clock()  # TASK_RUNNING: the delay and the grace count from here
        self.grace_ends_at = self.started_at + policy.grace
        self.passed = False  # a check has succeeded once: the grace period is over
        self.next_check_at: float | None = self.started_at + policy.delay
        self.check_started_at: float | None = None

    def begin_check(self) -> float:
        """A check starts now; returns the clock time at which it times out."""
        if self.next_check_at is None:
            raise RuntimeError("no more checks: the task is being killed")
        self.check_started_at = self.clock()
        return self.check_started_at + self.policy.timeout

    def timed_out(self) -> Decision:
        return self.result(False, f"timed out after {self.policy.timeout:g} s")

    def result(self, ok: bool, detail: str = "") -> Decision:
        """The check that began last ended: `ok` or not, with a word on why."""
        if self.next_check_at is None:
            raise RuntimeError("a check result after the kill decision")
        now = self.clock()
        started = now if self.check_started_at is None else self.check_started_at
        self.checks += 1
        self.check_started_at = None
        before = self.healthy
        kill = False
        if ok:
            self.passed = True
            self.consecutive_failures = 0
            self.healthy = True
        elif not self.passed and started < self.grace_ends_at:
            self.next_check_at = now + self.policy.interval
            return Decision(healthy=self.healthy, update=False, kill=False,
                            next_check_at=self.next_check_at, ignored=True,
                            message=self._ignored_message(detail))
        else:
            self.consecutive_failures += 1
            if self.consecutive_failures >= self.policy.consecutive_failures:
                self.healthy = False
                kill = self.policy.kill_when_unhealthy and not self.killed
        self.killed = self.killed or kill
        self.next_check_at = None if self.killed else now + self.policy.interval
        return Decision(healthy=self.healthy, update=self.healthy != before, kill=kill,
                        next_check_at=self.next_check_at, message=self._message(ok, detail))

    def _ignored_message(self, detail: str) -> str:
        return (f"Health check failure ignored: {self.policy.kind} health check failed"
                + (f" ({detail})" if detail else "")
                + f" inside the grace period of {self.policy.grace:g} s, before any success")

    def _message(self, ok: bool, detail: str) -> str:
        kind = self.policy.kind
        if ok:
            return f"Task is healthy: {kind} health check passed" + (
                f" ({detail})" if detail else "")
        failures = self.consecutive_failures
        what = f"{kind} health check failed {failures} time{'s' if failures > 1 else ''} in a row"
        if detail:
            what += f" (last: {detail})"
        if self.healthy is False:
            return f"Task is unhealthy: {what}"
        return f"Health check failed: {what}"


# -- the shell: runs checks in the executor's loop --------------------------


@dataclass(frozen=True)
class Target:
    """The running container the probes enter."""

    pid: int  # its pid 1, as the executor sees it
    cgroup: Cgroup | None
    spec: ContainerSpec


class HealthChecker:
    """Runs a task's checks until stopped; hands every decision to `on_decision`."""

    def __init__(self, check: pb.HealthCheck, policy: Policy, target: Target,
                 on_decision: Callable[[Decision], None], log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.check = check
        self.policy = policy
        self.target = target
        self.on_decision = on_decision
        self.log = log
        self.health = Health(policy, clock)
        self.clock = clock
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        """Stop checking; a check in flight is killed (its process reaped)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def _run(self) -> None:
        health = self.health
        while health.next_check_at is not None:
            await asyncio.sleep(max(0.0, health.next_check_at - self.clock()))
            deadline = health.begin_check()
            try:
                ok, detail = await asyncio.wait_for(self._probe(),
                                                    max(0.0, deadline - self.clock()))
            except TimeoutError:
                decision = health.timed_out()
            except OSError as e:
                decision = health.result(False, e.strerror or str(e))
            except Exception as e:  # a bug, not the task's fault: say so, keep checking
                self.log.error("health check crashed", error=repr(e))
                decision = health.result(False, f"the check crashed: {e!r}")
            else:
                decision = health.result(ok, detail)
            self.log.info("health check", kind=self.policy.kind, healthy=decision.healthy,
                          consecutive_failures=health.consecutive_failures,
                          in_grace=decision.ignored, message=decision.message)
            try:
                self.on_decision(decision)
            except Exception as e:  # a bug in the executor must not end the checks quietly
                self.log.error("acting on a health decision failed", error=repr(e))

    async def _probe(self) -> tuple[bool, str]:
        check = self.check
        if self.policy.kind == "command":
            argv = list(check.command.argv)
            if check.command.shell:
                argv = ["/bin/sh", "-c", argv[0]]
            return await run_command(self.target, argv)
        if self.policy.kind == "http":
            return await probe_http(self.target.pid, check.http.port, check.http.path or "/",
                                    check.http.scheme or "http")
        return await probe_tcp(self.target.pid, check.tcp.port)


# -- command checks: a process inside the container --------------------------


async def run_command(target: Target, argv: list[str]) -> tuple[bool, str]:
    """Run `argv` inside the container; (exit status 0, what happened)."""
    loop = asyncio.get_running_loop()
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    try:
        pid = _spawn(target, argv, out_w, err_w)
    except OSError:
        os.close(out_r)
        os.close(err_r)
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    tail = bytearray()

    def drain() -> None:
        with contextlib.suppress(BlockingIOError):
            while data := os.read(out_r, 65536):
                tail.extend(data)
                del tail[:-OUTPUT_TAIL]
            loop.remove_reader(out_r)  # EOF

    exited = loop.create_future()
    pidfd = os.pidfd_open(pid)
    loop.add_reader(pidfd, lambda: exited.done() or exited.set_result(None))
    os.set_blocking(out_r, False)
    loop.add_reader(out_r, drain)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        if exited.cancelled() or not exited.done():  # timed out or stopped: it all goes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
        drain()
        loop.remove_reader(out_r)
        os.close(out_r)
        setup_error = _read_all(err_r)
    output = tail.decode(errors="replace").strip()
    if setup_error:  # "code\nmessage": 127 not found, 126 not executable, 125 setup
        code_text, _, message = setup_error.partition("\n")
        return False, f"exit status {code_text}: {message}"
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return False, _with_output(f"killed by signal {sig}", output)
    code = os.WEXITSTATUS(wait_status)
    return code == 0, _with_output(f"exit status {code}", output)


def _with_output(what: str, output: str) -> str:
    return f"{what}: {output}" if output else what


def _read_all(fd: int) -> str:
    chunks = []
    while data := os.read(fd, 65536):
        chunks.append(data)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def _spawn(target: Target, argv: list[str], out_w: int, err_w: int) -> int:
    """Fork the check; returns its pid (the leader of its own process group)."""
    pid1 = target.pid
    opened: list[int] = []

    def ns(name: str) -> int:
        opened.append(os.open(f"/proc/{pid1}/{name}", os.O_RDONLY | os.O_CLOEXEC))
        return opened[-1]

    try:
        ns_fds = [(ns(f"ns/{name}"), flag) for name, flag in _NAMESPACES]
        root_fd = ns("root")
        # Our children are born in the container's pid namespace when the executor
        # forked the container itself (launch.enter_pid_namespace); else enter it.
        pid_fd = -1
        if os.stat(f"/proc/{pid1}/ns/pid").st_ino != \
                os.stat("/proc/self/ns/pid_for_children").st_ino:
            pid_fd = ns("ns/pid")
    except OSError:
        for fd in opened:
            os.close(fd)
        raise
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code, message = EXIT_SETUP_FAILED, "health check setup failed"
            try:
                code, message = _child(target, argv, ns_fds, root_fd, pid_fd, out_w, err_w)
            except BaseException as e:
                message = f"health check setup: {e}"
            finally:
                try:
                    os.write(err_w, f"{code}\n{message}".encode(errors="replace"))
                finally:
                    os._exit(code)
        return pid
    finally:
        for fd in opened:
            os.close(fd)


def _child(target: Target, argv: list[str], ns_fds, root_fd: int, pid_fd: int,
           out_w: int, err_w: int) -> tuple[int, str]:  # pragma: no cover - in the child
    """Returns only on failure: (exit code, message)."""
    spec = target.spec
    step = "start a session"
    try:
        os.setsid()  # its own process group: a timeout kills all of it
        if target.cgroup is not None:
            step = "join the task's cgroup"
            target.cgroup.add(os.getpid())
        if pid_fd >= 0:
            step = "enter the pid namespace"
            syscalls.setns(pid_fd, syscalls.CLONE_NEWPID)
            _fork_and_wait()  # returns in the grandchild only
        for fd, flag in ns_fds:
            step = f"setns({flag:#x})"
            syscalls.setns(fd, flag)
        step = "enter the container's root"
        os.fchdir(root_fd)
        os.chroot(".")
        step = "redirect stdio"
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
    except OSError as e:
        return EXIT_SETUP_FAILED, f"{step}: {e.strerror or e}"
    except Exception as e:
        return EXIT_SETUP_FAILED, f"{step}: {e}"
    # In a pid namespace entered here, the grandchild dies with the child that
    # leads the process group (the user switch clears the PDEATHSIG set at fork).
    death = signal.SIGKILL if pid_fd >= 0 else 0
    return process.execute(process.ProcessSpec.of_container(spec, argv, death_signal=death),
                           keep_fd=err_w)


def _fork_and_wait() -> None:  # pragma: no cover - in the child
    """Fork into the pid namespace just entered; the parent mirrors the child's end.

    The parent stays in the executor's pid namespace and leads the process group
    the executor kills on a timeout; the grandchild dies with it (PDEATHSIG)."""
    child = os.fork()
    if child == 0:
        syscalls.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        return
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        os._exit(128 + os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status))


# -- http and tcp checks: a socket in the container's network namespace -----


def socket_in_netns(pid: int) -> socket.socket:
    """A non-blocking TCP socket created in the network namespace of `pid`.

    A socket belongs to the namespace it was created in, wherever it is used
    from. The executor cannot start a thread to enter the namespace (after
    unshare(CLONE_NEWPID), clone(CLONE_THREAD) fails with EINVAL), so its only
    thread steps in and back out around socket(2), synchronously: nothing else
    runs in between."""
    with open(f"/proc/{pid}/ns/net", "rb", buffering=0) as theirs, \
            open("/proc/self/ns/net", "rb", buffering=0) as ours:
        if os.fstat(theirs.fileno()).st_ino == os.fstat(ours.fileno()).st_ino:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        else:
            syscalls.setns(theirs.fileno(), syscalls.CLONE_NEWNET)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            finally:
                syscalls.setns(ours.fileno(), syscalls.CLONE_NEWNET)
    sock.setblocking(False)
    return sock


def _why(e: OSError) -> str:
    """asyncio's connect errors say "Connect call failed (...)"; the errno says why."""
    return os.strerror(e.errno) if e.errno else str(e)


async def probe_tcp(pid: int, port: int) -> tuple[bool, str]:
    sock = socket_in_netns(pid)
    with sock:
        try:
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except OSError as e:
            return False, f"connect to 127.0.0.1:{port}: {_why(e)}"
    return True, f"connected to 127.0.0.1:{port}"


async def probe_http(pid: int, port: int, path: str, scheme: str = "http") -> tuple[bool, str]:
    url = f"{scheme}://127.0.0.1:{port}{path}"
    sock = socket_in_netns(pid)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    except OSError as e:
        sock.close()
        return False, f"GET {url}: {_why(e)}"
    context = None
    if scheme == "https":  # as Mesos's `curl -k`: the check asks about liveness, not trust
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname="127.0.0.1" if context else None)
    except (OSError, ssl.SSLError) as e:
        sock.close()
        return False, f"GET {url}: {e}"
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "User-Agent: juggler-health-check\r\nAccept: */*\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        line = await reader.readline()
    except (OSError, ssl.SSLError) as e:
        return False, f"GET {url}: {e}"
    finally:
        writer.close()
    parts = line.decode(errors="replace").split()
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return False, f"GET {url}: not an HTTP response: {line[:80]!r}"
    code = int(parts[1])
    return 200 <= code < 400, f"GET {url}: {code}"
