"""executor/kill.py's decisions: who a kill's SIGTERM reaches, and when the
list of a cgroup's processes, stopped as they are listed, is complete (pure).
The signals for real are tests/integration/test_executor_kill.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from juggler.executor.kill import StopWalk, term_every_process, thread_state
from juggler.v1 import common_pb2 as pb


def test_a_shell_command_is_signalled_whole_an_argv_at_pid_1():
    shell = pb.TaskInfo(command=pb.CommandInfo(argv=["python3 app.py"], shell=True))
    argv = pb.TaskInfo(command=pb.CommandInfo(argv=["python3", "app.py"]))
    assert term_every_process(shell) is True
    assert term_every_process(argv) is False


def test_closed_only_by_a_listing_after_every_listed_process_stopped():
    walk = StopWalk()
    assert walk.listed([1, 7, 9]) == [1, 7, 9]
    assert not walk.closed
    assert walk.listed([1, 7, 9]) == []  # nothing new, but not seen stopped yet: a fork
    assert not walk.closed               # in progress may still add a child
    walk.settled()
    assert walk.listed([1, 7, 9]) == []
    assert walk.closed
    assert walk.pids == [1, 7, 9]


def test_a_child_found_after_settling_reopens_the_walk():
    walk = StopWalk()
    walk.listed([1, 7])
    walk.settled()
    assert walk.listed([1, 7, 12]) == [12]  # forked before its parent stopped
    assert not walk.closed
    assert walk.listed([1, 7, 12]) == []    # 12 not seen stopped yet
    assert not walk.closed
    walk.settled()
    assert walk.listed([7, 12]) == []       # 1 exited meanwhile: still nothing new
    assert walk.closed
    assert walk.pids == [1, 7, 12]          # every pid listed once, first seen first


@given(st.lists(st.lists(st.integers(1, 50), max_size=8), min_size=1, max_size=8))
def test_every_pid_listed_is_kept_once_and_stopped_once(listings):
    walk = StopWalk()
    stopped: list[int] = []
    for pids in listings:
        stopped += walk.listed(pids)
        walk.settled()
    assert stopped == walk.pids
    assert len(set(stopped)) == len(stopped)
    assert set(stopped) == {pid for pids in listings for pid in pids}


def test_thread_state_reads_past_a_command_name_with_spaces_and_parentheses():
    assert thread_state(b"1 (sh) S 0 1 1 0 -1 4194560") == "S"
    assert thread_state(b"42 (my (odd) prog) T 1 42 42 0") == "T"
    assert thread_state(b"7 ()) Z 1 7") == "Z"
