"""Containers from the CLI: Docker's `run`/`create` flags as a create request, which
containers service a command talks to, and where a container's run is (its
agent and task) for the verbs that stream from it (logs, exec, attach, stats).

Which service: the Docker Engine API at `-H`, $JUGGLER_DOCKER, the address
`juggler up` wrote ($JUGGLER_HOME/docker), or unix:///run/juggler/docker.sock
(cli/address.py). A master named for the command (`--master`, or
$JUGGLER_MASTER) is trusted over an address found in a file or by default,
which may be another cluster's: then only a Docker API named with -H or
$JUGGLER_DOCKER is used, and `run` runs a task on that master (today's path).
When the cluster `juggler up` started last runs no apps service (its master
pointer without a docker pointer), `run` runs a task on it and the container
verbs say so rather than try the default socket, which may be another
cluster's.

Streams go from the CLI to the container's agent directly, as for tasks: the
inspect JSON names the run (`Juggler.TaskId`, `Juggler.FrameworkId`) and the
agent (`Node.Addr`). A reference that is no container is looked up as a task
id in the master's state, so every stream verb takes either.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from juggler.cli import address as addr
from juggler.cli import process_flags, tasks
from juggler.cli.docker_client import DockerClient, DockerError, DockerUnreachable
from juggler.common import published_ports, task_states
from juggler.v1 import operator_pb2

# juggler's own failures exit as docker's do when the daemon fails: 125.
EXIT_JUGGLER = task_states.EXIT_PLATFORM
T = TypeVar("T")


def off_loop(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """`fn(*args)` in a daemon thread, as a future of this loop: unlike
    asyncio.to_thread, a call still blocked (a wait, a start pulling an image)
    does not hold the process when the user leaves."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def work() -> None:
        outcome: tuple[Any, BaseException | None]
        try:
            outcome = (fn(*args), None)
        except BaseException as e:   # handed to the awaiting coroutine
            outcome = (None, e)
        with contextlib.suppress(RuntimeError):   # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=work, daemon=True).start()
    return future


# -- which service ------------------------------------------------------------------------

def service(docker_flag: str | None, master_flag: str | None = None) -> DockerClient | None:
    """The containers service this command may use, or None when a named
    master must not be mixed with a Docker API found only in a file or by
    default, or the last up's cluster serves none (see the module's doc)."""
    url, source = addr.docker_host_source(docker_flag)
    if source == "none" or (source in ("file", "default")
                            and (master_flag or addr.master_named())):
        return None
    try:
        return DockerClient(url)
    except ValueError as e:
        raise SystemExit(f"juggler: -H {url}: {e}") from None


def client(docker_flag: str | None) -> DockerClient:
    """The containers service for the container verbs (ps, stop, rm, ...).
    Raises SystemExit (saying so) when the last up's cluster serves none."""
    url, source = addr.docker_host_source(docker_flag)
    if source == "none":
        raise SystemExit(f"juggler: {addr.not_served('-H or $JUGGLER_DOCKER')}")
    try:
        return DockerClient(url)
    except ValueError as e:
        raise SystemExit(f"juggler: -H {url}: {e}") from None


def unreachable_hint(e: DockerUnreachable) -> str:
    return f"{e} (the apps service serves it: start a cluster with `juggler up`, or name " \
           "it with -H or $JUGGLER_DOCKER)"


def add_host_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("-H", "--host", dest="docker_host", default=None, metavar="URL",
                   help="the containers service's Docker API (unix:///path or tcp://host:port; "
                        "default: $JUGGLER_DOCKER, what `juggler up` wrote, then "
                        f"{addr.DEFAULT_DOCKER})")


# -- Docker's run/create flags ---------------------------------------------------------

