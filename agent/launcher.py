"""A pre-forked executor launcher (a zygote), and the agent's handle on it.

Starting `python -m juggler.executor` costs an interpreter start-up and the
executor's imports (~200 ms, most of a task's launch). The zygote pays that
once: the agent starts it (`python -m juggler.agent.launcher --fd N`), it
imports everything an executor needs, then serves launch requests on one end
of a socket pair the agent made and handed down as fd N, one line each way:

    agent ── "<sandbox path>\\n" ──▶ zygote            one request at a time
    agent ◀── "<pid>\\n" ─────────── zygote            or "error <message>\\n"

Only the agent can ask (issue 18): the socket pair has no name anywhere, so no
other process can connect to the zygote (a host-filesystem task once reached
a listening `<work>/launcher.sock` and had it fork a root executor for a spec
it had written itself). The zygote holds the pair's only other end; it ends
when the agent's end closes (EOF), as it does when the agent dies.

    zygote ──fork──▶ executor      setsid, stdio, fresh signals, closes every
                                   inherited fd, then executor.__main__.run

One fork per executor (a fork of this ~30 MB process is most of a launch's
kernel time, so there is no intermediate child). The zygote ignores SIGCHLD,
so the kernel reaps its executors as they exit; the agent watches them through
a pidfd (`Agent._watch_pid`), not as its children. Executors outlive the
zygote and the agent alike: when the zygote dies they are re-parented to init
(or the nearest subreaper), and the parent-death signal the zygote asks for is
not inherited across fork.

Invariants the fork relies on:
- the zygote is single-threaded and has no asyncio loop when it forks (the
  warm-up's is closed again): the executor starts its own with `asyncio.run`,
  and no lock can be held by another thread at fork time;
- nothing per-executor is decided in the zygote: structlog is configured in
  the executor (its own pid bound), and the executor's pid namespace is
  unshared by the executor itself before it forks its container;
- `gc.freeze()` after the imports (common/gc_policy.py) keeps the collector
  from writing to the shared pages, so executors share most of the zygote's
  memory copy-on-write;
- before freezing, the zygote runs an executor's hot paths once on dummy
  data (`_warm_up`: protobuf, framing, the container spec, structlog, an
  asyncio loop talking over a socket pair): first-use initialisation then
  happens once here instead of in every executor, which saves each executor
  about a fifth of the pages it copies and its CPU time at start;
- the zygote dies with the agent (PR_SET_PDEATHSIG): a restarted agent starts
  its own, and no request can reach a zygote nobody listens to.

`Launcher` (the agent's side) starts the zygote, restarts it when it dies, and
raises `LauncherUnavailable` when it cannot serve, so the agent falls back to
starting the executor as a plain subprocess. A zygote that dies between
forking an executor and replying leaves that executor running the task: the
fallback's executor finds the task's lock held and exits
(EXIT_ANOTHER_EXECUTOR), and the agent watches the lock's holder instead
(agent/server.py `_spawn`, agent/checkpoint.py `lock_holder`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path

READY = b"ready\n"
_PR_SET_PDEATHSIG = 1
_RESET_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE,
                  signal.SIGXFSZ, signal.SIGUSR1, signal.SIGUSR2)


class LauncherUnavailable(Exception):
    """The zygote cannot launch now: start the executor the plain way."""


# -- the agent's side ------------------------------------------------------------


class Launcher:
    """The agent's handle on its zygote: start, spawn executors, restart, stop."""

    def __init__(self, log_path: Path, *, env: dict[str, str] | None = None,
                 ready_timeout: float = 10.0, reply_timeout: float = 10.0) -> None:
        """`log_path`: the zygote's stderr (appended); `env`: variables added
        to the agent's environment for the zygote and so for every executor
        it forks (e.g. container/host_view.py's HIDE_ENV)."""
        from juggler.common import logs

        self.log_path = Path(log_path)
        self.env = {**os.environ, **env} if env else None
        self.ready_timeout = ready_timeout
        self.reply_timeout = reply_timeout
        self.log = logs.get("juggler.agent.launcher")
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._starting = False
        self._stopping = False
        self._keeper: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self) -> None:
        """Start the zygote and wait until it serves; a failure is logged, and
        the keeper goes on trying (launches fall back meanwhile)."""
        self._stopping = False
        try:
            await self._start_zygote()
        except LauncherUnavailable as e:
            self.log.warning("executor launcher did not start; retrying", error=str(e))
        self._keeper = asyncio.create_task(self._keep_alive())

    async def _start_zygote(self) -> None:
        self._starting = True
        try:
            await self._start_zygote_once()
        finally:
            self._starting = False

    async def _start_zygote_once(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with open(self.log_path, "ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "juggler.agent.launcher", "--fd",
                    str(theirs.fileno()), pass_fds=(theirs.fileno(),), env=self.env,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=log)
        except OSError as e:
            ours.close()
            raise LauncherUnavailable(str(e)) from None
        finally:
            theirs.close()  # the zygote's now: its exit is our EOF
        self.process = proc
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), self.ready_timeout)
            if line != READY:
                raise LauncherUnavailable(f"the launcher exited before it was ready "
                                          f"(see {self.log_path})")
            self._reader, self._writer = await asyncio.open_unix_connection(sock=ours)
        except (OSError, TimeoutError, LauncherUnavailable) as e:
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            self.process = None
            raise LauncherUnavailable(str(e) or type(e).__name__) from None
        self._ready.set()
        self.log.info("executor launcher ready", pid=proc.pid)

    async def _keep_alive(self) -> None:
        backoff = 0.1
        while not self._stopping:
            proc = self.process
            if proc is not None:
                code = await proc.wait()
                if self._stopping:
                    return
                self.log.warning("executor launcher exited; restarting it", pid=proc.pid,
                                 exit_code=code)
                self._drop()
            try:
                await self._start_zygote()
                self.restarts += 1
                backoff = 0.1
            except LauncherUnavailable as e:
                self.log.warning("executor launcher did not start", error=str(e),
                                 retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def _drop(self) -> None:
        self._ready.clear()
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def spawn(self, sandbox: Path) -> int:
        """Start an executor for `sandbox` (its spec, task.pb, in the meta directory beside the
        sandboxes: common/sandbox_paths.py); returns its pid."""
        path = str(sandbox)
        if "\n" in path:
            raise LauncherUnavailable("a sandbox path with a newline")
        if self._starting and not self._ready.is_set():
            # A (re)start is under way: it is ready in a few hundred ms, sooner
            # than a fresh interpreter would be. (While it backs off after
            # failures, launches fall back at once.)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), self.ready_timeout)
        async with self._lock:
            reader, writer = self._reader, self._writer
            if reader is None or writer is None or writer.is_closing():
                raise LauncherUnavailable("the executor launcher is not running")
            try:
                writer.write(path.encode() + b"\n")
                await writer.drain()
                line = await asyncio.wait_for(reader.readline(), self.reply_timeout)
            except (OSError, TimeoutError) as e:
                self._drop()
                raise LauncherUnavailable(f"the executor launcher failed: {e}") from None
            if not line.endswith(b"\n"):
                self._drop()
                raise LauncherUnavailable("the executor launcher went away")
        text = line.decode(errors="replace").strip()
        if text.startswith("error "):
            raise LauncherUnavailable(text[len("error "):])
        return int(text)

    async def stop(self) -> None:
        """Stop the zygote; the executors it started keep running."""
        self._stopping = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        self._drop()
        proc, self.process = self.process, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


# -- the zygote --------------------------------------------------------------------


def _preload() -> None:
    """Everything an executor imports or caches, done once here."""
    import importlib
    import pkgutil

    # structlog uses rich, when it is installed, only to format exceptions
    # for a terminal; an executor's log is a file of JSON lines. Without it
    # (and the pygments it brings) this process is 4.7 MB smaller: each fork
    # copies fewer page tables and each executor's exit unmaps fewer pages.
    sys.modules.setdefault("rich", None)  # type: ignore[assignment]
    import juggler.container
    import juggler.executor

    # sandbox_paths: executor.__main__.run's; each executor imported (and,
    # where no .pyc is written, compiled) it itself: 1-2 ms of its CPU.
    from juggler.common import gc_policy, logs, sandbox_paths  # noqa: F401
    from juggler.container import cgroups, native_init, syscalls, users

    # Every module of the executor and the container runtime, including the
    # ones they import lazily (cgroups_v1 costs 3 ms per executor otherwise).
    for package in (juggler.executor, juggler.container):
        for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)

    cgroups.detect()
    cgroups.warm()  # the controllers' directories resolved (cgroups.real_path)
    native_init.enabled()  # juggler-init checked once, here, for every executor
    for user in ("", "root"):  # root unnamed, or named (as FrameworkInfo.user often does)
        with contextlib.suppress(OSError, users.UnknownUser):
            users.lookup(user)  # answered once here for every executor
    # CPython 3.11 rewrites a function's bytecode in place (quickens it) on
    # its 8th call (QUICKENING_WARMUP_DELAY) and counts calls in the code
    # object until then: warmed up ten times here, those writes are not made
    # in every executor, each to a page it would copy (42 pages of ~1,500).
    for _ in range(10):
        _warm_up()
    logs.configure("launcher")
    syscalls._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    gc_policy.tune()  # executors inherit it: young collections every 50,000 allocations


