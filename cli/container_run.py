"""`juggler run` and `juggler start -a` with the containers service: a container
is created (run), started, and this terminal is attached to it until it
ends, as `docker run` does.

    run -d       create, start, print the id (64 hex), return
    run          create, start, then attached: its output (and with -i this
                 terminal's input; with -t a terminal, in raw mode: Ctrl-P
                 Ctrl-Q detaches and leaves it running), then its exit code
    start -a     the same for a container that exists

The attached streams come from the container's agent: Agent.Attach with
back-pressure (cli/attach.py), as an attached `docker run` gets: every byte,
the container waiting in its writes while this terminal or pipe is behind.
Before the start, as the docker CLI attaches before it starts, `run` and
`start -a` say they wait to attach (POST /containers/{id}/attach without
streams, held open until the run is launched: docker_client.attach_begin),
so that this run, and only this one, holds its output until the attach
lands (at most 10 s: apps/containers_state.attach_waits) and nothing it
writes first is rotated away; a later `start` or a restart does not. A stream
that ends without the exit code (its executor dropped this client) is no
detach: the rest comes from the logs, then the exit code. When the agent
cannot be reached, or the run no longer runs, Agent.Logs follows from where
the output stopped; output rotated away before it was written here is said
and the exit code is 125. The exit code comes from the service (POST
/containers/{id}/wait, asked once the start returned: `not-running`, or
`removed` with --rm). Without a
terminal, Ctrl-C and SIGTERM are passed on to the container (docker's
--sig-proxy); a third Ctrl-C leaves it running and returns.

Exit codes, as docker's: the container's own; 125 when the container could
not be created or started (126/127 when its command cannot be run / is not
found, from the service's message or the run's exit code).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import grpc

from juggler.cli import address as addr
from juggler.cli import containers, image_pull
from juggler.cli.attach import Written
from juggler.cli.containers import EXIT_JUGGLER, Target, off_loop
from juggler.cli.docker_client import DockerClient, DockerError, DockerUnreachable
from juggler.common.leader import backoff

PROXIED = (signal.SIGINT, signal.SIGTERM)
LEAVE_AFTER = 3   # Ctrl-C presses: the third leaves the container running
STREAM_GRACE_SECONDS = 5.0   # after the exit, for the last output to arrive


async def run(args: argparse.Namespace, docker: DockerClient, body: dict[str, Any]) -> int:
    """`juggler run` against the containers service; the exit code."""
    try:
        created = await off_loop(image_pull.create, docker, body, args.name)
    except image_pull.PullFailed as e:   # the image was missing; nothing was created
        print(f"juggler: {e}", file=sys.stderr)
        return EXIT_JUGGLER
    except (DockerError, DockerUnreachable) as e:
        containers.daemon_failed(e, "juggler: ")
        return EXIT_JUGGLER
    for warning in created.get("Warnings") or []:
        print(f"WARNING: {warning}", file=sys.stderr)
    cid = created["Id"]
    if args.detach:
        try:
            await off_loop(docker.start, cid)
        except (DockerError, DockerUnreachable) as e:
            containers.daemon_failed(e, "juggler: ")
            return await _start_failure_code(docker, cid, e)
        print(cid)
        return 0
    return await attached(docker, cid, interactive=args.interactive, tty=args.tty,
                          auto_remove=args.rm, quiet=args.quiet)


async def start_attached(docker: DockerClient, ref: str, interactive: bool) -> int:
    """`juggler start -a [-i] REF`; the container's exit code."""
    try:
        info = await off_loop(docker.inspect, ref)
    except (DockerError, DockerUnreachable) as e:
        return containers.daemon_failed(e)
    config = info.get("Config") or {}
    auto_remove = bool((info.get("HostConfig") or {}).get("AutoRemove"))
    return await attached(docker, info["Id"], interactive=interactive and bool(
        config.get("OpenStdin")), tty=bool(config.get("Tty")), auto_remove=auto_remove,
        quiet=True, failed_code=1)