_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp])?i?b?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_bytes(text: str) -> int:
    """Docker's memory sizes (go-units RAMInBytes): 64m, 1g, 512k, 1.5G, 1024b,
    a bare number is bytes; units are binary. Raises argparse.ArgumentTypeError."""
    m = _SIZE.match(text.strip())
    if not m:
        suffix = re.sub(r"^[\d.]+ ?", "", text.strip())
        raise argparse.ArgumentTypeError(f"invalid suffix: '{suffix}'" if suffix and
                                         text.strip()[:1].isdigit()
                                         else f"invalid size: '{text}'")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def memory_swap(text: str) -> int:
    """--memory-swap: a size, or -1 for unlimited swap."""
    return -1 if text.strip() == "-1" else ram_bytes(text)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (e.g. 0.5, 2)") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a number greater than 0")
    return value


def pair(text: str) -> tuple[str, str | None]:
    """NAME=VALUE, or NAME (its value taken from this environment, as docker's
    -e NAME; None when unset there)."""
    name, sep, value = text.partition("=")
    if not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value if sep else None


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The flags `run` and `create` share (Docker's spellings)."""
    add_host_flag(p)
    p.add_argument("--name", default="",
                   help="the container's name (as a task without the containers service: "
                        "its task id)")
    p.add_argument("-e", "--env", type=pair, action="append", default=[], metavar="NAME=VALUE",
                   help="environment variable (repeatable); NAME alone: this shell's value")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE",
                   help="read environment variables from a file (NAME=VALUE lines)")
    p.add_argument("-w", "--workdir", default="", help="working directory in the container")
    p.add_argument("-u", "--user", default="", help="user (name or uid[:gid]) to run as")
    p.add_argument("--hostname", default="", help="hostname in the container")
    p.add_argument("--network", default=None, metavar="NETWORK",
                   help="none: loopback only (default without -p/-P); bridge: the agent's "
                        "bridge, with an address (default with -p/-P); host: the host's "
                        "network; or a CNI network the agents define")
    p.add_argument("-p", "--publish", action="append", default=[],
                   metavar="[0.0.0.0:][HOST:]CONTAINER[/tcp|udp]",
                   help="publish a container port on the agent (repeatable); no HOST: any "
                        "free port of the agent's ports resource")
    p.add_argument("-P", "--publish-all", action="store_true",
                   help="publish every exposed port (the image's EXPOSE, --expose) on any "
                        "free host port")
    p.add_argument("--expose", action="append", default=[], metavar="PORT[-PORT][/PROTO]",
                   help="expose a port (published with -P)")
    p.add_argument("-l", "--label", type=pair, action="append", default=[],
                   metavar="NAME=VALUE", help="label (repeatable), e.g. juggler.log_max_bytes="
                                              "65536")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a terminal")
    p.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    p.add_argument("--cpus", type=_positive_float, default=None,
                   help="cpus, a hard cap (default 0.1; with --cpu-shares alone: shares/1024)")
    p.add_argument("--cpu-shares", type=int, default=None, metavar="N",
                   help="relative cpu weight (cgroup cpu.shares; 1024 = one cpu)")
    p.add_argument("-m", "--memory", type=ram_bytes, default=None, metavar="SIZE",
                   help="memory limit, e.g. 64m, 1g (a bare number is bytes; default 128m)")
    p.add_argument("--memory-swap", type=memory_swap, default=None, metavar="SIZE",
                   help="memory + swap limit; -1: unlimited swap")
    p.add_argument("--pids-limit", type=int, default=None, metavar="N",
                   help="most processes at once (-1: unlimited)")
    p.add_argument("--restart", default="", metavar="POLICY",
                   help="no, on-failure[:N], always, unless-stopped (needs the containers "
                        "service)")
    p.add_argument("--rm", action="store_true",
                   help="remove the container when it exits (needs the containers service)")
    p.add_argument("--stop-signal", default="", metavar="SIGNAL",
                   help="signal that stops it (default: the image's, else SIGTERM)")
    p.add_argument("--stop-timeout", type=int, default=None, metavar="SECONDS",
                   help="seconds between the stop signal and SIGKILL (default 10)")
    process_flags.add_flags(p)
    p.add_argument("--image", default="",
                   help="image to run (e.g. busybox, host:5000/app:1); or give IMAGE as the "
                        "first argument, as docker")
    p.add_argument("--rootfs", default="",
                   help="directory on the agent to use as the root filesystem")
    p.add_argument("command", nargs=argparse.REMAINDER,
                   help="IMAGE [COMMAND [ARG...]], or -- COMMAND [ARG...] (no image: the "
                        "agent's filesystem)")


