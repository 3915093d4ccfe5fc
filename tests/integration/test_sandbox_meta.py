"""The agent's checkpoint of a task lives outside the task's sandbox
(common/sandbox_paths.py): a root task that rewrites what it finds in its
sandbox changes nothing for the agent, an agent restarted on a work dir of the
old layout (the checkpoint in the sandboxes) still recovers its tasks, and a
task run as another user than root owns its sandbox (as on Mesos).
Real agent, master, executors and tasks.
"""

from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import pytest

from juggler.agent.checkpoint import meta_dir
from juggler.common.resources import Resources
from juggler.container.cgroups import open_cgroup
from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, the_process
from juggler.v1 import common_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run, task
from tests.integration.test_master_contract import DEADLINE, wait_async

pytestmark = [pytest.mark.root]
S = common_pb2.TaskState
RESOURCES = "cpus:2;mem:1024;disk:1024"


def _total(tasks: list[common_pb2.TaskInfo]) -> Resources:
    total = Resources()
    for t in tasks:
        total = total + Resources.from_proto(t.resources)
    return total


def _sandbox(daemons: Daemons, framework_id: str, task_id: str) -> Path:
    return daemons.work / "a1" / "frameworks" / framework_id / "tasks" / task_id


def test_a_task_cannot_rewrite_its_checkpoint_and_old_layouts_recover(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", resources=RESOURCES)
    daemons.wait_agents(1)
    forger_sleep, legacy_sleep = f"sleep {marker()}", f"sleep {marker()}"

    async def body() -> None:
        async with Client(daemons.master, "meta") as c:
            fid = c.fw.framework_id
            meta = meta_dir(_sandbox(daemons, fid, "forger"))
            finished = common_pb2.TaskStatus(task_id="forger", framework_id=fid,
                                             state=S.TASK_FINISHED, uuid=b"forged")
            forged_update = json.dumps(
                {"update": base64.b64encode(finished.SerializeToString()).decode()})
            # The task (root, on the host's filesystem) looks for the agent's
            # files, tries the meta directory, then forges the old names.
            script = (
                'for f in task.pb executor.pid updates.log done executor.lock; do '
                '[ -e "$MESOS_SANDBOX/$f" ] && echo "SEEN $f"; done; '
                f'echo x > {meta}/task.pb 2>/dev/null && echo META-WRITTEN; '
                'printf garbage > "$MESOS_SANDBOX/task.pb"; '
                'echo "1 1" > "$MESOS_SANDBOX/executor.pid"; '
                f"echo '{forged_update}' > \"$MESOS_SANDBOX/updates.log\"; "
                'touch "$MESOS_SANDBOX/done"; '
                f'echo forged; exec {forger_sleep}')
            tasks = [task("forger", 0.2, 32, "sh", "-c", script),
                     task("legacy", 0.2, 32, "sh", "-c", f"exec {legacy_sleep}")]
            offer = await c.offer(_total(tasks))
            await c.fw.launch([offer.id], tasks)
            for t in tasks:
                await c.until(t.task_id, S.TASK_RUNNING)
            stdout = _sandbox(daemons, fid, "forger") / "stdout"
            await wait_async(lambda: stdout.exists() and "forged" in stdout.read_text(),
                             DEADLINE, "the forger to write its files")
            assert stdout.read_text() == "forged\n"  # saw none of them, wrote no meta file
            assert os.stat(meta).st_mode & 0o777 == 0o700
            assert os.stat(daemons.work / "a1" / "meta").st_mode & 0o777 == 0o700
            spec_before = (meta / "task.pb").read_bytes()
            # RUNNING comes before the exec of `sh -c 'exec sleep …'` is done:
            # wait for both sleeps before taking their pids (seen in CI under load).
            await wait_async(lambda: all(the_process(m) for m in (forger_sleep, legacy_sleep)),
                             DEADLINE, "one process for each task")
            before = {m: the_process(m) for m in (forger_sleep, legacy_sleep)}

            daemons.send("a1", signal.SIGKILL)
            daemons.procs["a1"].wait(DEADLINE)
            # "legacy" as an agent before the meta directories left it: its
            # checkpoint in its sandbox (its executor holds the lock it took).
            legacy, legacy_meta = (_sandbox(daemons, fid, "legacy"),
                                   meta_dir(_sandbox(daemons, fid, "legacy")))
            for name in ("task.pb", "executor.pid", "updates.log"):
                os.replace(legacy_meta / name, legacy / name)
            (legacy_meta / "executor.lock").unlink()
            legacy_meta.rmdir()

            daemons.start_agent("a1", resources=RESOURCES)
            daemons.wait_agents(1)
            await c.fw.reconcile()
            for tid in ("forger", "legacy"):
                await wait_async(lambda tid=tid: any(
                    s.state == S.TASK_RUNNING and s.reason == common_pb2.REASON_RECONCILIATION
                    for s in c.history[tid]), DEADLINE, f"{tid} reconciled RUNNING")
            assert not any(s.uuid == b"forged" or s.state == S.TASK_FINISHED
                           for s in c.history["forger"])
            assert {m: the_process(m) for m in before} == before  # the same processes
            assert (meta / "task.pb").read_bytes() == spec_before
            assert (legacy_meta / "task.pb").exists() and not (legacy / "task.pb").exists()
            # The agent knows the real executors: killing works and cleans up.
            for tid in ("forger", "legacy"):
                await c.fw.kill(tid)
                await c.until(tid, S.TASK_KILLED)
            for tid in ("forger", "legacy"):
                cgroup = open_cgroup(daemons.task_cgroup(fid, tid))
                await wait_async(lambda cg=cgroup: not cg.exists(), DEADLINE,
                                 f"{tid}'s cgroup removed")
            wait_for(lambda: not any(the_process(m) for m in before), DEADLINE,
                     what="the tasks' processes to be gone")
    run(body)


def test_a_task_run_as_a_user_writes_its_sandbox(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", resources=RESOURCES)
    daemons.wait_agents(1)
    script = ('echo mine > "$MESOS_SANDBOX/mine" && cat "$MESOS_SANDBOX/mine" && '
              'mkdir "$MESOS_SANDBOX/d" && id -u && id -g')

    async def body() -> None:
        async with Client(daemons.master, "users") as c:
            tasks = []
            for tid, user in (("by-name", "nobody"), ("by-number", "1000:1000")):
                t = task(tid, 0.2, 32, "sh", "-c", script)
                t.command.user = user
                tasks.append(t)
            offer = await c.offer(_total(tasks))
            await c.fw.launch([offer.id], tasks)
            fid = c.fw.framework_id
            for tid, ids in (("by-name", "65534\n65534"), ("by-number", "1000\n1000")):
                await c.until(tid, S.TASK_FINISHED)
                sandbox = _sandbox(daemons, fid, tid)
                assert (sandbox / "stdout").read_text() == f"mine\n{ids}\n"
                uid, gid = (int(x) for x in ids.split())
                st = os.stat(sandbox)
                assert (st.st_uid, st.st_gid) == (uid, gid)
                assert os.stat(sandbox / "mine").st_uid == uid
                # The executor's files stay root's; the agent's are elsewhere.
                assert os.stat(sandbox / "stdout").st_uid == 0
                assert not (sandbox / "task.pb").exists()
    run(body)


def test_an_executor_that_comes_after_its_task_ended_does_not_run_it(daemons: Daemons) -> None:
    """Once the agent has seen a task's executor end, the task's lock is
    marked given up: an executor its launcher forked too late (the agent had
    fallen back to starting its own) exits 4 and does not run the task
    again."""
    import subprocess
    import sys

    from juggler.common.sandbox_paths import EXIT_GIVEN_UP, GIVEN_UP, WORK_ENV

    daemons.start_master()
    daemons.start_agent("a1", resources=RESOURCES)
    daemons.wait_agents(1)

    async def body() -> None:
        async with Client(daemons.master, "late") as c:
            fid = c.fw.framework_id
            sandbox = _sandbox(daemons, fid, "once")
            count = sandbox / "count"
            t = task("once", 0.2, 32, "sh", "-c", f"echo ran >> {count}")
            offer = await c.offer(_total([t]))
            await c.fw.launch([offer.id], [t])
            await c.until("once", S.TASK_FINISHED)
            lock = meta_dir(sandbox) / "executor.lock"
            await wait_async(lambda: lock.read_bytes() == GIVEN_UP, DEADLINE,
                             "the ended task's lock to be marked given up")
            late = subprocess.run(
                [sys.executable, "-m", "juggler.executor", "--sandbox", str(sandbox)],
                env={**os.environ, WORK_ENV: str(daemons.work / "a1")},
                capture_output=True, text=True, timeout=DEADLINE)
            assert late.returncode == EXIT_GIVEN_UP, late.stderr
            assert count.read_text() == "ran\n"   # once, by its own executor

    run(body)
