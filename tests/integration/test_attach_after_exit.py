"""A run that ended before its attached client came still gives that client
all of its output: `juggler run -- echo …` attaches once it hears TASK_RUNNING,
and on a busy machine the command is over by then (CI lost the output of
`juggler run --image … -- sh -c 'cat …'` that way: empty stdout, exit 0).

With a hold (label juggler.hold_output, which `juggler run` sets), the
executor keeps the output unread and the terminal update unsent until the
first back-pressured attach (or the hold's time): the client then gets every
byte and the exit code. A real executor, its attach socket spoken to as the
agent speaks to it (executor/attach.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from juggler.common import framing
from juggler.common.task_defaults import HOLD_OUTPUT_LABEL
from juggler.executor.attach import FINISH_SECONDS, SOCKET_NAME
from juggler.v1 import common_pb2 as pb
from juggler.v1 import executor_pb2 as epb
from tests.conftest import needs_root
from tests.executor_harness import executor, task_info, wait_until

DEADLINE = 30.0


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1].startswith("Z")  # a zombie is gone too
    except FileNotFoundError:
        return True


def test_a_run_that_ended_before_its_client_attached_gives_it_everything(
        tmp_path: Path) -> None:
    needs_root()
    task = task_info("echo one; echo two >&2; echo three; exit 3")
    task.labels[HOLD_OUTPUT_LABEL] = "20"

    async def scenario() -> tuple[bytes, bytes, int, pb.TaskStatus]:
        async with executor(tmp_path, task) as r:
            running = await r.agent.wait_state(pb.TASK_RUNNING)
            await wait_until(lambda: _gone(running.pid), "the command to end")
            # Without a client, the end is not said: give it longer than an
            # ended run ever takes to say it when nothing holds it (its
            # clients' FINISH_SECONDS and a cgroup look).
            with contextlib.suppress(AssertionError):  # timed out: nothing said
                await r.agent.wait_for(
                    lambda: [u for u in r.agent.updates if u.state != pb.TASK_RUNNING],
                    "no terminal update", timeout=FINISH_SECONDS + 2)
            assert not [u for u in r.agent.updates if u.state != pb.TASK_RUNNING]
            reader, writer = await asyncio.open_unix_connection(
                str(r.sandbox / SOCKET_NAME))
            writer.write(framing.encode(epb.AttachStart(logs=True, backpressure=True)))
            out, err, code = b"", b"", -1
            while (message := await asyncio.wait_for(
                    framing.read(reader, epb.ProcessOutput), DEADLINE)) is not None:
                kind = message.WhichOneof("output")
                if kind == "stdout":
                    out += message.stdout
                elif kind == "stderr":
                    err += message.stderr
                elif kind == "exit_code":
                    code = message.exit_code
                    break
            writer.close()
            done = await r.agent.wait_terminal()
        return out, err, code, done

    out, err, code, done = asyncio.run(scenario())
    assert (out, err, code) == (b"one\nthree\n", b"two\n", 3)
    assert done.state == pb.TASK_FAILED and done.exit_code == 3
    assert os.path.exists(tmp_path / "sandbox" / "stdout")