def split_command(args: argparse.Namespace) -> tuple[str, list[str]]:
    """(image, command) from `IMAGE [CMD...]`, `-- CMD...` and --image/--rootfs:
    after --image or --rootfs, or after a leading `--`, every argument is the
    command; otherwise the first one is the image, as docker's."""
    argv = list(args.command)
    if argv and argv[0] == "--":
        return args.image, argv[1:]
    if args.image or args.rootfs or not argv:
        return args.image, argv
    return argv[0], argv[1:]


def parse_env_file(path: str) -> list[tuple[str, str]]:
    """Docker's --env-file: NAME=VALUE lines (the value verbatim), NAME alone
    takes this environment's value (skipped when unset), blank lines and lines
    starting with # are skipped. Raises ValueError with docker's messages."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"env file {path} contains invalid utf8 bytes") from None
    out = []
    for line in lines:
        text = line.lstrip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition("=")
        if not name:
            raise ValueError(f"no variable name on line '{line}'")
        if any(ch.isspace() for ch in name):
            raise ValueError(f"variable '{name}' contains whitespaces")
        if sep:
            out.append((name, value))
        elif name in os.environ:
            out.append((name, os.environ[name]))
    return out


def environment(args: argparse.Namespace) -> dict[str, str]:
    """--env-file files, then -e (later ones win). Raises ValueError."""
    env: dict[str, str] = {}
    for path in args.env_file:
        env.update(parse_env_file(path))
    env.update(pairs_values(args.env))
    return env


def pairs_values(pairs: list[tuple[str, str | None]]) -> dict[str, str]:
    """-e style (NAME, VALUE) pairs as a dict; NAME alone (VALUE None) takes
    this environment's value and is skipped when unset, as `docker run -e NAME`."""
    out: dict[str, str] = {}
    for name, value in pairs:
        if value is None:
            if name not in os.environ:
                continue
            value = os.environ[name]
        out[name] = value
    return out


def create_body(args: argparse.Namespace, image: str, command: list[str],
                *, attach: bool = False, stop_timeout: float | None = None) -> dict[str, Any]:
    """Docker's POST /containers/create body. A --rootfs directory travels as
    an absolute path in Image (as in juggler's Marathon definitions); no image
    at all is Image "" (the agent's own filesystem). Raises ValueError."""
    host: dict[str, Any] = {}
    if args.restart:
        name, _, count = args.restart.partition(":")
        host["RestartPolicy"] = {"Name": name,
                                 "MaximumRetryCount": int(count) if count.isdigit() else 0}
        if count and not count.isdigit():
            raise ValueError(f"invalid restart policy format: maximum retry count must be "
                             f"an integer ({args.restart})")
    if args.rm:
        host["AutoRemove"] = True
    if args.cpus is not None:
        host["NanoCpus"] = round(args.cpus * 1e9)
    if args.cpu_shares is not None:
        host["CpuShares"] = args.cpu_shares
    memory = args.memory if args.memory is not None else _mem_bytes(args)
    if memory is not None:
        host["Memory"] = memory
    if args.memory_swap is not None:
        host["MemorySwap"] = args.memory_swap
    if args.pids_limit is not None:
        host["PidsLimit"] = args.pids_limit
    if args.network:
        host["NetworkMode"] = args.network
    exposed, bindings = publishing(args)
    if bindings:
        host["PortBindings"] = bindings
    if args.publish_all:
        host["PublishAllPorts"] = True
    host.update(process_flags.host_config(args))
    body: dict[str, Any] = {
        "Image": os.path.abspath(args.rootfs) if args.rootfs else image,
        "Cmd": command or None,
        "Env": [f"{k}={v}" for k, v in environment(args).items()],
        "Labels": {k: v or "" for k, v in args.label},
        "Tty": args.tty, "OpenStdin": args.interactive, "StdinOnce": args.interactive,
        "AttachStdin": attach and args.interactive, "AttachStdout": attach,
        "AttachStderr": attach,
        "HostConfig": host,
    }
    if exposed:
        body["ExposedPorts"] = exposed
    for key, value in (("WorkingDir", args.workdir), ("User", args.user),
                       ("Hostname", args.hostname), ("StopSignal", args.stop_signal)):
        if value:
            body[key] = value
    timeout = args.stop_timeout if args.stop_timeout is not None else stop_timeout
    if timeout is not None:
        body["StopTimeout"] = int(timeout) if float(timeout).is_integer() else timeout
    return body


