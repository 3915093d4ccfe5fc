"""`juggler exec [-i] [-t] [-d] CONTAINER|TASK [--] CMD [ARG...]`: run a command in a
running container (or task).

The command runs inside its container (its namespaces, cgroup, user and
hardening; see container/nsenter.py), started by its agent, which the CLI
reaches directly (cli/containers.py finds it). `-t` gives it a terminal (the
local one goes raw), `-i` forwards stdin. `-d` leaves it running in the
background: the containers service holds it (Docker's exec create and start
with Detach), so it needs a container. Exits with the command's exit code:
126 when it cannot be run, 127 when it is not found, as `docker exec`; when
the command never ran, 1 for a container the service refused (no such
container, not running: "Error response from daemon: ...", as docker) and
125 when juggler itself failed (no such task, its agent unreachable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

import grpc

from juggler.cli import containers, tasks, terminal
from juggler.cli.containers import EXIT_JUGGLER
from juggler.cli.docker_client import DockerError, DockerUnreachable
from juggler.common import servers
from juggler.v1 import agent_pb2, agent_pb2_grpc


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="run a command inside a running container (or task)",
                       description="Run a command inside a running container's (or task's) "
                                   "namespaces.",
                       usage="juggler exec [OPTIONS] CONTAINER|TASK [--] COMMAND [ARG...]")
    p.add_argument("--master", default=None, help="master address (default: what `up` wrote)")
    containers.add_host_flag(p)
    p.add_argument("-i", "--interactive", action="store_true", help="forward stdin")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-d", "--detach", action="store_true",
                   help="run it in the background (containers only)")
    p.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable (repeatable)")
    p.add_argument("-u", "--user", default="", help="user (default: the container's)")
    p.add_argument("-w", "--workdir", default="",
                   help="working directory (default: the container's)")
    p.add_argument("ref", metavar="CONTAINER|TASK")
    p.add_argument("command", nargs=argparse.REMAINDER, help="[--] COMMAND [ARG...]")
    p.set_defaults(func=main)


def _environment(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        name, sep, value = item.partition("=")
        if sep:
            env[name] = value
        elif name in os.environ:   # docker's -e NAME: this shell's value, if it has one
            env[name] = os.environ[name]
    return env


async def run(args: argparse.Namespace, argv: list[str]) -> int:
    try:
        target = await containers.locate(args.ref, args.docker_host, args.master)
    except containers.NotFound as e:
        print(f"juggler exec: {e}" if not e.daemon else str(e), file=sys.stderr)
        return 1 if e.daemon else EXIT_JUGGLER
    env = _environment(args.env)
    if target.container is not None and not target.running:
        print(f"Error response from daemon: container {target.container.get('Id', args.ref)} "
              "is not running", file=sys.stderr)
        return 1
    if target.container is None and not target.running:
        print(f"juggler exec: {tasks.not_running(target.view)}",  # type: ignore[arg-type]
              file=sys.stderr)
        return EXIT_JUGGLER
    if args.detach:
        return await _detached(args, target, argv, env)
    start = agent_pb2.ExecRequest.Start(
        task_id=target.task_id, framework_id=target.framework_id, argv=argv, tty=args.tty,
        environment=env, user=args.user, working_directory=args.workdir)
    if args.tty:
        start.size.CopyFrom(terminal.terminal_size())
        start.environment.setdefault("TERM", os.environ.get("TERM", "xterm"))
    try:
        async with servers.channel(target.agent_address) as channel:
            stub = agent_pb2_grpc.AgentStub(channel)
            raw = args.tty and args.interactive
            with terminal.raw_mode(0) if raw else contextlib.nullcontext():
                code = await terminal.relay(
                    stub.Exec, agent_pb2.ExecRequest(start=start),
                    lambda message: agent_pb2.ExecRequest(input=message),
                    tty=args.tty, interactive=args.interactive, detach=False)
    except grpc.aio.AioRpcError as e:
        print(f"juggler exec: {await containers.agent_failure(target, e)}", file=sys.stderr)
        return EXIT_JUGGLER
    return EXIT_JUGGLER if code is None else code


async def _detached(args: argparse.Namespace, target: containers.Target, argv: list[str],
                    env: dict[str, str]) -> int:
    if target.docker is None:
        print("juggler exec: -d needs a container (the containers service keeps the command "
              f"running); {args.ref} is a task", file=sys.stderr)
        return EXIT_JUGGLER
    body = {"Cmd": argv, "Env": [f"{k}={v}" for k, v in env.items()], "Tty": args.tty,
            "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
            "Detach": True, "User": args.user, "WorkingDir": args.workdir}
    try:
        exec_id = await containers.off_loop(target.docker.exec_create, args.ref, body)
        await containers.off_loop(target.docker.exec_start_detached, exec_id)
    except (DockerError, DockerUnreachable) as e:
        return containers.daemon_failed(e)
    return 0


def main(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("juggler exec: no command given (usage: juggler exec [-it] CONTAINER|TASK "
              "[--] CMD [ARG...])", file=sys.stderr)
        return 2
    if refused := terminal.tty_refused(args.tty, args.interactive and not args.detach):
        print(f"juggler: {refused}", file=sys.stderr)
        return 1
    return asyncio.run(run(args, argv))
