"""`juggler run`: run a container (with the containers service) or a task (without).

With the apps service's Docker API reachable (cli/containers.py says which
one), `juggler run` is `docker run`: it creates a container there (it has a
name, shows in `juggler ps -a`, `--rm` and `--restart` work) and `-d`
prints its id; otherwise it stays attached (cli/container_run.py). Docker's
flags as docker spells them, IMAGE [COMMAND...] as docker's, and juggler's
own forms: `--image`/`--rootfs` and `-- COMMAND` (no image: the agent's
filesystem).

Without that service (a cluster without the apps service, a master named
with --master or $JUGGLER_MASTER and no Docker API named with -H or
$JUGGLER_DOCKER), or with a task option (--disk, --role), it runs one task
as a tiny framework, as before: it subscribes, takes the first offer that
fits, launches the task, streams its stdout and stderr from its agent (every
byte: attached with back-pressure, see cli/attach.py), acknowledges every
status update and exits with the task's exit code (128+N
when the task died of signal N, 137 when it was killed); --name is the task
id; Ctrl-C kills the task (a second Ctrl-C leaves at once). -d, --restart
and --rm need containers and are refused there.

Exit codes of its own, as docker's: 125 when juggler failed (no master, no agent
could ever fit it, launch refused, no such image; output of the task lost, which
it says), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import socket
import sys
import uuid

import grpc

from juggler.cli import address as addr
from juggler.cli import containers, operator, process_flags, task_ports, tasks
from juggler.cli.containers import EXIT_JUGGLER
from juggler.cli.terminal import tty_refused
from juggler.common import published_ports, task_states, tls
from juggler.common.leader import backoff
from juggler.common.resources import ResourceError, Resources, parse_size_mib
from juggler.common.task_defaults import (
    CPU_QUOTA_LABEL,
    CPU_SHARES_LABEL,
    DEFAULT_HOLD_OUTPUT_SECONDS,
    HOLD_OUTPUT_LABEL,
    INTERACTIVE_LABEL,
    MEMORY_SWAP_LABEL,
    PIDS_MAX_LABEL,
)
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import common_pb2, operator_pb2

S = common_pb2.TaskState
DEFAULT_CPUS = 0.1
DEFAULT_MEM_MIB = 128.0
DEFAULT_GRACE_SECONDS = 3.0
STREAM_GRACE_SECONDS = 10.0  # for the last output after Ctrl-C killed the task


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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a container (or a task) and wait for it",
                       description="Run a command in a container on the cluster, as `docker "
                                   "run`: prints its output and exits with its exit code; -d "
                                   "leaves it running. Without the containers service, runs "
                                   "it as a task.",
                       usage="juggler run [OPTIONS] IMAGE [COMMAND [ARG...]]\n"
                             "       juggler run [OPTIONS] [--image IMAGE|--rootfs DIR] "
                             "-- COMMAND [ARG...]")
    p.add_argument("--master", default=None,
                   help="master address (default: what `up` wrote); naming one runs a task "
                        "there unless -H names the containers service too")
    p.add_argument("-d", "--detach", action="store_true",
                   help="run in the background and print the container's id")
    p.add_argument("--mem", type=_mem, default=None,
                   help="memory limit, e.g. 64M, 1G; a bare number is MiB (default 128M)")
    p.add_argument("--disk", type=_mem, default=None,
                   help="disk, like --mem (default none; a task option)")
    p.add_argument("--grace-period", type=_grace, default=None,
                   help="seconds between SIGTERM and SIGKILL when killed (default 3 for a "
                        "task, 10 for a container; as --stop-timeout)")
    p.add_argument("--role", default=None, help="role to take offers in (default *; a task "
                                                "option)")
    p.add_argument("-q", "--quiet", action="store_true", help="do not print status changes")
    p.add_argument("--secret-env", type=containers.pair, action="append", default=[],
                   metavar="NAME=VALUE",
                   help="a secret environment variable (repeatable; NAME alone: this "
                        "shell's value, kept out of `ps` and the history): the task gets it, "
                        "the cluster's state, UI and logs show <secret> (a task option)")
    p.add_argument("--writable-host-fs", action="store_true",
                   help="without --image/--rootfs: let the task write the agent host's "
                        "filesystem (by default read-only apart from its sandbox, "
                        "$MESOS_SANDBOX, and a private /tmp; a task option)")
    containers.add_config_flags(p)
    p.set_defaults(func=main)


def build_task(args: argparse.Namespace, task_id: str, image: str, argv: list[str]
               ) -> common_pb2.TaskInfo:
    """The task `juggler run` launches without the containers service. Docker's
    resource flags become the labels the agent reads (common/task_defaults.py),
    as a container's run has them (apps/container_tasks.py)."""
    memory = args.memory / 2**20 if args.memory is not None else args.mem
    amounts = {"cpus": args.cpus or (args.cpu_shares / 1024 if args.cpu_shares else
                                     DEFAULT_CPUS),
               "mem": memory or DEFAULT_MEM_MIB}
    if args.disk:
        amounts["disk"] = args.disk
    resources = Resources(amounts, ports=published_ports.fixed_ports(task_ports.bindings(args)))
    task = common_pb2.TaskInfo(
        name=task_id, task_id=task_id, resources=resources.to_proto(),
        command=common_pb2.CommandInfo(argv=argv, environment=containers.environment(args),
                                       user=args.user, working_directory=args.workdir),
        container=common_pb2.ContainerInfo(
            rootfs=os.path.abspath(args.rootfs) if args.rootfs else "",
            image=image,
            hostname=args.hostname,
            network=task_ports.NETWORKS.get(task_ports.network(args), common_pb2.NETWORK_BRIDGE)),
    )
    if task.container.network == common_pb2.NETWORK_BRIDGE and task_ports.network(args) != "bridge":
        task.container.network_name = task_ports.network(args)
    grace = args.grace_period if args.grace_period is not None else args.stop_timeout
    task.kill_policy.grace_period_seconds = DEFAULT_GRACE_SECONDS if grace is None else grace
    if args.stop_signal:
        task.kill_policy.signal = args.stop_signal
    task.labels.update({k: v or "" for k, v in args.label})
    # Its output waits for `juggler run` to attach (cli/attach.py): none is lost first.
    task.labels.setdefault(HOLD_OUTPUT_LABEL, str(DEFAULT_HOLD_OUTPUT_SECONDS))
    if args.tty:
        task.container.tty = True
    if args.interactive:
        task.labels[INTERACTIVE_LABEL] = "true"
    if args.cpu_shares:
        task.labels[CPU_SHARES_LABEL] = str(args.cpu_shares)
        if not args.cpus:
            task.labels[CPU_QUOTA_LABEL] = "false"   # --cpu-shares alone caps nothing
    if args.memory_swap is not None:
        task.labels[MEMORY_SWAP_LABEL] = str(args.memory_swap)
    if args.pids_limit is not None and args.pids_limit > 0:
        task.labels[PIDS_MAX_LABEL] = str(args.pids_limit)
    task.labels.update(process_flags.labels(args))  # checked in main
    secret = secret_environment(args)
    task.command.environment.update(secret)
    task.command.secret_environment.extend(sorted(secret))
    task.container.writable_host_filesystem = args.writable_host_fs
    return task