def publishing(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Config.ExposedPorts, HostConfig.PortBindings) for -p and --expose, as
    the docker CLI sends them. Raises ValueError (PortSpecError) with the
    docker CLI's words for a bad spec."""
    bindings = [b for text in args.publish for b in published_ports.parse_publish(text)]
    exposed = [e for text in args.expose for e in published_ports.parse_expose(text)]
    return published_ports.to_docker(bindings, exposed)


def _mem_bytes(args: argparse.Namespace) -> int | None:
    """juggler run's --mem (MiB), when given."""
    mib = getattr(args, "mem", None)
    return None if mib is None else int(mib * 2**20)


# -- errors as docker prints them ------------------------------------------------------

def daemon_failed(e: DockerError | DockerUnreachable, prefix: str = "") -> int:
    """Print a failure of the service as docker does; the exit code (1)."""
    text = unreachable_hint(e) if isinstance(e, DockerUnreachable) else str(e)
    print(f"{prefix}{text}", file=sys.stderr)
    return 1


def run_exit_code(message: str) -> int:
    """docker run's exit code for a container that could not start, from the
    daemon's message (docker/cli toStatusError): 127 for a command that is not
    found, 126 for one that cannot be run, else 125."""
    low = message.lower()
    if "executable file not found" in low or "no such file or directory" in low or \
            ("not found" in low and "exec" in low):
        return 127
    if "permission denied" in low or "is a directory" in low:
        return 126
    return EXIT_JUGGLER


# -- where a container's run is --------------------------------------------------------

class NotFound(LookupError):
    """No container or task by that reference, or it cannot be reached;
    str() says which. `daemon`: the containers service refused (docker's
    exit 1) rather than juggler failing."""

    def __init__(self, message: str, daemon: bool = False) -> None:
        super().__init__(message)
        self.daemon = daemon


@dataclass
class Target:
    """A run to stream from: a container's current (or last) run, or a task."""

    ref: str
    task_id: str
    framework_id: str
    agent_address: str
    tty: bool
    open_stdin: bool
    running: bool
    state: str
    container: dict[str, Any] | None = None
    view: operator_pb2.TaskView | None = None
    master: str = ""
    docker: DockerClient | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        if self.container is not None:
            return self.container.get("Name", "").lstrip("/") or self.ref
        return self.task_id

    def generation(self) -> int:
        """A container's run number (its task id is <id12>.<n>); 0 for a task."""
        if self.container is None:
            return 0
        n = self.task_id.rpartition(".")[2]
        return int(n) if n.isdigit() else 0

    def run_id(self, generation: int) -> str:
        return f"{self.task_id.rpartition('.')[0]}.{generation}"


