"""A task on the host's filesystem cannot write it by default (issue 18).

Real executors (tests/executor_harness.py), real mount namespaces: the task
sees the host read-only (EROFS) apart from its sandbox and a private /tmp;
with ContainerInfo.writable_host_filesystem it writes where it likes.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest

from juggler.v1 import common_pb2 as pb
from tests.executor_harness import run_to_end, task_info

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="requires root")



def _probe(tmp_path: Path, writable: bool) -> tuple[pb.TaskStatus, str, str, list[Path]]:
    marker = uuid.uuid4().hex[:8]
    # Outside the sandbox and outside /tmp (the task's /tmp is its own).
    outside = Path(tempfile.mkdtemp(prefix="juggler-hostfs-", dir="/var/tmp"))
    host_files = [Path(f"/root/x-{marker}"), outside / "f"]
    task = task_info(
        f'ID={marker}; for f in /root/x-{marker} {outside}/f "$MESOS_SANDBOX/mine" '
        f'/tmp/t-{marker}; do if touch "$f"; then echo "wrote $f"; '
        f'else echo "refused $f"; fi; done; stat -c %a /tmp',
        writable_host_filesystem=writable)
    try:
        done, out, err = run_to_end(tmp_path, task)
    finally:
        leftovers = [p for p in host_files if p.exists()]
        for p in leftovers:
            p.unlink()
        outside.rmdir()
    return done, out, err, leftovers


def test_host_filesystem_is_read_only_but_the_sandbox_and_tmp(tmp_path):
    done, out, err, leftovers = _probe(tmp_path, writable=False)
    assert done.state == pb.TASK_FINISHED, (done.message, err)
    lines = out.splitlines()
    assert lines[0].startswith("refused /root/x-") and lines[1].startswith("refused "), out
    assert lines[2].startswith("wrote ") and lines[2].endswith("/mine"), out
    assert lines[3].startswith("wrote /tmp/t-"), out
    assert lines[4] == "1777", out
    assert err.count("Read-only file system") == 2, err
    assert leftovers == []
    # The sandbox write is the sandbox's; the /tmp one lands in <sandbox>/tmp, not /tmp.
    sandbox = tmp_path / "sandbox"
    assert (sandbox / "mine").exists()
    name = lines[3].removeprefix("wrote ")
    assert (sandbox / "tmp" / Path(name).name).exists() and not Path(name).exists()


def test_writable_host_filesystem_keeps_todays_view(tmp_path):
    done, out, err, leftovers = _probe(tmp_path, writable=True)
    assert done.state == pb.TASK_FINISHED, (done.message, err)
    assert [ln.split()[0] for ln in out.splitlines()[:4]] == ["wrote"] * 4, (out, err)
    assert len(leftovers) == 2