def secret_environment(args: argparse.Namespace) -> dict[str, str]:
    """--secret-env's variables; NAME alone takes this environment's value
    (skipped when unset, as -e NAME)."""
    return containers.pairs_values(args.secret_env)


class Runner:
    def __init__(self, args: argparse.Namespace, master: str, image: str,
                 argv: list[str]) -> None:
        self.args = args
        self.master = master
        self.task_id = args.name or f"run-{uuid.uuid4().hex[:12]}"
        self.task = build_task(args, self.task_id, image, argv)
        self.needed = Resources.from_proto(self.task.resources)
        self.bindings = task_ports.bindings(args)
        self.fw = Framework(master, common_pb2.FrameworkInfo(
            # FrameworkInfo.user is the user of a task that names none (--user)
            # and whose image names none: root, as `docker run` whoever runs
            # the client, and as the containers service's runs (not the CLI's
            # login name, which the agent's host or the image may not have).
            name="juggler-run", user="root", hostname=socket.gethostname(),
            # Long enough to ride out a master failover; short enough that a task
            # whose `juggler run` was killed does not linger long.
            roles=[args.role or "*"], failover_timeout=30))
        self.launched = False
        self.agent_id = ""
        self.agent_address = ""
        self.logs: asyncio.Task[None] | None = None
        self.output_lost = ""  # why some of the task's output never reached here
        self.interrupts = 0
        self.final: common_pb2.TaskStatus | None = None

    def say(self, text: str) -> None:
        if not self.args.quiet:
            print(f"juggler: {text}", file=sys.stderr, flush=True)

    async def check_fits_somewhere(self) -> None:
        await check_fits(self.master, self.needed, self.say)

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
                # The task has ended: its executor sent an attached client all
                # its output first, so what is left is on its way here (after
                # Ctrl-C, a while at most: this terminal may be what is stuck).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self.logs),
                                           STREAM_GRACE_SECONDS if self.interrupts else None)
            if self.output_lost and not self.interrupts:
                return EXIT_JUGGLER
            return task_states.exit_code(self.final)
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
        host_ports: list[int] | None = []
        if not self.launched:
            for offer in offers:
                offered = Resources.from_proto(offer.resources)
                if not offered.contains(self.needed):
                    continue
                host_ports = published_ports.assign(self.bindings, offered.ports,
                                                    random.Random())
                if host_ports is not None:
                    chosen = offer
                    break
        rest = [o.id for o in offers if o is not chosen]
        if rest:
            await self.fw.decline(rest, refuse_seconds=5.0 if self.launched else 1.0)
        if chosen is None:
            return
        self.task.agent_id = chosen.agent_id
        task_ports.publish_on(self.task, self.bindings, host_ports or [], chosen.hostname)
        await self.fw.launch([chosen.id], [self.task])
        self.launched = True
        self.agent_id = chosen.agent_id
        self.agent_address = chosen.agent_address
        await self.fw.suppress()
        published = ", ".join(f"0.0.0.0:{m.host_port}->{m.container_port}/{m.protocol}"
                              for m in self.task.container.port_mappings)
        self.say(f"task {self.task_id} launched on {chosen.hostname}"
                 + (f" ({published})" if published else ""))

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
        # A task that never ran (its image could not be had, its launch
        # failed) has no output: no attach, no logs, so the one error said
        # below is the only one.
        if status.state in (S.TASK_RUNNING, S.TASK_KILLING) or (
                task_states.is_terminal(status.state) and not task_states.never_ran(status)):
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
        elif status.oom_killed:
            # PID 1's own exit, after the OOM killer took another of its
            # processes: the message says so (executor/status.py).
            print(f"juggler: task {self.task_id}: {status.message}", file=sys.stderr,
                  flush=True)
        return True

    def start_logs(self) -> None:
        if self.logs is None and self.agent_address:
            self.logs = asyncio.get_running_loop().create_task(self.stream_output())

    async def stream_output(self) -> None:
        """The task's output here, every byte, until it ends: attached with
        back-pressure (cli/attach.py; the task holds its output until then,
        label juggler.hold_output), -t/-i with this terminal's input. When
        the agent cannot be reached (it restarts: the task runs on), ask the
        master where it is now and attach again from where the output stopped
        (-t/-i: follow its logs from there); once the task no longer runs,
        what its logs keep from there. Bytes rotated away before they were
        written here fail the run (`output_lost`)."""
        from juggler.cli.attach import OutputLost, ReaderGone, Written, attach, dropped_by_grpc
        from juggler.cli.logs import copy_output
        from juggler.cli.terminal import StreamEnded

        written = Written()
        attaching = True
        attempt = 0
        try:
            while True:
                try:
                    if attaching:
                        await attach(self.agent_address, self.task_id, self.fw.framework_id,
                                     tty=self.args.tty, stdin=self.args.interactive,
                                     logs=True, detach_keys=False, written=written)
                    else:
                        await copy_output(self.agent_address, self.task_id,
                                          self.fw.framework_id, follow=True, written=written)
                    return
                except StreamEnded:
                    attaching = False  # dropped before its end: the rest from its logs
                    continue
                except grpc.aio.AioRpcError as e:
                    code = e.code()
                    if code == grpc.StatusCode.DATA_LOSS:
                        raise OutputLost(e.details()) from None
                    if code == grpc.StatusCode.UNAVAILABLE and self.final is None:
                        attempt += 1
                        if attempt == 1:
                            self.say("the task's agent cannot be reached; its output follows "
                                     "when it is back")
                        await asyncio.sleep(backoff(attempt, base=0.5, cap=5.0))
                        with contextlib.suppress(Exception):
                            view = await tasks.locate(self.master, self.task_id)
                            self.agent_address = view.agent_address or self.agent_address
                        # Input is read once: -t/-i follow the logs from here on.
                        attaching = not (self.args.tty or self.args.interactive)
                        continue
                    if attaching and (code in (grpc.StatusCode.FAILED_PRECONDITION,
                                               grpc.StatusCode.NOT_FOUND,
                                               grpc.StatusCode.UNAVAILABLE)
                                      or dropped_by_grpc(e)):
                        attaching = False  # it no longer runs: what its logs keep
                        continue
                    if code == grpc.StatusCode.NOT_FOUND and self.final is not None:
                        return  # it ended before it had a sandbox: no output to show
                    self.say(f"cannot read the task's output from {self.agent_address}: "
                             f"{e.details()}")
                    return
        except OutputLost as e:
            self.output_lost = str(e)
            if not self.interrupts:  # killed by Ctrl-C: its end was not wanted
                print(f"juggler: the task's output is incomplete: {e}", file=sys.stderr,
                      flush=True)
        except ReaderGone:
            return  # `juggler run … | head`: nothing reads it any more


