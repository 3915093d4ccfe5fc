"""Pure parts of task I/O: the rotation policy, the log tail, detach keys."""

from __future__ import annotations

import pytest

from juggler.agent.log_files import tail_offset
from juggler.cli.terminal import DetachKeys
from juggler.executor.stdio import DEFAULT_KEEP, DEFAULT_MAX_BYTES, RotationPolicy


def test_rotation_defaults_and_labels():
    assert RotationPolicy.from_labels({}) == RotationPolicy(DEFAULT_MAX_BYTES, DEFAULT_KEEP)
    assert RotationPolicy.from_labels({"juggler.log_max_bytes": "4096",
                                       "juggler.log_max_files": "5"}) == RotationPolicy(4096, 5)
    for bad in ("0", "-5", "ten", "100"):
        with pytest.raises(ValueError, match=r"juggler\.log_max_bytes"):
            RotationPolicy.from_labels({"juggler.log_max_bytes": bad})


def test_split_fits_without_rotating():
    assert RotationPolicy(100).split(10, b"abc\n") == [(False, b"abc\n")]
    assert RotationPolicy(10).split(6, b"abc\n") == [(False, b"abc\n")]  # exactly full


def test_split_cuts_after_the_last_newline_that_fits():
    policy = RotationPolicy(10)
    assert policy.split(4, b"aa\nbbbbbb\n") == [(False, b"aa\n"), (True, b"bbbbbb\n")]


def test_split_rotates_first_when_no_line_fits():
    assert RotationPolicy(10).split(8, b"cccc\n") == [(True, b"cccc\n")]


def test_split_cuts_a_line_longer_than_a_file():
    pieces = RotationPolicy(4).split(0, b"abcdefghij")
    assert pieces == [(False, b"abcd"), (True, b"efgh"), (True, b"ij")]


def test_split_never_exceeds_the_cap_and_keeps_every_byte():
    policy = RotationPolicy(16)
    size, total = 5, b""
    data = b"".join(b"line %d\n" % i for i in range(40)) + b"tail-without-newline" * 3
    for rotate, piece in policy.split(size, data):
        size = len(piece) if rotate else size + len(piece)
        assert size <= 16
        total += piece
    assert total == data


def test_rotated_names():
    from pathlib import Path

    names = [p.name for p in RotationPolicy(1024, 2).rotated(Path("/s/stdout"))]
    assert names == ["stdout.1", "stdout.2"]


def test_tail_offset():
    data = b"a\nb\nc\n"
    assert data[tail_offset(data, 2):] == b"b\nc\n"
    assert data[tail_offset(data, 10):] == data
    assert b"a\nb"[tail_offset(b"a\nb", 1):] == b"b"


def test_detach_keys_complete_sequence():
    keys = DetachKeys()
    assert keys.feed(b"ls\r\x10\x11rest") == (b"ls\r", True)


def test_detach_keys_across_reads_and_false_starts():
    keys = DetachKeys()
    assert keys.feed(b"a\x10") == (b"a", False)  # held back: may start the sequence
    assert keys.feed(b"x") == (b"\x10x", False)  # it did not: both sent
    assert keys.feed(b"\x10") == (b"", False)
    assert keys.feed(b"\x10") == (b"\x10", False)  # a second Ctrl-P restarts the match
    assert keys.feed(b"\x11") == (b"", True)


def test_ctrl_c_is_not_a_detach_key():
    assert DetachKeys().feed(b"\x03") == (b"\x03", False)