def target_of(ref: str, info: dict[str, Any], docker: DockerClient | None = None) -> Target:
    """The run an inspect JSON names. Raises NotFound when the service does not
    say (a Docker engine that is not juggler's)."""
    j = info.get("Juggler") or {}
    node = info.get("Node") or {}
    config = info.get("Config") or {}
    state = info.get("State") or {}
    if "Juggler" not in info:
        raise NotFound(f"the containers service does not say where {ref} runs (no Juggler "
                       "fields in its inspect: is it juggler's apps service?)", daemon=True)
    return Target(ref=ref, task_id=j.get("TaskId", ""), framework_id=j.get("FrameworkId", ""),
                  agent_address=node.get("Addr", ""), tty=bool(config.get("Tty")),
                  open_stdin=bool(config.get("OpenStdin")),
                  running=bool(state.get("Running")), state=state.get("Status", ""),
                  container=info, docker=docker)


def _task_target(ref: str, view: operator_pb2.TaskView, master: str) -> Target:
    from juggler.common import task_states
    from juggler.common.task_defaults import INTERACTIVE_LABEL, TRUE_WORDS

    running = tasks.not_running(view) is None
    return Target(ref=ref, task_id=view.info.task_id, framework_id=view.framework_id,
                  agent_address=view.agent_address, tty=view.info.container.tty,
                  open_stdin=view.info.labels.get(INTERACTIVE_LABEL, "").lower() in TRUE_WORDS,
                  running=running, state=task_states.name(view.state), view=view,
                  master=master)


async def locate(ref: str, docker_flag: str | None, master_flag: str | None) -> Target:
    """The container called `ref` (name, id or unique id prefix), else the task
    with that id. Raises NotFound."""
    docker = service(docker_flag, master_flag)
    refused = ""
    if docker is not None:
        try:
            info = await off_loop(docker.inspect, ref)
        except DockerUnreachable:
            pass
        except DockerError as e:
            if e.status != 404:
                raise NotFound(str(e), daemon=True) from None
            refused = e.message
        else:
            return target_of(ref, info, docker)
    master = addr.resolve(master_flag)
    try:
        view = await tasks.locate(master, ref)
    except tasks.TaskNotFound as e:
        raise NotFound(f"{refused}, and {e}" if refused else str(e),
                       daemon=bool(refused)) from None
    except grpc.aio.AioRpcError as e:
        if refused:
            raise NotFound(f"Error response from daemon: {refused}", daemon=True) from None
        raise NotFound(tasks.unreachable("master", master, e)) from None
    return _task_target(ref, view, master)


async def run_of_removed(master: str, container_id: str) -> Target | None:
    """The last run of a container that is gone already (`--rm`), from the
    master's tasks (<id12>.<n>): where its output still is."""
    from juggler.cli import operator

    try:
        got = await asyncio.to_thread(operator.call, master, "GetTasks",
                                      operator_pb2.GetTasksRequest(include_completed=True))
    except (operator.NoMaster, grpc.RpcError):
        return None
    prefix = container_id[:12] + "."
    runs = [v for v in [*got.tasks, *got.completed_tasks]
            if v.info.task_id.startswith(prefix) and v.info.task_id[len(prefix):].isdigit()]
    if not runs:
        return None
    view = max(runs, key=lambda v: int(v.info.task_id[len(prefix):]))
    return _task_target(container_id, view, master)


async def agent_failure(target: Target, e: grpc.aio.AioRpcError) -> str:
    """What to say when the run's agent refused or cannot be reached."""
    if target.view is not None:
        return await tasks.agent_error(target.master, target.view, e)
    if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return e.details() or e.code().name
    info = target.container or {}
    node = info.get("Node") or {}
    where = f"{node.get('Name') or node.get('ID', '?')} ({target.agent_address})"
    if (info.get("Juggler") or {}).get("Unreachable"):
        return (f"the agent {where} of container {target.name} is unreachable: try again "
                "once it is back (see `juggler agents`)")
    return (f"cannot reach the agent {where} of container {target.name}: "
            f"{tasks.why(target.agent_address, e)}")
