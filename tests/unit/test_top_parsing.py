"""`docker top`'s reading of ps (agent/top.py), on ps output as procps prints
it. Run for real against a task in tests/integration/test_top.py."""

from __future__ import annotations

import pytest

from juggler.agent.top import TopError, parse, ps_argv

EF = """\
UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 11:30 ?        00:01:37 /sbin/init splash
root         812       1  0 11:31 ?        00:00:00 sh -c while :; do sleep 1; done
root         813     812  0 11:31 ?        00:00:00 sleep 1
nobody       900       1  0 11:32 ?        00:00:00 other
"""

THREADS = """\
USER         PID %CPU %MEM    VSZ   RSS TTY      STAT START   TIME COMMAND
root         812  0.0  0.0   2580   900 ?        -    11:31   0:00 python3 app.py
root           -  0.0    -      -     - -        Ssl  11:31   0:00 -
root           -  0.0    -      -     - -        Sl   11:31   0:00 -
root         900  0.0  0.0   2580   900 ?        -    11:31   0:00 other
root           -  0.0    -      -     - -        Ssl  11:31   0:00 -
"""


def test_the_header_s_titles_and_the_rows_of_the_cgroup_s_pids() -> None:
    titles, rows = parse(EF, [812, 813])
    assert titles == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    # A command's words are one field, the last: as many fields as titles.
    assert rows == [
        ["root", "812", "1", "0", "11:31", "?", "00:00:00", "sh -c while :; do sleep 1; done"],
        ["root", "813", "812", "0", "11:31", "?", "00:00:00", "sleep 1"],
    ]


def test_thread_lines_go_with_the_process_above_them() -> None:
    titles, rows = parse(THREADS, {812})
    assert titles[1] == "PID" and [r[1] for r in rows] == ["812", "-", "-"]
    assert all(len(r) == len(titles) for r in rows)


def test_no_pid_column_or_a_pid_that_is_no_number_is_an_error() -> None:
    with pytest.raises(TopError, match="no PID column"):
        parse("USER COMMAND\nroot init\n", [1])
    with pytest.raises(TopError, match="'x1' as a PID"):
        parse("PID CMD\nx1 init\n", [1])
    with pytest.raises(TopError, match="no PID column"):
        parse("", [1])


def test_the_ps_command_lines_try_only_the_pids_first() -> None:
    assert ps_argv("", [813, 812]) == [["ps", "-ef", "-q", "812,813"], ["ps", "-ef"]]
    assert ps_argv("aux", [5]) == [["ps", "aux", "-q", "5"], ["ps", "aux"]]
    assert ps_argv("-o  pid,comm", []) == [["ps", "-o", "pid,comm"]]
    assert ps_argv("-o pid=PID,comm", [1])[-1] == ["ps", "-o", "pid=PID,comm"]


@pytest.mark.parametrize("args", ["-o comm=PID", "-o pid,comm=PIDX", "-eo user= PID"])
def test_options_that_title_another_column_pid_are_refused(args: str) -> None:
    with pytest.raises(TopError, match="may not title another column PID"):
        ps_argv(args, [1])