def _warm_up() -> None:
    """Run what every executor runs first, on dummy data, with no side effect
    outside this process (see the module docstring)."""
    import socket

    from juggler.common import framing, logs
    from juggler.container.spec import ContainerSpec
    from juggler.executor import health, status
    from juggler.v1 import executor_pb2

    spec = executor_pb2.ExecutorSpec(agent_id="warm-up", cgroup="juggler/warm-up")
    spec.framework.id = "warm-up"
    spec.task.task_id = "warm-up"
    spec.task.command.argv.extend(["true"])
    spec.task.resources.add(name="cpus", scalar=0.1)
    spec.task.resources.add(name="mem", scalar=16)
    executor_pb2.ExecutorSpec.FromString(spec.SerializeToString())
    ContainerSpec.from_executor_spec(spec)
    health.policy_for(spec.task)
    with open(os.devnull, "w") as null:
        real_stderr, sys.stderr = sys.stderr, null
        try:
            logs.configure("warm-up")
            logs.get(__name__, task_id="warm-up").info("warm-up", state="TASK_RUNNING")
        finally:
            sys.stderr = real_stderr

    async def loop_once() -> None:
        ours, theirs = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        update = status.make_status(task_id="warm-up", agent_id="", framework_id="",
                                    state=1)
        writer.write(framing.encode(executor_pb2.ExecutorMessage(
            update=executor_pb2.ExecutorMessage.Update(status=update))))
        await writer.drain()
        theirs.sendall(framing.encode(executor_pb2.AgentToExecutor(
            ack=executor_pb2.AgentToExecutor.Ack(uuid=update.uuid))))
        await asyncio.wait_for(framing.read(reader, executor_pb2.AgentToExecutor), 5)
        writer.close()
        theirs.close()

    asyncio.run(loop_once())