async def check_fits(master: str, needed: Resources, say) -> None:  # type: ignore[no-untyped-def]
    """Refuse what no agent could ever run (FrameworkError FAILED_PRECONDITION),
    and say when every agent that could is unavailable now."""
    try:
        agents = (await asyncio.to_thread(
            operator.call, master, "GetAgents", operator_pb2.GetAgentsRequest())).agents
    except operator.NoMaster as e:
        raise FrameworkError(grpc.StatusCode.UNAVAILABLE, str(e)) from None
    if not agents:
        say("no agent is registered yet; waiting for one")
        return
    totals = [Resources.from_proto(a.total) for a in agents]
    if not any(t.contains(needed) for t in totals):
        biggest = max(totals, key=lambda t: (t.get("cpus"), t.get("mem")))
        raise FrameworkError(grpc.StatusCode.FAILED_PRECONDITION,
                             f"no agent can ever fit {needed.describe()} "
                             f"(the largest has {biggest.describe()})")
    fit = [a for a, t in zip(agents, totals, strict=True) if t.contains(needed)]
    usable = [a for a in fit if a.state == operator_pb2.AGENT_ACTIVE
              and a.maintenance == operator_pb2.MAINTENANCE_NONE]
    if not usable:
        why = ", ".join(f"{a.info.hostname} {_condition(a)}" for a in fit)
        say(f"waiting: every agent that could run it is unavailable now ({why}); see "
            "`juggler agents`")


