"""Signals by name or number (common/task_check.py parse_signal), a kill's
first signal (KillPolicy.signal, an image's StopSignal), and Agent.Signal in
the agent's core. The signals for real are tests/integration/test_signals.py."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from juggler.agent import commands as c
from juggler.agent import events as ev
from juggler.agent.image_tasks import with_stop_signal
from juggler.common import task_check
from juggler.common.task_check import TaskError, parse_signal, signal_name
from juggler.executor.executor import Executor
from juggler.images.config import ImageConfig
from juggler.v1 import common_pb2, executor_pb2
from tests.unit.test_agent_state import KEY, Harness, master, task, to_executor

S = common_pb2.TaskState


@pytest.mark.parametrize(("text", "number"), [
    ("SIGTERM", 15), ("TERM", 15), ("term", 15), ("SigInt", 2), ("HUP", 1), ("9", 9),
    ("SIGQUIT", 3), ("QUIT", 3), ("SIGIOT", 6), ("CLD", 17), ("SIGRTMIN", 34),
    ("RTMIN+3", 37), ("SIGRTMAX-1", 63), ("SIGRTMAX", 64), ("64", 64), ("1", 1),
    (" USR1 ", 10),
])
def test_a_signal_by_name_in_any_case_with_or_without_sig_or_by_number(
        text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["", "0", "65", "-1", "SIG", "SIGFOO", "TERM15", "1.5",
                                  "RTMIN+31", "SIGSIGTERM", "0x0f"])
def test_anything_else_is_not_a_signal(text: str) -> None:
    with pytest.raises(TaskError) as e:
        parse_signal(text)
    assert e.value.field == "signal"
    assert str(e.value) == (f"signal {text!r} is not a signal: give a name (SIGTERM, TERM, "
                            "SIGINT, ...) or a number from 1 to 64")


def test_the_names_and_numbers_are_this_host_s() -> None:
    for number in range(1, 65):
        try:
            name = signal.Signals(number).name
        except ValueError:
            continue
        assert signal_name(number) == name
        assert parse_signal(name) == number
    assert signal_name(37) == "SIGRTMIN+3" and signal_name(99) == "signal 99"


def test_the_task_check_refuses_a_kill_signal_that_is_none() -> None:
    info = task()
    info.kill_policy.signal = "SIGWHAT"
    with pytest.raises(TaskError) as e:
        task_check.check(info)
    assert e.value.field == "kill_policy.signal"
    assert str(e.value).startswith("task 't1': kill_policy.signal 'SIGWHAT' is not a signal")
    info.kill_policy.signal = "SIGINT"
    task_check.check(info)


# -- an image's StopSignal -------------------------------------------------------------


def test_an_image_s_stop_signal_is_read_from_its_config() -> None:
    config = ImageConfig.parse({"config": {"StopSignal": "SIGQUIT", "Cmd": ["sh"]}})
    assert config.stop_signal == "SIGQUIT"
    assert ImageConfig.parse({"config": {}}).stop_signal == ""


def test_the_stop_signal_fills_the_kill_policy_unless_the_task_names_one() -> None:
    assert with_stop_signal(task(), "SIGQUIT").kill_policy.signal == "SIGQUIT"
    own = task()
    own.kill_policy.signal = "SIGINT"
    assert with_stop_signal(own, "SIGQUIT").kill_policy.signal == "SIGINT"
    assert with_stop_signal(task(), "").kill_policy.signal == ""
    # One that is no signal is dropped: the kill sends SIGTERM (Docker's fallback).
    assert with_stop_signal(task(), "SIGNOPE").kill_policy.signal == ""


# -- Agent.Signal in the agent's core --------------------------------------------------


def test_a_signal_goes_to_the_connected_executor() -> None:
    h = Harness()
    h.running()
    [sig] = to_executor(h(ev.SignalTask(KEY, 1)), "signal")
    assert sig.message.signal.signal == 1
    h(ev.ExecutorDisconnected(KEY))
    [note] = h(ev.SignalTask(KEY, 1))
    assert isinstance(note, c.Log) and "not connected" in note.event


def test_a_kill_carries_its_signal_to_the_executor() -> None:
    h = Harness()
    h.running()
    kill = master(kill_task={"framework_id": "fw", "task_id": "t1",
                             "kill_policy": {"signal": "SIGINT"}})
    [k] = to_executor(h(kill), "kill")
    assert k.message.kill.kill_policy.signal == "SIGINT"
    assert not k.message.kill.kill_policy.HasField("grace_period_seconds")


# -- the executor's choice of a kill's first signal ------------------------------------


def executor_for(kill_signal: str = "") -> Executor:
    info = task()
    info.kill_policy.signal = kill_signal
    spec = executor_pb2.ExecutorSpec(framework=common_pb2.FrameworkInfo(id="fw"), task=info,
                                     agent_socket="/nonexistent/agent.sock")
    return Executor(Path("/nonexistent"), spec)


def test_the_kill_s_signal_then_the_task_s_then_sigterm() -> None:
    assert executor_for()._signal("") == signal.SIGTERM
    assert executor_for("SIGQUIT")._signal("") == signal.SIGQUIT
    assert executor_for("SIGQUIT")._signal("INT") == signal.SIGINT
    assert executor_for("SIGQUIT")._signal("12") == 12
    # One that got through unchecked is not fatal: SIGTERM, and a line in the log.
    assert executor_for()._signal("SIGNOPE") == signal.SIGTERM
