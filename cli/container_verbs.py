"""`juggler create|start|stop|restart|kill|rm|rename|wait|inspect|top`: Docker's
container verbs, against the containers service's Docker Engine API.

Each takes a container's name, full id or unique id prefix, and behaves as
the docker CLI: the verbs that act on several containers print each one as
it was named once done, print the service's refusals as "Error response from
daemon: <message>" and go on with the others, and exit 1 if any failed.
`wait` prints each exit code (and exits 0, as `docker wait`); `inspect`
prints Docker's JSON array (or `-f` a Go template per container); `top` the
processes as `ps` on the agent lists them; `start -a` stays attached and
exits with the container's code (cli/container_run.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from juggler.cli import containers, image_pull
from juggler.cli.docker_client import DockerClient, DockerError, DockerUnreachable
from juggler.cli.go_format import TemplateError, parse, tabwrite


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("create", help="create a container (and do not start it)",
                       description="Create a container, as `docker create`: prints its id.",
                       usage="juggler create [OPTIONS] IMAGE [COMMAND [ARG...]]")
    containers.add_config_flags(p)
    p.set_defaults(func=create)

    p = _verb(sub, "start", "start stopped containers", start)
    p.add_argument("-a", "--attach", action="store_true",
                   help="attach its output and exit with its exit code")
    p.add_argument("-i", "--interactive", action="store_true", help="attach its stdin")

    for name, what, func in (("stop", "stop running containers", stop),
                             ("restart", "restart containers", restart)):
        p = _verb(sub, name, what, func)
        p.add_argument("-t", "--time", "--timeout", dest="time", type=int, default=None,
                       metavar="SECONDS",
                       help="seconds to wait after the stop signal before SIGKILL (default: "
                            "the container's --stop-timeout, else 10)")

    p = _verb(sub, "kill", "kill running containers", kill)
    p.add_argument("-s", "--signal", default="", help="signal to send (default KILL)")

    p = _verb(sub, "rm", "remove containers", rm)
    p.add_argument("-f", "--force", action="store_true",
                   help="kill a running container first")

    p = sub.add_parser("rename", help="rename a container",
                       description="Rename a container.")
    containers.add_host_flag(p)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=rename)

    _verb(sub, "wait", "wait until containers stop, print their exit codes", wait)

    p = _verb(sub, "inspect", "a container's details (Docker's JSON)", inspect)
    p.add_argument("-f", "--format", default="", metavar="TEMPLATE",
                   help="Go template per container, e.g. '{{.State.Status}}' or '{{json .}}'")

    p = sub.add_parser("top", help="a container's processes",
                       description="List a running container's processes (as ps on its "
                                   "agent's host lists them).")
    containers.add_host_flag(p)
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS OPTIONS",
                   help="options for ps (default -ef)")
    p.set_defaults(func=top)


def _verb(sub: argparse._SubParsersAction, name: str, what: str,
          func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] + ".")
    containers.add_host_flag(p)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=func)
    return p


def _each(args: argparse.Namespace, act: Callable[[DockerClient, str], Any],
          after: Callable[[list[str]], None] | None = None) -> int:
    """Act on each container named; print each name done, each refusal."""
    docker = containers.client(args.docker_host)
    failed = []
    for ref in args.containers:
        try:
            act(docker, ref)
        except (DockerError, DockerUnreachable) as e:
            containers.daemon_failed(e)
            failed.append(ref)
        else:
            print(ref, flush=True)
    if failed and after is not None:
        after(failed)
    return 1 if failed else 0


# -- the verbs ------------------------------------------------------------------------

def create(args: argparse.Namespace) -> int:
    image, argv = containers.split_command(args)
    if not image and not args.rootfs and not argv:
        print("juggler create: give an image (or --rootfs DIR, or -- COMMAND)",
              file=sys.stderr)
        return 2
    if args.rm and args.restart and args.restart != "no":
        print("juggler: conflicting options: cannot specify both --restart and --rm",
              file=sys.stderr)
        return containers.EXIT_JUGGLER
    docker = containers.client(args.docker_host)
    try:
        body = containers.create_body(args, image, argv)
        created = image_pull.create(docker, body, args.name)
    except image_pull.PullFailed as e:   # the image was missing; docker create exits 1
        print(f"juggler: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"juggler: {e}", file=sys.stderr)
        return containers.EXIT_JUGGLER
    except (DockerError, DockerUnreachable) as e:
        containers.daemon_failed(e, "juggler: ")
        return containers.EXIT_JUGGLER
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    print(created["Id"])
    return 0


def start(args: argparse.Namespace) -> int:
    if args.attach or args.interactive:
        if len(args.containers) > 1:
            print("you cannot start and attach multiple containers at once", file=sys.stderr)
            return 1
        from juggler.cli import container_run

        docker = containers.client(args.docker_host)
        return asyncio.run(container_run.start_attached(docker, args.containers[0],
                                                        args.interactive))

    def failed(refs: list[str]) -> None:
        print(f"Error: failed to start containers: {', '.join(refs)}", file=sys.stderr)

    return _each(args, lambda d, ref: d.start(ref), failed)


def stop(args: argparse.Namespace) -> int:
    return _each(args, lambda d, ref: d.stop(ref, args.time))


def restart(args: argparse.Namespace) -> int:
    return _each(args, lambda d, ref: d.restart(ref, args.time))


def kill(args: argparse.Namespace) -> int:
    return _each(args, lambda d, ref: d.kill(ref, args.signal))


def rm(args: argparse.Namespace) -> int:
    return _each(args, lambda d, ref: d.remove(ref, args.force))


def rename(args: argparse.Namespace) -> int:
    docker = containers.client(args.docker_host)
    try:
        docker.rename(args.container, args.new_name)
    except (DockerError, DockerUnreachable) as e:
        containers.daemon_failed(e)
        print(f"Error: failed to rename container named {args.container}", file=sys.stderr)
        return 1
    return 0


def wait(args: argparse.Namespace) -> int:
    docker = containers.client(args.docker_host)
    failed = False
    for ref in args.containers:
        try:
            result = docker.wait(ref)
        except (DockerError, DockerUnreachable) as e:
            containers.daemon_failed(e)
            failed = True
            continue
        print(result.get("StatusCode", ""), flush=True)
    return 1 if failed else 0


def inspect(args: argparse.Namespace) -> int:
    """`docker inspect`: the array of what was found, then an error for each
    reference that was not ("Error: No such object: x"), exit 1 if any."""
    template = None
    if args.format:
        try:
            template = parse(args.format)
        except TemplateError as e:
            print(f"template parsing error: {e}", file=sys.stderr)
            return 1
    docker = containers.client(args.docker_host)
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for ref in args.containers:
        try:
            found.append(docker.inspect(ref))
        except DockerError as e:
            errors.append(f"Error: No such object: {ref}" if e.status == 404 else str(e))
        except DockerUnreachable as e:
            return containers.daemon_failed(e)
    if template is None:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    else:
        for info in found:
            try:
                print(template.execute(info))
            except TemplateError as e:
                print(f"template parsing error: {e}", file=sys.stderr)
                return 1
    for error in errors:
        print(error, file=sys.stderr)
    return 1 if errors else 0


def top(args: argparse.Namespace) -> int:
    docker = containers.client(args.docker_host)
    try:
        got = docker.top(args.container, " ".join(args.ps_args))
    except (DockerError, DockerUnreachable) as e:
        return containers.daemon_failed(e)
    lines = ["\t".join(got.get("Titles") or [])]
    lines += ["\t".join(str(f) for f in proc) for proc in got.get("Processes") or []]
    print(tabwrite("\n".join(lines), minwidth=20, padding=3))
    return 0