def _condition(agent: operator_pb2.AgentView) -> str:
    state = operator_pb2.AgentState.Name(agent.state).removeprefix("AGENT_")
    if agent.maintenance != operator_pb2.MAINTENANCE_NONE:
        return operator_pb2.MaintenanceState.Name(agent.maintenance).removeprefix(
            "MAINTENANCE_")
    return state


CONTAINER_ONLY = (("detach", "-d"), ("restart", "--restart"), ("rm", "--rm"))


def main(args: argparse.Namespace) -> int:
    if refused := tty_refused(args.tty, args.interactive and not args.detach):
        print(f"juggler: {refused}", file=sys.stderr)
        return 1
    image, argv = containers.split_command(args)
    if not argv and not image and not args.rootfs:
        print("juggler run: no command given (usage: juggler run [OPTIONS] IMAGE [COMMAND] or "
              "juggler run [OPTIONS] -- COMMAND [ARG...])", file=sys.stderr)
        return 2
    if args.image and args.rootfs:
        print("juggler run: give --image or --rootfs, not both", file=sys.stderr)
        return 2
    if args.rm and args.restart and args.restart != "no":
        # docker's own words (docker 28), and its exit code
        print("juggler: conflicting options: cannot specify both --restart and --rm",
              file=sys.stderr)
        return EXIT_JUGGLER
    try:
        containers.environment(args)
        process_flags.labels(args)
        containers.publishing(args)
    except ValueError as e:
        print(f"juggler: {e}", file=sys.stderr)
        return EXIT_JUGGLER
    if args.writable_host_fs and (image or args.rootfs):
        print("juggler run: --writable-host-fs is for a task on the agent's filesystem "
              "(no image, no --rootfs)", file=sys.stderr)
        return 2
    # Task options: the containers service (Docker's API) has no field for them.
    task_options = [f for f, v in (("--disk", args.disk), ("--role", args.role),
                                   ("--secret-env", args.secret_env),
                                   ("--writable-host-fs", args.writable_host_fs)) if v]
    wanted = [flag for attr, flag in CONTAINER_ONLY if getattr(args, attr) not in ("", "no",
                                                                                  False)]
    if task_options and wanted:   # a task is not a container: no -d, --restart, --rm
        print(f"juggler run: {', '.join(task_options)} do{'es' if len(task_options) == 1 else ''}"
              f" not go with {', '.join(wanted)}: {', '.join(wanted)} make"
              f"{'s' if len(wanted) == 1 else ''} a container (the containers service), "
              f"whose API has no field for {'it' if len(task_options) == 1 else 'them'}; "
              "run the task in the foreground, or drop "
              f"{'it' if len(task_options) == 1 else 'them'}", file=sys.stderr)
        return EXIT_JUGGLER   # as Docker's conflicting options
    docker = None if task_options else containers.service(args.docker_host, args.master)
    if docker is not None and not docker.ping():
        if args.docker_host:
            print(f"juggler: cannot reach the containers service at {docker.url}",
                  file=sys.stderr)
            return EXIT_JUGGLER
        docker = None
    if docker is not None:
        return asyncio.run(_run_container(args, docker, image, argv))
    if wanted:
        print(f"juggler run: {', '.join(wanted)} need{'s' if len(wanted) == 1 else ''} a "
              f"container, and so the containers service (the apps service's Docker API; "
              f"`juggler up` starts it): {_why_a_task(args, task_options)}", file=sys.stderr)
        return EXIT_JUGGLER
    return _run_task(args, image, argv)


