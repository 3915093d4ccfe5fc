"""`juggler run`: a tiny framework that runs one task (like mesos-execute / docker run).

It subscribes, takes the first offer that fits, launches the task, streams the
task's stdout and stderr from its agent, acknowledges every status update and
exits with the task's exit code (128+N when the task died of signal N, 137
when it was killed). Ctrl-C kills the task (a second Ctrl-C leaves at once).

Exit codes of its own, as docker's: 125 when juggler failed (no master, no agent
could ever fit the task, launch refused), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import math
import os
import signal
import socket
import sys
import uuid

import grpc

from juggler.cli import address as addr
from juggler.cli import operator, tasks
from juggler.common import servers, task_states
from juggler.common.leader import backoff
from juggler.common.resources import ResourceError, Resources, parse_size_mib
from juggler.common.task_defaults import INTERACTIVE_LABEL
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2, operator_pb2

S = common_pb2.TaskState
EXIT_JUGGLER = 125


def _cpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.5, 2)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number greater than 0")
    return value


def _mem(text: str) -> float:
    try:
        value = parse_size_mib(text)
    except ResourceError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text.rstrip("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more seconds")
    return value


def _env(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value if sep else os.environ.get(name, "")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a command as a task and wait for it",
                       description="Run a command in a container on the cluster; prints its "
                                   "output and exits with its exit code.")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    p.add_argument("--cpus", type=_cpus, default=0.1, help="cpus for the task (default 0.1)")
    p.add_argument("--mem", type=_mem, default=128.0,
                   help="memory limit, e.g. 64M, 1G; a bare number is MiB (default 128M)")
    p.add_argument("--disk", type=_mem, default=None, help="disk, like --mem (default none)")
    p.add_argument("--rootfs", default="",
                   help="directory on the agent to use as the root filesystem")
    p.add_argument("--image", default="",
                   help="image to run (e.g. busybox, host:5000/app:1); the agent pulls it on "
                        "first use. CMD, if given, replaces the image's Cmd")
    p.add_argument("--name", default="", help="task id (default: run-<random>)")
    p.add_argument("-e", "--env", type=_env, action="append", default=[],
                   help="environment variable NAME=VALUE (repeatable)")
    p.add_argument("-w", "--workdir", default="", help="working directory in the container")
    p.add_argument("-u", "--user", default="", help="user (name or uid) to run as")
    p.add_argument("--hostname", default="", help="hostname in the container")
    p.add_argument("--network", choices=["none", "host"], default="none",
                   help="none: loopback only (default); host: the host's network")
    p.add_argument("--grace-period", type=_grace, default=3.0,
                   help="seconds between SIGTERM and SIGKILL when killed (default 3)")
    p.add_argument("--role", default="*", help="role to take offers in (default *)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print status changes")
    p.add_argument("-l", "--label", type=_env, action="append", default=[],
                   help="task label NAME=VALUE (repeatable), e.g. juggler.log_max_bytes=65536")
    p.add_argument("-t", "--tty", action="store_true",
                   help="give the task a terminal (its output is attached, not logged)")
    p.add_argument("-i", "--interactive", action="store_true",
                   help="send this terminal's input to the task")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    p.set_defaults(func=main)


def build_task(args: argparse.Namespace, task_id: str) -> common_pb2.TaskInfo:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    amounts = {"cpus": args.cpus, "mem": args.mem}
    if args.disk:
        amounts["disk"] = args.disk
    resources = Resources(amounts)
    task = common_pb2.TaskInfo(
        name=task_id, task_id=task_id, resources=resources.to_proto(),
        command=common_pb2.CommandInfo(argv=argv, environment=dict(args.env), user=args.user,
                                       working_directory=args.workdir),
        container=common_pb2.ContainerInfo(
            rootfs=os.path.abspath(args.rootfs) if args.rootfs else "",
            image=getattr(args, "image", ""),
            hostname=args.hostname,
            network=common_pb2.NETWORK_HOST if args.network == "host"
            else common_pb2.NETWORK_NONE),
    )
    task.kill_policy.grace_period_seconds = args.grace_period
    task.labels.update(dict(getattr(args, "label", [])))
    if getattr(args, "tty", False):
        task.container.tty = True
    if getattr(args, "interactive", False):
        task.labels[INTERACTIVE_LABEL] = "true"
    return task


# Failures of juggler's own, not of the task's command: exit 125, as `docker
# run` does when the daemon cannot start the container (an image that cannot be
# pulled, an executor that could not start or died).
_JUGGLER_FAILURES = frozenset({common_pb2.REASON_CONTAINER_LAUNCH_FAILED,
                               common_pb2.REASON_EXECUTOR_TERMINATED,
                               common_pb2.REASON_TASK_INVALID})


def exit_code_of(status: common_pb2.TaskStatus) -> int:
    if status.HasField("exit_code"):
        return status.exit_code
    if status.state == S.TASK_FINISHED:
        return 0
    if status.state == S.TASK_KILLED:
        return 137
    if status.state == S.TASK_FAILED and status.reason not in _JUGGLER_FAILURES:
        return 1
    return EXIT_JUGGLER


class Runner:
    def __init__(self, args: argparse.Namespace, master: str) -> None:
        self.args = args
        self.master = master
        self.task_id = args.name or f"run-{uuid.uuid4().hex[:12]}"
        self.task = build_task(args, self.task_id)
        self.needed = Resources.from_proto(self.task.resources)
        self.fw = Framework(master, common_pb2.FrameworkInfo(
            name="juggler-run", user=getpass.getuser(), hostname=socket.gethostname(),
            # Long enough to ride out a master failover; short enough that a task
            # whose `juggler run` was killed does not linger long.
            roles=[args.role], failover_timeout=30))
        self.launched = False
        self.agent_id = ""
        self.agent_address = ""
        self.logs: asyncio.Task[None] | None = None
        self.interrupts = 0
        self.final: common_pb2.TaskStatus | None = None

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(f"juggler: {text}", file=sys.stderr, flush=True)

    async def check_fits_somewhere(self) -> None:
        try:
            agents = (await asyncio.to_thread(
                operator.call, self.master, "GetAgents", operator_pb2.GetAgentsRequest())).agents
        except operator.NoMaster as e:
            raise FrameworkError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
        if not agents:
            self.say("no agent is registered yet; waiting for one")
            return
        totals = [Resources.from_proto(a.total) for a in agents]
        if not any(t.contains(self.needed) for t in totals):
            biggest = max(totals, key=lambda t: (t.get("cpus"), t.get("mem")))
            raise FrameworkError(grpc.StatusCode.FAILED_PRECONDITION,
                                 f"no agent can ever fit {self.needed.describe()} "
                                 f"(the largest has {biggest.describe()})")
        fit = [a for a, t in zip(agents, totals, strict=True) if t.contains(self.needed)]
        usable = [a for a in fit if a.state == operator_pb2.AGENT_ACTIVE
                  and a.maintenance == operator_pb2.MAINTENANCE_NONE]
        if not usable:
            why = ", ".join(f"{a.info.hostname} {_condition(a)}" for a in fit)
            self.say(f"waiting: every agent that could run the task is unavailable now "
                     f"({why}); see `juggler agents`")

    async def run(self) -> int:
        await self.check_fits_somewhere()
        await self.fw.subscribe()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.interrupt)
        try:
            async for event in self.fw.events():
                kind = event.WhichOneof("event")
                if kind == "offers":
                    await self.on_offers(list(event.offers.offers))
                elif kind == "update":
                    done = await self.on_update(event.update.status)
                    if done:
                        break
                elif kind == "error":
                    raise FrameworkError(grpc.StatusCode.ABORTED, event.error.message)
            if self.final is None:
                raise FrameworkError(grpc.StatusCode.UNAVAILABLE, "the master closed the stream")
            if self.logs is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.logs), 10)
            return exit_code_of(self.final)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            if self.logs is not None:
                self.logs.cancel()
            with contextlib.suppress(FrameworkError):
                await self.fw.teardown()
            await self.fw.close()

    def interrupt(self) -> None:
        self.interrupts += 1
        if self.interrupts > 1 or not self.launched:
            os._exit(130)
        self.say(f"killing task {self.task_id} (Ctrl-C again to leave it running)")
        asyncio.get_running_loop().create_task(self._kill())

    async def _kill(self) -> None:
        with contextlib.suppress(FrameworkError):
            await self.fw.kill(self.task_id, self.agent_id)

    async def on_offers(self, offers: list[common_pb2.Offer]) -> None:
        chosen = None
        if not self.launched:
            for offer in offers:
                if Resources.from_proto(offer.resources).contains(self.needed):
                    chosen = offer
                    break
        rest = [o.id for o in offers if o is not chosen]
        if rest:
            await self.fw.decline(rest, refuse_seconds=5.0 if self.launched else 1.0)
        if chosen is None:
            return
        self.task.agent_id = chosen.agent_id
        await self.fw.launch([chosen.id], [self.task])
        self.launched = True
        self.agent_id = chosen.agent_id
        self.agent_address = chosen.agent_address
        await self.fw.suppress()
        self.say(f"task {self.task_id} launched on {chosen.hostname}")

    async def on_update(self, status: common_pb2.TaskStatus) -> bool:
        try:
            await self.fw.acknowledge(status)
        except FrameworkError as e:
            # Around a master failover the ack can miss; the agent retries the update.
            if e.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE,
                              grpc.StatusCode.FAILED_PRECONDITION):
                raise
        if status.task_id != self.task_id:
            return False
        if status.state in (S.TASK_RUNNING, S.TASK_KILLING) or task_states.is_terminal(
                status.state):
            self.start_logs()
        if not task_states.is_terminal(status.state):
            return False
        self.final = status
        plain_exit = status.state == S.TASK_FINISHED or (
            status.state == S.TASK_FAILED and status.reason == common_pb2.REASON_COMMAND_EXITED)
        if not plain_exit:
            # An error, not a status change: said even with -q.
            print(f"juggler: task {self.task_id} {task_states.name(status.state)}"
                  f" ({common_pb2.Reason.Name(status.reason)}): {status.message}",
                  file=sys.stderr, flush=True)
        return True

    def start_logs(self) -> None:
        if self.logs is None and self.agent_address:
            attached = self.args.tty or self.args.interactive
            self.logs = asyncio.get_running_loop().create_task(
                self.attach() if attached else self.stream_logs())

    async def attach(self) -> None:
        """-t/-i: the task's own stdio (what it wrote before comes first)."""
        from juggler.cli.attach import attach

        try:
            await attach(self.agent_address, self.task_id, self.fw.framework_id,
                         tty=self.args.tty, stdin=self.args.interactive, logs=True,
                         detach_keys=False)
        except grpc.aio.AioRpcError as e:
            if e.code() != grpc.StatusCode.FAILED_PRECONDITION:  # else: it already ended
                self.say(f"cannot attach to the task on {self.agent_address}: {e.details()}")
            await self.stream_logs()

    async def stream_logs(self) -> None:
        """Stream the task's output until it ends. When the agent cannot be
        reached (it restarts: the task runs on), ask the master where it is now
        and carry on where the output stopped, never writing a byte twice."""
        written = {agent_pb2.LogChunk.STDOUT: 0, agent_pb2.LogChunk.STDERR: 0}
        attempt = 0
        while True:
            seen = {agent_pb2.LogChunk.STDOUT: 0, agent_pb2.LogChunk.STDERR: 0}
            try:
                async with servers.channel(self.agent_address) as channel:
                    stub = agent_pb2_grpc.AgentStub(channel)
                    call = stub.Logs(agent_pb2.LogsRequest(
                        task_id=self.task_id, framework_id=self.fw.framework_id, follow=True))
                    async for chunk in call:
                        data = chunk.data[max(0, written[chunk.stream] - seen[chunk.stream]):]
                        seen[chunk.stream] += len(chunk.data)
                        if data:
                            written[chunk.stream] += len(data)
                            out = (sys.stdout if chunk.stream == agent_pb2.LogChunk.STDOUT
                                   else sys.stderr)
                            out.buffer.write(data)
                            out.flush()
                return
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND and self.final is not None:
                    return  # it ended before it had a sandbox: no output to show
                if e.code() != grpc.StatusCode.UNAVAILABLE or self.final is not None:
                    self.say(f"cannot read the task's output from {self.agent_address}: "
                             f"{e.details()}")
                    return
                attempt += 1
                if attempt == 1:
                    self.say("the task's agent cannot be reached; its output follows when "
                             "it is back")
                await asyncio.sleep(backoff(attempt, base=0.5, cap=5.0))
                with contextlib.suppress(Exception):
                    view = await tasks.locate(self.master, self.task_id)
                    self.agent_address = view.agent_address or self.agent_address


