"""An agent whose work dir is longer than a Unix socket's path may be.

The agent serves its executors on <work dir>/executor-link/agent.sock; sun_path
holds 107 bytes (unix(7)), and a work dir under a deep temporary directory (a
test run by pytest-xdist, /tmp/pytest-of-root/pytest-N/popen-gw1/…) made every
agent refuse to start ("AF_UNIX path too long"). Both ends now go through the
socket directory's fd (common/fdio.py). Real master, agent, executor and task.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from juggler.common.fdio import SUN_PATH_MAX
from juggler.common.resources import Resources
from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, the_process
from juggler.v1 import common_pb2
from tests.conftest import needs_root
from tests.framework_client import Client, run, task
from tests.integration.test_master_contract import DEADLINE, wait_async

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState


def test_an_agent_with_a_work_dir_past_a_socket_path_runs_and_recovers_tasks(
        tmp_path: Path) -> None:
    needs_root()
    work = tmp_path / ("a-work-dir-longer-than-a-unix-socket-path-may-be-" * 2)
    work.mkdir()
    daemons = Daemons(work)
    socket = work / "a1" / "executor-link" / "agent.sock"
    assert len(os.fsencode(str(socket))) > SUN_PATH_MAX
    sleeper = f"sleep {marker()}"
    try:
        daemons.start_master()
        daemons.start_agent("a1", "--status-update-retry", "0.2",
                            resources="cpus:1;mem:256;disk:256")
        daemons.wait_agents(1)

        async def body() -> None:
            async with Client(daemons.master, "long-work-dir") as c:
                t = task("t", 0.1, 32, "sh", "-c", f"exec {sleeper}")
                offer = await c.offer(Resources({"cpus": 0.1, "mem": 32}))
                await c.fw.launch([offer.id], [t])
                await c.until("t", S.TASK_RUNNING)   # its executor reached the agent
                await wait_async(lambda: the_process(sleeper) is not None, DEADLINE,
                                 "the task's process")
                before = the_process(sleeper)
                # A restarted agent binds its socket again (a stale one is in
                # the way) and the executor finds it: the kill gets through.
                daemons.send("a1", signal.SIGKILL)
                daemons.procs["a1"].wait(DEADLINE)
                daemons.start_agent("a1", "--status-update-retry", "0.2",
                                    resources="cpus:1;mem:256;disk:256")
                daemons.wait_agents(1)
                assert the_process(sleeper) == before
                await c.fw.kill("t")
                await c.until("t", S.TASK_KILLED)
                await wait_async(lambda: the_process(sleeper) is None, DEADLINE,
                                 "the task's process to end")
        run(body)
    finally:
        daemons.close()