def _why_a_task(args: argparse.Namespace, task_options: list[str]) -> str:
    if task_options:
        return f"{', '.join(task_options)} make{'s' if len(task_options) == 1 else ''} it a task"
    if containers.service(args.docker_host, args.master) is not None:
        return f"no containers service answers at {addr.docker_host(args.docker_host)}"
    if addr.docker_host_source(args.docker_host)[1] == "none":
        return addr.not_served("-H or $JUGGLER_DOCKER")
    return ("the master was named (--master, $JUGGLER_MASTER): name its containers service "
            "with -H or $JUGGLER_DOCKER")


async def _run_container(args: argparse.Namespace, docker, image: str,  # type: ignore[no-untyped-def]
                         argv: list[str]) -> int:
    from juggler.cli import container_run

    try:
        body = containers.create_body(args, image, argv, attach=not args.detach,
                                      stop_timeout=args.grace_period)
    except ValueError as e:
        print(f"juggler: {e}", file=sys.stderr)
        return EXIT_JUGGLER
    host = body["HostConfig"]
    cpus = host["NanoCpus"] / 1e9 if "NanoCpus" in host else (
        host["CpuShares"] / 1024 if host.get("CpuShares") else DEFAULT_CPUS)
    mem = host["Memory"] / 2**20 if host.get("Memory") else DEFAULT_MEM_MIB
    master = addr.resolve(args.master)
    try:
        await check_fits(master, Resources({"cpus": cpus, "mem": mem}),
                         lambda text: None if args.quiet else print(
                             f"juggler: {text}", file=sys.stderr, flush=True))
    except FrameworkError as e:
        if e.code == grpc.StatusCode.FAILED_PRECONDITION:
            print(f"juggler: {e.message}", file=sys.stderr)
            return EXIT_JUGGLER
        # no master to ask: the containers service decides
    return await container_run.run(args, docker, body)


def _run_task(args: argparse.Namespace, image: str, argv: list[str]) -> int:
    master = addr.resolve(args.master)
    if warning := published_ports.discarded_warning(task_ports.network(args), args.publish):
        print(f"WARNING: {warning}", file=sys.stderr)
    runner = Runner(args, master, image, argv)
    try:
        return asyncio.run(runner.run())
    except FrameworkError as e:
        from juggler.cli.main import refusal

        if (refused := refusal(e)) is not None:   # the rule that refused it, in one line
            print(f"juggler run: {refused}", file=sys.stderr)
            return 1
        hint = ""
        if (e.code == grpc.StatusCode.UNAVAILABLE and "juggler up" not in e.message
                and not tls.is_tls_problem(e.message)):
            hint = " (is a cluster running? start one with `juggler up`)"
        print(f"juggler run: {e.message or e.code.name}{hint}", file=sys.stderr)
        return 2 if e.code == grpc.StatusCode.INVALID_ARGUMENT else EXIT_JUGGLER
    except grpc.aio.AioRpcError as e:
        if e.code().name in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
            print(f"juggler run: {e.details() or e.code().name}", file=sys.stderr)
            return 1
        print(f"juggler run: cannot reach the master at {master}: {e.details()} "
              "(is a cluster running? start one with `juggler up`)", file=sys.stderr)
        return EXIT_JUGGLER
    except ValueError as e:   # an --env-file
        print(f"juggler run: {e}", file=sys.stderr)
        return EXIT_JUGGLER
