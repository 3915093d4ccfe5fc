"""The agent's pure core (AgentState) with a fake clock: events in, the exact
commands out, as dask tests its WorkerState. No processes, no sockets."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent.state import AgentState
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.v1 import agent_pb2, common_pb2, executor_pb2

S = common_pb2.TaskState
E = agent_pb2.ExecutorState
FW = common_pb2.FrameworkInfo(id="fw", name="fw")
KEY = ("fw", "t1")
SANDBOX = Path("/work/frameworks/fw/tasks/t1")


def task(task_id: str = "t1", image: str = "") -> common_pb2.TaskInfo:
    info = common_pb2.TaskInfo(task_id=task_id, command=common_pb2.CommandInfo(argv=["sleep"]),
                               resources=Resources({"cpus": 1, "mem": 64}).to_proto("*"))
    if image:
        info.container.image = image
        del info.command.argv[:]
    return info


def master(**kind: object) -> ev.FromMaster:
    return ev.FromMaster(agent_pb2.MasterMessage(**kind))  # type: ignore[arg-type]


def registered(agent_id: str = "a1") -> ev.FromMaster:
    return master(registered=agent_pb2.MasterMessage.Registered(agent_id=agent_id))


def run(info: common_pb2.TaskInfo) -> ev.FromMaster:
    return master(run_task=agent_pb2.MasterMessage.RunTask(framework=FW, task=info))


def kill(task_id: str = "t1", grace: float | None = None) -> ev.FromMaster:
    k = agent_pb2.MasterMessage.KillTask(framework_id="fw", task_id=task_id)
    if grace is not None:
        k.kill_policy.grace_period_seconds = grace
    return master(kill_task=k)


def ack(uuid: bytes, task_id: str = "t1") -> ev.FromMaster:
    return master(acknowledgement=agent_pb2.MasterMessage.Acknowledgement(
        framework_id="fw", task_id=task_id, uuid=uuid))


def update(state: int, uuid: bytes, task_id: str = "t1") -> ev.ExecutorUpdate:
    return ev.ExecutorUpdate(("fw", task_id), common_pb2.TaskStatus(
        task_id=task_id, framework_id="fw", state=state, uuid=uuid,
        source=common_pb2.SOURCE_EXECUTOR))


def sent(commands: list) -> list[common_pb2.TaskStatus]:
    return [x.message.status_update.status for x in commands
            if isinstance(x, c.ToMaster) and x.message.HasField("status_update")]


def to_executor(commands: list, kind: str) -> list:
    return [x for x in commands if isinstance(x, c.ToExecutor) and x.message.HasField(kind)]


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        counter = itertools.count(1)
        self.core = AgentState(self.clock, hostname="h1", resources=Resources(
            {"cpus": 4, "mem": 4096}).to_proto(), attributes={"rack": "r1"},
            socket_path="/work/agent.sock", cgroup_root="juggler-test",
            first_retry=10.0, new_uuid=lambda: f"u{next(counter)}".encode())

    def __call__(self, *events: ev.Event) -> list:
        out = self.core.handle(*events)
        self.core.validate_state()
        return out

    def running(self, task_id: str = "t1") -> list:
        """t1 launched, its executor connected and RUNNING reported."""
        self(ev.Started(""), registered(), run(task(task_id)))
        key = ("fw", task_id)
        self(ev.SandboxMade(key, SANDBOX), ev.ExecutorHello(key, container_pid=4242))
        return self(update(S.TASK_RUNNING, b"r1", task_id))


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_a_task_gets_its_executor_spec_and_runs(h: Harness) -> None:
    h(ev.Started(""), registered("a1"))
    [start] = h(run(task()))
    assert isinstance(start, c.StartExecutor) and start.key == KEY
    assert start.spec.cgroup == "juggler-test/fw.t1" and start.spec.agent_id == "a1"
    assert start.spec.agent_socket == "/work/agent.sock" and start.spec.task.task_id == "t1"
    assert h.core.tasks[KEY].executor == E.EXECUTOR_LAUNCHING
    h(ev.SandboxMade(KEY, SANDBOX))
    assert h(ev.ExecutorHello(KEY, container_pid=4242)) == []
    assert h.core.tasks[KEY].executor == E.EXECUTOR_CONNECTED
    out = h(update(S.TASK_RUNNING, b"r1"))
    # Checkpointed, then the executor is told the agent holds it; the master gets it.
    kinds = [type(x) for x in out]
    assert kinds.index(c.CheckpointUpdate) < kinds.index(c.ToExecutor)
    assert [s.uuid for s in sent(out)] == [b"r1"] and sent(out)[0].agent_id == "a1"
    assert h.core.tasks[KEY].state == S.TASK_RUNNING and h.core.tasks[KEY].container_pid == 4242


def test_updates_wait_for_the_master_and_are_resent_until_acknowledged(h: Harness) -> None:
    h(ev.Started("a1"), run(task()), ev.SandboxMade(KEY, SANDBOX), ev.ExecutorHello(KEY, 1))
    assert sent(h(update(S.TASK_RUNNING, b"r1"))) == []  # no master yet
    assert [s.uuid for s in sent(h(registered("a1")))] == [b"r1"]
    h.clock.advance(9.9)
    assert sent(h(ev.Tick())) == []
    h.clock.advance(0.2)
    assert [s.uuid for s in sent(h(ev.Tick()))] == [b"r1"]  # re-sent after 10 s
    # The next update waits for the first's acknowledgement (order per task); as
    # it tells of the task's end, the first goes again at once with the latest
    # state, so the master knows the task ended while its framework is away.
    out = h(update(S.TASK_FINISHED, b"f1"))
    assert [s.uuid for s in sent(out)] == [b"r1"]
    [again] = [x.message.status_update for x in out if isinstance(x, c.ToMaster)]
    assert again.latest_state == S.TASK_FINISHED
    assert sent(h(update(S.TASK_FINISHED, b"f1"))) == []  # a duplicate: nothing
    out = h(ack(b"r1"))
    assert c.CheckpointAck(SANDBOX, b"r1") in out
    assert [s.uuid for s in sent(out)] == [b"f1"]
    # The last one acknowledged: done for good, and the executor may go.
    out = h(ack(b"f1"))
    assert c.MarkDone(SANDBOX) in out and to_executor(out, "shutdown")
    assert h.core.registration().reregister.running == []
    # Once it has gone, the agent forgets the task (its sandbox stays, for logs).
    assert h(ev.ExecutorExited(KEY, code=0)) == [c.Forget(KEY)]
    assert KEY not in h.core.tasks and h.core.updates.pending(*KEY) == 0


def test_a_kill_waits_for_the_executor_to_say_hello(h: Harness) -> None:
    h(ev.Started(""), registered(), run(task()), ev.SandboxMade(KEY, SANDBOX))
    assert h(kill(grace=7)) == []  # not connected yet: held
    assert h.core.executor_views()[0].kill_requested
    [k] = to_executor(h(ev.ExecutorHello(KEY, 1)), "kill")
    assert k.message.kill.kill_policy.grace_period_seconds == 7
    # And again on every new connection of that executor, until its task ends.
    h(ev.ExecutorDisconnected(KEY))
    assert to_executor(h(ev.ExecutorHello(KEY, 1)), "kill")


def test_a_kill_for_a_task_the_agent_does_not_have_reports_it_lost(h: Harness) -> None:
    h(ev.Started(""), registered())
    [status] = sent(h(kill("nope")))
    assert (status.task_id, status.state, status.reason) == (
        "nope", S.TASK_LOST, common_pb2.REASON_TASK_UNKNOWN)


def test_a_kill_during_the_pull_cancels_it(h: Harness) -> None:
    h(ev.Started(""), registered())
    assert h(run(task(image="busybox"))) == [c.PullImage(KEY, FW, task(image="busybox"))]
    [starting] = sent(h(ev.ImagePulling(KEY)))
    assert starting.state == S.TASK_STARTING and "pulling image busybox" in starting.message
    out = h(kill())
    assert out[0] == c.CancelPull(KEY)
    [killed] = sent(h(ack(starting.uuid)))
    assert (killed.state, killed.reason) == (S.TASK_KILLED,
                                            common_pb2.REASON_TASK_KILLED_DURING_LAUNCH)
    assert h.core.tasks[KEY].executor == E.EXECUTOR_EXITED
    # A pull that finished anyway is let go at once.
    assert h(ev.ImageReady(KEY, task(), ("/l1",), "sha256:x")) == [c.ReleaseImage(KEY)]


def test_an_image_task_starts_from_the_resolved_task_and_its_layers(h: Harness) -> None:
    h(ev.Started(""), registered(), run(task(image="busybox")))
    resolved = task()
    resolved.command.argv[:] = ["/bin/sh"]
    [start] = h(ev.ImageReady(KEY, resolved, ("/l2", "/l1"), "sha256:abc"))
    assert isinstance(start, c.StartExecutor)
    assert list(start.spec.layers) == ["/l2", "/l1"] and start.spec.image_id == "sha256:abc"
    assert list(start.spec.task.command.argv) == ["/bin/sh"]
    # The framework's task is what re-registration reports.
    assert h.core.registration().reregister.running[0].task.container.image == "busybox"
    h(ev.SandboxMade(KEY, SANDBOX))
    out = h(ev.ExecutorExited(KEY, code=1))
    assert c.ReleaseImage(KEY) in out


def test_a_failed_pull_fails_the_task(h: Harness) -> None:
    h(ev.Started(""), registered(), run(task(image="nope")))
    [failed] = sent(h(ev.ImageFailed(KEY, "manifest unknown")))
    assert failed.state == S.TASK_FAILED and "manifest unknown" in failed.message
    assert failed.reason == common_pb2.REASON_CONTAINER_LAUNCH_FAILED


def test_an_executor_that_dies_first_fails_its_task(h: Harness) -> None:
    h.running()
    h(ack(b"r1"))
    out = h(ev.ExecutorExited(KEY, code=137, log_tail="oops"))
    [failed] = sent(out)
    assert failed.state == S.TASK_FAILED and failed.reason == common_pb2.REASON_EXECUTOR_TERMINATED
    assert "status 137" in failed.message and "oops" in failed.message
    assert c.DestroyCgroup("juggler-test/fw.t1") in out


def test_recovery_goes_on_with_live_executors_and_fails_dead_ones(h: Harness) -> None:
    def spec(task_id: str) -> executor_pb2.ExecutorSpec:
        return executor_pb2.ExecutorSpec(framework=FW, task=task(task_id),
                                         cgroup=f"juggler-test/fw.{task_id}")

    running = common_pb2.TaskStatus(task_id="x", framework_id="fw", state=S.TASK_RUNNING,
                                    uuid=b"x1")
    done = common_pb2.TaskStatus(task_id="z", framework_id="fw", state=S.TASK_FINISHED,
                                 uuid=b"z1")
    out = h(ev.Started("a1", (
        ev.Recovered(Path("/s/alive"), spec("alive"), [running], frozenset({b"x1"}), True),
        ev.Recovered(Path("/s/dead"), spec("dead"), [running], frozenset({b"x1"}), False),
        ev.Recovered(Path("/s/done"), spec("done"), [done], frozenset({b"z1"}), False),
    )))
    tasks = h.core.tasks
    assert tasks[("fw", "alive")].executor == E.EXECUTOR_DISCONNECTED
    assert tasks[("fw", "dead")].state == S.TASK_FAILED
    assert c.DestroyCgroup("juggler-test/fw.dead") in out
    assert c.MarkDone(Path("/s/done")) in out and ("fw", "done") not in tasks  # done with
    reported = {r.task.task_id for r in h.core.registration().reregister.running}
    assert reported == {"alive", "dead"}
    # The dead one's failure goes to the master once it is there.
    [failed] = sent(h(registered("a1")))
    assert failed.task_id == "dead" and failed.reason == common_pb2.REASON_EXECUTOR_TERMINATED


def test_a_gone_agent_kills_everything_and_registers_afresh(h: Harness) -> None:
    h.running()
    h(run(task("pulling", image="busybox")))
    out = h(master(shutdown=agent_pb2.MasterMessage.Shutdown(message="gone")))
    assert to_executor(out, "shutdown")[0].key == KEY
    assert c.CancelPull(("fw", "pulling")) in out
    assert c.MarkDone(SANDBOX) in out and out[-1] == c.SaveAgentId("")
    assert h.core.tasks == {} and h.core.registration().HasField("register")
    # Its executor, still alive, is refused when it says hello again.
    out = h(ev.ExecutorHello(KEY, 1))
    assert to_executor(out, "shutdown") and c.CloseExecutor(KEY) in out


def test_registration_reports_attributes_and_every_task_not_done(h: Harness) -> None:
    h.running()
    msg = h.core.registration()
    assert msg.reregister.agent.attributes["rack"] == "r1"
    [st] = msg.reregister.tasks
    assert (st.task_id, st.state) == ("t1", S.TASK_RUNNING)


def test_a_task_that_ended_is_reported_with_the_update_the_master_gets_next(
        h: Harness) -> None:
    """A re-registration names, for a task that ended, its oldest
    unacknowledged update (RUNNING while that waits, then the terminal one with
    its reason, message and exit code), so that a new leader holds the task
    and tells those updates in order; a reconciliation meanwhile answers that
    it ended, not TASK_GONE. A running task names none."""
    h.running()
    [rt] = h.core.registration().reregister.running
    assert not rt.HasField("next_update")
    failed = update(S.TASK_FAILED, b"f1")
    failed.status.message, failed.status.exit_code = "Command exited with status 3", 3
    failed.status.reason = common_pb2.REASON_EXECUTOR_TERMINATED
    h(failed)   # RUNNING's acknowledgement is still awaited: FAILED waits behind it
    rr = h.core.registration().reregister
    assert [s.state for s in rr.tasks] == [S.TASK_FAILED]
    assert (rr.running[0].next_update.state, rr.running[0].next_update.uuid) == (
        S.TASK_RUNNING, b"r1")
    h(ack(b"r1"))
    nxt = h.core.registration().reregister.running[0].next_update
    assert (nxt.state, nxt.exit_code, nxt.message, nxt.reason, nxt.uuid) == (
        S.TASK_FAILED, 3, "Command exited with status 3",
        common_pb2.REASON_EXECUTOR_TERMINATED, b"f1")


def test_a_relaunch_of_a_running_task_is_ignored(h: Harness) -> None:
    h.running()
    [note] = h(run(task()))
    assert isinstance(note, c.Log) and "launch ignored" in note.event


def test_an_executor_reconnecting_over_a_new_socket_is_taken(h: Harness) -> None:
    h.running()
    assert h(ev.ExecutorHello(KEY, 4242)) == []  # its old connection not noticed closed yet
    story = [(s.source, s.target) for s in h.core.tasks[KEY].story]
    assert story[-2:] == [(E.EXECUTOR_CONNECTED, E.EXECUTOR_DISCONNECTED),
                          (E.EXECUTOR_DISCONNECTED, E.EXECUTOR_CONNECTED)]


def test_a_task_id_reused_waits_for_the_old_executor_to_be_gone(h: Harness) -> None:
    h.running()
    h(update(S.TASK_FINISHED, b"f1"), ack(b"r1"))
    assert to_executor(h(ack(b"f1")), "shutdown")  # told to go; not gone yet
    [note] = h(run(task()))  # the framework reuses the id at once
    assert isinstance(note, c.Log) and "waiting for the old executor" in note.event
    # Its updates and exit are the old task's, nothing of them touches the new one.
    out = h(ev.ExecutorExited(KEY, code=0))
    assert out[0] == c.Forget(KEY) and isinstance(out[1], c.StartExecutor)
    assert h.core.tasks[KEY].executor == E.EXECUTOR_LAUNCHING
    assert h.core.tasks[KEY].state == S.TASK_STAGING


def test_a_started_task_keeps_its_cgroup_whatever_the_root_is_now(h: Harness) -> None:
    h.running()
    h.core.cgroup_root = "elsewhere"  # the agent restarted with another --cgroup-root
    assert h.core.tasks[KEY].cgroup == "juggler-test/fw.t1"
    out = h(ev.ExecutorExited(KEY, code=1))
    assert c.DestroyCgroup("juggler-test/fw.t1") in out


def test_an_executor_logs_last_line_explains_its_death_only_when_it_says_why(
        tmp_path) -> None:
    """A reviewer saw `…before its task ended: {"component": …, "message":
    "Command started"}` after kill -9 of an executor: an ordinary log record
    explains nothing."""
    from juggler.agent.server import _tail

    log = tmp_path / "executor.log"
    log.write_text('{"level": "info", "event": "Command started"}\n')
    assert _tail(log) == ""
    log.write_text('{"level": "error", "event": "cannot reach the agent"}\n')
    assert _tail(log) == "cannot reach the agent"
    log.write_text("Traceback (most recent call last):\nMemoryError: out of memory\n")
    assert _tail(log) == "MemoryError: out of memory"
    assert _tail(tmp_path / "missing.log") == ""