def _run_executor(sandbox: str) -> None:  # pragma: no cover - runs in the executor
    """In the grandchild: become a fresh executor process, never return."""
    code = 1
    try:
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        log = os.open(os.path.join(sandbox, "executor.log"),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, 1 << 16)  # the zygote's sockets and pipes
        os.chdir(sandbox)
        with open("/proc/self/comm", "w") as comm:  # what ps and top show
            comm.write("juggler-exec")
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        # As a fresh interpreter has it: writing to a socket whose other end is
        # gone (the agent stopped or was killed) is an EPIPE the executor's link
        # recovers from, not death by SIGPIPE. (Its container resets it to the
        # default before exec.)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        from juggler.executor.__main__ import run

        sys.argv = [sys.argv[0], "--sandbox", sandbox]
        code = run(Path(sandbox))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _spawn(sandbox: str) -> int:
    """Fork an executor for `sandbox`; returns its pid. The zygote ignores
    SIGCHLD, so the kernel reaps its executors when they exit (and the agent
    learns of it through its pidfd)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the executor
        _run_executor(sandbox)
    return pid


def serve(fd: int) -> int:
    """Serve launch requests on `fd` (the zygote's end of the agent's socket
    pair) until the agent closes its end; returns the exit code."""
    _preload()
    if os.getppid() == 1:
        return 0  # the agent died while we imported
    conn = socket.socket(fileno=fd)
    conn.set_inheritable(False)
    # Executors are our children: let the kernel reap them (they reset this
    # disposition before they start anything of their own).
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    sys.stdout.flush()
    os.write(1, READY)
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    pending = b""
    while True:
        try:
            data = conn.recv(65536)
        except InterruptedError:
            continue
        except OSError:
            data = b""
        if not data:
            return 0  # the agent closed its end, or died
        *lines, pending = (pending + data).split(b"\n")
        for line in lines:
            try:
                reply = f"{_spawn(os.fsdecode(line))}\n"
            except OSError as e:
                reply = f"error fork: {e}\n"
            with contextlib.suppress(OSError):
                conn.sendall(reply.encode())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m juggler.agent.launcher")
    parser.add_argument("--fd", type=int, required=True,
                        help="the zygote's end of the agent's socket pair")
    args = parser.parse_args(argv)
    return serve(args.fd)


if __name__ == "__main__":
    sys.exit(main())
