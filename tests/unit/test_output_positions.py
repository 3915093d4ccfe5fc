"""Where a task's output is and who holds it back (issue 15, output silently
lost): the arithmetic of positions and gaps (common/log_positions.py), the
read gate and its back-pressure mark (executor/stdio.py, attach.py), and the
log files as the executor writes and rotates them, read by a follower that
keeps up and by one that falls behind (agent/log_files.py) — real files in a
temporary directory, no processes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from juggler.agent.log_files import FollowedFile, LogGap, first_position
from juggler.common import fdio, log_positions
from juggler.common.log_positions import Place, locate
from juggler.executor.attach import HIGH_WATER, _replay, behind
from juggler.executor.stdio import ReadGate, RotatingLog, RotationPolicy

# -- locate: pure --------------------------------------------------------------------


def test_nothing_kept_yet_is_nowhere() -> None:
    assert locate([], 0) is None


def test_a_position_inside_a_file_is_read_there() -> None:
    spans = [(100, 50), (150, 50), (200, 10)]  # stdout.2, stdout.1, stdout
    assert locate(spans, 120) == Place(0, 20)
    assert locate(spans, 175) == Place(1, 25)
    assert locate(spans, 205) == Place(2, 5)


def test_the_end_of_a_rotated_file_is_the_start_of_the_next() -> None:
    assert locate([(0, 50), (50, 0)], 50) == Place(1, 0)


def test_the_end_of_the_live_file_waits_there() -> None:
    assert locate([(0, 50), (50, 7)], 57) == Place(1, 7)


def test_a_position_before_the_oldest_kept_is_a_gap_of_the_difference() -> None:
    assert locate([(100, 50), (150, 5)], 30) == Place(0, 0, lost=70)


def test_a_position_past_the_end_goes_on_at_the_end() -> None:
    assert locate([(0, 50), (50, 5)], 80) == Place(1, 5)


# -- the read gate: pure ---------------------------------------------------------------


def test_the_gate_closes_with_the_first_holder_and_opens_with_the_last() -> None:
    gate = ReadGate()
    assert gate.is_open
    assert gate.close("hold") is True
    assert gate.close("client") is False  # closed already
    assert gate.open("hold") is False  # the client still holds it
    assert not gate.is_open
    assert gate.open("client") is True
    assert gate.is_open


def test_letting_go_twice_or_without_holding_changes_nothing() -> None:
    gate = ReadGate()
    assert gate.open("never held") is False
    gate.close("client")
    assert gate.open("client") is True
    assert gate.open("client") is False
    assert gate.is_open


def test_a_client_is_behind_past_the_high_water_mark() -> None:
    assert not behind(HIGH_WATER)
    assert behind(HIGH_WATER + 1)


# -- files, as the executor writes them ---------------------------------------------------


def write_lines(log: RotatingLog, first: int, last: int) -> bytes:
    data = b"".join(b"%d\n" % i for i in range(first, last + 1))
    for i in range(0, len(data), 700):  # in pieces, as a pipe delivers them
        log.write(data[i:i + 700])
    return data


def test_each_file_records_where_it_starts_in_the_stream(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "stdout", RotationPolicy(1024, 2))
    data = write_lines(log, 1, 2000)
    files = log_positions.kept(tmp_path / "stdout")
    try:
        assert [f.recorded for f in files] == [True, True, True]
        assert files[-1].end == log.end == len(data)
        for f in files:  # each holds the stream's bytes from its start
            f.file.seek(0)
            assert f.file.read() == data[f.start:f.end]
        assert files[0].start > 0  # older files were deleted
    finally:
        log_positions.close_all(files)
        log.close()


def test_a_follower_that_keeps_up_reads_every_byte_in_order(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "stdout", RotationPolicy(1024, 1))
    reader = FollowedFile(tmp_path / "stdout", 0)
    got, sent = b"", b""
    for n in range(0, 5000, 100):
        sent += write_lines(log, n, n + 99)
        while data := reader.read(300):
            got += data
    assert got == sent and reader.position == len(sent)
    reader.close()
    log.close()


def test_a_follower_that_falls_behind_is_told_how_much_it_lost(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "stdout", RotationPolicy(1024, 1))
    reader = FollowedFile(tmp_path / "stdout", 0)
    sent = write_lines(log, 1, 100)
    got = reader.read(10)  # it holds the first file now
    sent += write_lines(log, 101, 3000)  # many rotations while it does not read
    kept = log_positions.kept(tmp_path / "stdout")
    oldest = kept[0].start
    log_positions.close_all(kept)
    with pytest.raises(LogGap) as caught:
        while True:
            got += reader.read(1 << 20)
    assert got == sent[:len(got)]  # what it read before the gap is right
    # It read its first file to its end; the next byte kept is at `oldest`.
    assert caught.value.position == len(got)
    assert caught.value.lost == oldest - len(got) > 0
    reader.close()
    log.close()


def test_starting_after_rotation_is_no_gap(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "stdout", RotationPolicy(1024, 1))
    sent = write_lines(log, 1, 3000)
    start = first_position(tmp_path / "stdout", 0)
    reader = FollowedFile(tmp_path / "stdout", start)
    got = b""
    while data := reader.read(1 << 20):
        got += data
    assert start > 0 and got == sent[start:]
    assert first_position(tmp_path / "stdout", 2) == len(sent) - len(b"2999\n3000\n")
    reader.close()
    log.close()


def test_replay_from_a_position_no_longer_kept_says_the_loss_first(tmp_path: Path) -> None:
    log = RotatingLog(tmp_path / "stdout", RotationPolicy(1024, 1))
    sent = write_lines(log, 1, 3000)
    messages = _replay("stdout", log, 0)
    kept = log_positions.kept(tmp_path / "stdout")
    oldest = kept[0].start
    log_positions.close_all(kept)
    assert messages[0].WhichOneof("output") == "stdout_lost"
    assert messages[0].stdout_lost == oldest
    assert b"".join(m.stdout for m in messages[1:]) == sent[oldest:]
    # From where the files still hold it, or from the oldest kept: no loss.
    assert b"".join(m.stdout for m in _replay("stdout", log, len(sent) - 5)) == sent[-5:]
    unasked = _replay("stdout", log, None)
    assert all(m.WhichOneof("output") == "stdout" for m in unasked)
    log.close()


# -- pausing a reader: what the task writes stays in the pipe ------------------------------


def test_a_paused_reader_leaves_the_pipe_full_until_resumed() -> None:
    async def scenario() -> None:
        r, w = os.pipe()
        got: list[bytes] = []
        reader = fdio.Reader(r, got.append, paused=True)
        os.write(w, b"early")
        await asyncio.sleep(0.05)  # a loop turn or several: nothing may be read
        assert got == []
        reader.resume()
        os.close(w)
        await asyncio.wait_for(reader.done, 5)
        assert b"".join(got) == b"early"
        os.close(r)

    asyncio.run(scenario())


def test_a_hold_leaves_the_output_unread_and_its_time_does_not_count_in_the_drain(
        tmp_path: Path) -> None:
    from juggler.executor.stdio import TaskStdio

    async def scenario() -> None:
        stdio = TaskStdio(tmp_path, tty=False, interactive=False, policy=RotationPolicy(4096),
                          hold=60)
        os.write(stdio.child.stdout, b"before anyone attached\n")
        stdio.started()  # the task's ends closed: the pipe holds the line, then EOF
        assert stdio.holding and not stdio.gate.is_open
        draining = asyncio.ensure_future(stdio.drain(timeout=0.01))
        await asyncio.sleep(0.1)  # ten drain timeouts: held, it does not give up
        assert not draining.done()
        assert (tmp_path / "stdout").read_bytes() == b""
        stdio.end_hold()  # a back-pressured client attached
        assert await asyncio.wait_for(draining, 5) is True
        assert (tmp_path / "stdout").read_bytes() == b"before anyone attached\n"
        stdio.close()

    asyncio.run(scenario())
