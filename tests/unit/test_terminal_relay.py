"""cli/terminal.py `relay` and cli/attach.py `dropped_by_grpc`: what an
Exec/Attach stream's end means to `juggler run`, `juggler exec` and
`juggler attach`.

grpc aio (1.85 here) can replace an agent's OK with its own INTERNAL
"Internal error from Core" when a write of the client crosses the end of the
call (grpc/grpc#36066); it happened once in CI, in `juggler run --rm IMAGE
true`, and cannot be brought about at will. So the call here is a stand-in
that ends the way grpc aio does then: the seam is the call object, and the
test says so.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from juggler.cli import terminal
from juggler.cli.attach import GRPC_CORE_INTERNAL, dropped_by_grpc
from juggler.v1 import agent_pb2, executor_pb2


def _error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


def _call(outputs: list[executor_pb2.ProcessOutput], error: grpc.aio.AioRpcError | None) -> Any:
    """A stand-in for stub.Attach: reads what the client sends, answers
    `outputs`, then ends with `error` (None: OK)."""

    def open_call(requests: AsyncIterator[Any]) -> AsyncIterator[executor_pb2.ProcessOutput]:
        async def answers() -> AsyncIterator[executor_pb2.ProcessOutput]:
            first = await anext(aiter(requests))
            assert first.start.task_id == "t"
            for message in outputs:
                yield message
            if error is not None:
                raise error
        return answers()
    return open_call


def _relay(open_call: Any, capsys: pytest.CaptureFixture[str]) -> int | None:
    first = agent_pb2.AttachRequest(start=agent_pb2.AttachRequest.Start(task_id="t"))
    return asyncio.run(terminal.relay(open_call, first,
                                      lambda m: agent_pb2.AttachRequest(input=m),
                                      tty=False, interactive=False, detach=False))


def test_an_exit_code_received_stands_whatever_status_follows(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = [executor_pb2.ProcessOutput(stdout=b"pulled\n"), executor_pb2.ProcessOutput(exit_code=3)]
    assert _relay(_call(out, _error(grpc.StatusCode.INTERNAL, GRPC_CORE_INTERNAL)), capsys) == 3
    assert capsys.readouterr().out == "pulled\n"
    assert _relay(_call(out, None), capsys) == 3


def test_an_error_before_the_exit_code_is_the_callers() -> None:
    out = [executor_pb2.ProcessOutput(stdout=b"half")]
    for code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.PERMISSION_DENIED):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            asyncio.run(terminal.relay(
                _call(out, _error(code, "no")),
                agent_pb2.AttachRequest(start=agent_pb2.AttachRequest.Start(task_id="t")),
                lambda m: agent_pb2.AttachRequest(input=m),
                tty=False, interactive=False, detach=False))
        assert raised.value.code() == code


def test_only_grpc_s_own_internal_counts_as_a_dropped_stream() -> None:
    assert dropped_by_grpc(_error(grpc.StatusCode.INTERNAL, GRPC_CORE_INTERNAL))
    assert not dropped_by_grpc(_error(grpc.StatusCode.INTERNAL,
                                      "cannot list the task's processes: EPERM"))
    assert not dropped_by_grpc(_error(grpc.StatusCode.UNKNOWN, GRPC_CORE_INTERNAL))