async def attached(docker: DockerClient, cid: str, *, interactive: bool, tty: bool,
                   auto_remove: bool, quiet: bool, failed_code: int = EXIT_JUGGLER) -> int:
    """Start `cid` and stay attached until it ends (its exit code) or the user
    detaches (0)."""
    try:
        # The attach and the waiter first, as docker run does: this run then
        # holds its output for this client (module docstring), and it may end
        # (and with --rm be removed) before the start's answer arrives.
        waiting = await off_loop(docker.attach_begin, cid)
    except DockerError as e:
        if e.status != 503:
            containers.daemon_failed(e, "juggler: " if failed_code == EXIT_JUGGLER else "")
            return failed_code
        # A standby apps service (`juggler up --masters N`) streams no attach:
        # go on as before attaches were registered (the run is not held for
        # this client; its output comes from the logs).
        def waiting() -> None:
            return None
    except DockerUnreachable as e:
        containers.daemon_failed(e, "juggler: " if failed_code == EXIT_JUGGLER else "")
        return failed_code
    try:
        return await _attached(docker, cid, interactive=interactive, tty=tty,
                               auto_remove=auto_remove, quiet=quiet, failed_code=failed_code)
    finally:
        waiting()


async def _attached(docker: DockerClient, cid: str, *, interactive: bool, tty: bool,
                    auto_remove: bool, quiet: bool, failed_code: int) -> int:
    try:
        finish = await off_loop(docker.wait_begin, cid, "removed" if auto_remove else "next-exit")
        await off_loop(docker.start, cid)
    except (DockerError, DockerUnreachable) as e:
        containers.daemon_failed(e, "juggler: " if failed_code == EXIT_JUGGLER else "")
        if failed_code != EXIT_JUGGLER:
            return failed_code
        return await _start_failure_code(docker, cid, e)
    target = await _run_target(docker, cid)
    exit_code = off_loop(_wait, finish)
    session = _Session(docker, cid, quiet)
    with session.proxying(not tty):
        code = None
        if target is not None:
            streaming = asyncio.ensure_future(
                session.stream(target, interactive=interactive, tty=tty))
            await asyncio.wait({streaming, exit_code}, return_when=asyncio.FIRST_COMPLETED)
            if not streaming.done():
                # It ended (or its agent is gone): what it wrote last is on its way;
                # attached, all of it (the executor sent it before the exit).
                await asyncio.wait({streaming}, timeout=None if session.attached
                                   else STREAM_GRACE_SECONDS)
            if streaming.done():
                code = streaming.result()
            else:
                streaming.cancel()
        if session.detached or session.left:
            exit_code.cancel()
            if session.detached:
                name = target.name if target else cid[:12]
                print(f"\r\njuggler: detached; the container keeps running (juggler attach "
                      f"{name})", file=sys.stderr)
            return 0
        try:
            waited = await exit_code
        except (DockerError, DockerUnreachable) as e:
            if code is not None:
                return code
            containers.daemon_failed(e)
            return EXIT_JUGGLER
    if session.output_lost:
        return EXIT_JUGGLER
    return waited if waited is not None else (code if code is not None else EXIT_JUGGLER)


def _wait(finish: Callable[[], dict[str, Any]]) -> int | None:
    result = finish()
    error = (result.get("Error") or {}).get("Message") if isinstance(result, dict) else None
    if error:
        print(f"juggler: {error}", file=sys.stderr)
    code = result.get("StatusCode") if isinstance(result, dict) else None
    return int(code) if code is not None else None


async def _start_failure_code(docker: DockerClient, cid: str,
                              e: DockerError | DockerUnreachable) -> int:
    """docker run's exit code for a start that failed: the run's own 126/127
    when the service recorded one, else from the message."""
    if isinstance(e, DockerError):
        with contextlib.suppress(DockerError, DockerUnreachable):
            info = await off_loop(docker.inspect, cid)
            code = (info.get("State") or {}).get("ExitCode")
            if code in (126, 127):
                return int(code)
        return containers.run_exit_code(e.message)
    return EXIT_JUGGLER


async def _run_target(docker: DockerClient, cid: str) -> Target | None:
    """Where the run that just started is: the inspect JSON, or — when the
    container ended and was removed already (--rm) — the master's tasks."""
    try:
        info = await off_loop(docker.inspect, cid)
    except DockerError as e:
        if e.status != 404:
            print(f"juggler: {e}", file=sys.stderr)
            return None
    except DockerUnreachable as e:
        print(f"juggler: {e}", file=sys.stderr)
        return None
    else:
        try:
            target = containers.target_of(cid, info, docker)
        except containers.NotFound as e:
            print(f"juggler: {e}", file=sys.stderr)
            return None
        if target.task_id and target.agent_address:
            return target
    return await containers.run_of_removed(addr.resolve(None), cid)