def _condition(agent: operator_pb2.AgentView) -> str:
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    if agent.maintenance != operator_pb2.MAINTENANCE_NONE:
        return operator_pb2.MaintenanceState.Name(agent.maintenance).removeprefix(
            "MAINTENANCE_")
    return state


def main(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv and not args.image:
        print("juggler run: no command given (usage: juggler run [OPTIONS] -- CMD [ARG...])",
              file=sys.stderr)
        return 2
    if args.image and args.rootfs:
        print("juggler run: give --image or --rootfs, not both", file=sys.stderr)
        return 2
    master = addr.resolve(args.master)
    runner = Runner(args, master)
    try:
        return asyncio.run(runner.run())
    except FrameworkError as e:
        hint = ""
        if e.code == grpc.StatusCode.UNAVAILABLE and "juggler up" not in e.message:
            hint = " (is a cluster running? start one with `juggler up`)"
        print(f"juggler run: {e.message or e.code.name}{hint}", file=sys.stderr)
        return 2 if e.code == grpc.StatusCode.INVALID_ARGUMENT else EXIT_JUGGLER
    except grpc.aio.AioRpcError as e:
        print(f"juggler run: cannot reach the master at {master}: {e.details()} "
              "(is a cluster running? start one with `juggler up`)", file=sys.stderr)
        return EXIT_JUGGLER
