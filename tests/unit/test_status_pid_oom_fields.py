"""TaskStatus.pid (on TASK_RUNNING) and TaskStatus.oom_killed (on the terminal
update) from the executor, kept by the agent as it checkpoints and forwards
them. The executor's side for real is tests/integration/test_status_pid_oom.py."""

from __future__ import annotations

from pathlib import Path

from juggler.agent import checkpoint
from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.executor.executor import Executor
from juggler.v1 import common_pb2, executor_pb2
from tests.unit.test_agent_state import KEY, SANDBOX, Harness, ack, registered, run, sent, task

S = common_pb2.TaskState


def from_executor(state: int, uuid: bytes, **fields: object) -> ev.ExecutorUpdate:
    return ev.ExecutorUpdate(KEY, common_pb2.TaskStatus(
        task_id="t1", framework_id="fw", state=state, uuid=uuid,
        source=common_pb2.SOURCE_EXECUTOR, **fields))  # type: ignore[arg-type]


def test_the_agent_forwards_and_checkpoints_pid_and_oom_killed() -> None:
    h = Harness()
    h(ev.Started(""), registered(), run(task()), ev.SandboxMade(KEY, SANDBOX),
      ev.ExecutorHello(KEY, container_pid=4242))
    out = h(from_executor(S.TASK_RUNNING, b"r1", pid=4242))
    [running] = sent(out)
    assert running.HasField("pid") and running.pid == 4242
    [saved] = [x.status for x in out if isinstance(x, c.CheckpointUpdate)]
    assert saved.pid == 4242
    out = h(from_executor(S.TASK_FAILED, b"f1", oom_killed=True, exit_code=137))
    [saved] = [x.status for x in out if isinstance(x, c.CheckpointUpdate)]
    assert saved.HasField("oom_killed") and saved.oom_killed
    # Re-sent as received (a new master stream), then the next one once acknowledged.
    [again] = sent(h(registered()))
    assert again.uuid == b"r1" and again.pid == 4242
    [failed] = sent(h(ack(b"r1")))
    assert failed.uuid == b"f1" and failed.oom_killed and failed.exit_code == 137


def test_a_checkpointed_update_keeps_them_across_an_agent_restart(tmp_path: Path) -> None:
    status = common_pb2.TaskStatus(task_id="t1", framework_id="fw", state=S.TASK_FAILED,
                                   uuid=b"f1", pid=77, oom_killed=True)
    sandbox = tmp_path / "frameworks" / "fw" / "tasks" / "t1"
    sandbox.mkdir(parents=True)
    checkpoint.write_spec(sandbox, executor_pb2.ExecutorSpec(task=task()))
    checkpoint.append_update(sandbox, status)
    [rec] = checkpoint.recover(tmp_path)
    assert rec.updates == [status] and rec.updates[0].oom_killed


def test_the_executor_puts_pid_on_running_and_oom_killed_on_the_end(tmp_path: Path) -> None:
    spec = executor_pb2.ExecutorSpec(framework=common_pb2.FrameworkInfo(id="fw"), task=task(),
                                     agent_socket=str(tmp_path / "agent.sock"))
    executor = Executor(tmp_path, spec)
    executor.container_pid = 4242
    sent_updates: list[common_pb2.TaskStatus] = []
    executor.link.send_update = sent_updates.append  # type: ignore[method-assign]
    executor._send(S.TASK_RUNNING, message="Command started")
    executor._send(S.TASK_KILLING)
    executor._send(S.TASK_FAILED, exit_code=137, oom_killed=True)
    running, killing, failed = sent_updates
    assert running.HasField("pid") and running.pid == 4242
    assert not killing.HasField("pid") and not killing.HasField("oom_killed")
    assert failed.HasField("oom_killed") and failed.oom_killed and not failed.HasField("pid")