class _Session:
    """One attached session: the streams, signals passed on, detaching."""

    def __init__(self, docker: DockerClient, cid: str, quiet: bool) -> None:
        self.docker = docker
        self.cid = cid
        self.quiet = quiet
        self.detached = False
        self.left = False
        self.interrupts = 0
        self.done = asyncio.Event()
        self.attached = False   # streaming through Agent.Attach (not following logs)
        self.output_lost = ""   # why some of its output never reached here

    @contextlib.contextmanager
    def proxying(self, enabled: bool):  # type: ignore[no-untyped-def]
        loop = asyncio.get_running_loop()
        if enabled:
            for sig in PROXIED:
                loop.add_signal_handler(sig, self._signal, sig)
        try:
            yield
        finally:
            if enabled:
                for sig in PROXIED:
                    loop.remove_signal_handler(sig)

    def _signal(self, sig: signal.Signals) -> None:
        if sig == signal.SIGINT:
            self.interrupts += 1
            if self.interrupts >= LEAVE_AFTER:
                print(f"\njuggler: left; the container keeps running (juggler stop "
                      f"{self.cid[:12]})", file=sys.stderr, flush=True)
                self.left = True
                self.done.set()
                return
        name = signal.Signals(sig).name.removeprefix("SIG")
        asyncio.get_running_loop().create_task(self._kill(name))

    async def _kill(self, name: str) -> None:
        with contextlib.suppress(DockerError, DockerUnreachable):
            await off_loop(self.docker.kill, self.cid, name)

    async def stream(self, target: Target, *, interactive: bool, tty: bool) -> int | None:
        """Relay the run's streams until it ends (its exit code if the agent
        told it), the user detaches, or leaves."""
        work = asyncio.ensure_future(self._relay(target, interactive, tty))
        left = asyncio.ensure_future(self.done.wait())
        try:
            await asyncio.wait({work, left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            left.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
            return None
        return work.result()

    async def _relay(self, target: Target, interactive: bool, tty: bool) -> int | None:
        from juggler.cli.attach import OutputLost, ReaderGone, Written, attach, dropped_by_grpc
        from juggler.cli.terminal import StreamEnded

        written = Written()
        try:
            self.attached = True
            try:
                code = await attach(target.agent_address, target.task_id,
                                    target.framework_id, tty=tty, stdin=interactive,
                                    logs=True, detach_keys=True, written=written)
            except grpc.aio.AioRpcError as e:
                if e.code() not in (grpc.StatusCode.FAILED_PRECONDITION,  # it ended already
                                    grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE) \
                        and not dropped_by_grpc(e):
                    self._say(f"cannot attach to the container on {target.agent_address}: "
                              f"{e.details()}")
            except StreamEnded:
                pass  # dropped, not detached: the rest from its logs, then its exit code
            else:
                if code is None:
                    self.detached = True
                return code
            finally:
                self.attached = False
            await self._follow(target, written)
        except OutputLost as e:
            self.output_lost = str(e)
            self._say(f"the container's output is incomplete: {e}")
        except ReaderGone:
            self.left = True   # `juggler run … | head`: nothing reads it any more
        return None

    async def _follow(self, target: Target, written: Written) -> None:
        """The run's output, from `written` on, until it ends; across a restart
        of its agent (the run goes on), writing nothing twice. Raises
        OutputLost."""
        from juggler.cli.attach import OutputLost
        from juggler.cli.logs import copy_output

        attempt = 0
        while True:
            try:
                await copy_output(target.agent_address, target.task_id, target.framework_id,
                                  follow=True, written=written)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.DATA_LOSS:
                    raise OutputLost(e.details()) from None
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        self._say(f"cannot read the container's output from "
                                  f"{target.agent_address}: {e.details()}")
                    return
                attempt += 1
                if attempt == 1 and not self.quiet:
                    self._say("the container's agent cannot be reached; its output follows "
                              "when it is back")
                await asyncio.sleep(backoff(attempt, base=0.5, cap=5.0))
                with contextlib.suppress(DockerError, DockerUnreachable, containers.NotFound):
                    info = await off_loop(self.docker.inspect, self.cid)
                    target = containers.target_of(self.cid, info, self.docker)

    def _say(self, text: str) -> None:
        print(f"juggler: {text}", file=sys.stderr, flush=True)
