"""Every client gets past a frozen leading master: `juggler up --masters 3`,
SIGSTOP the leader (its kernel still accepts TCP connections, it answers
nothing, its lease runs out), and once another master leads, `juggler run`,
an SDK framework subscribing, the agent that was connected to the frozen one
and the apps service all carry on with the new leader, each within a
deadline (common/leader.py find_leader, common/servers.py keepalives and
connects()). Real processes, real etcd; nothing mocked."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from juggler.common import servers
from juggler.sdk import Framework
from juggler.testing import secure
from juggler.v1 import common_pb2, operator_pb2, operator_pb2_grpc
from tests.conftest import three_masters_up, wait_for
from tests.integration.test_apps import api, app_of
from tests.integration.test_ha import says_it_leads

pytestmark = [pytest.mark.root]
# Each client's deadline after the freeze (the election itself takes about a
# lease TTL, 5 s); without the fix they took 45-70 s. Generous: a 2-core
# machine other suites share.
DEADLINE = 20.0
# Seconds `juggler run` may take in all (a loaded machine, TLS): a bound, not a figure.
RUN_TIMEOUT = 90.0
# For the apps service: a re-subscription, then offers and two launches.
APP_DEADLINE = 45.0
SETUP = 120.0


def active_agents(address: str) -> list[operator_pb2.AgentView]:
    """The agents the master at `address` has ACTIVE (registered over a live stream)."""
    try:
        with servers.sync_channel(address) as ch:
            got = operator_pb2_grpc.OperatorStub(ch).GetAgents(operator_pb2.GetAgentsRequest(),
                                                              timeout=2)
    except Exception:
        return []
    return [a for a in got.agents if a.state == operator_pb2.AGENT_ACTIVE]


def test_every_client_gets_past_a_frozen_leader(tmp_path: Path) -> None:
    with three_masters_up(tmp_path) as cluster:
        env, juggler, addresses = cluster.env, cluster.juggler, cluster.addresses
        masters = ",".join(addresses)

        def leader(but: str = "") -> str | None:
            return next((a for a in addresses if a != but and says_it_leads(a)), None)

        old = wait_for(leader, SETUP, what="a leader")
        wait_for(lambda: active_agents(old), SETUP, what="the agent registered")
        warm = subprocess.run([*juggler, "run", "-q", "--", "echo", "warm"], env=env,
                              capture_output=True, text=True, timeout=SETUP)
        assert warm.returncode == 0 and warm.stdout == "warm\n", warm.stderr
        frozen = cluster.master_pid(old)
        os.kill(frozen, signal.SIGSTOP)
        try:
            frozen_at = time.monotonic()
            new = wait_for(lambda: leader(but=old), DEADLINE, what="another master to lead")
            print(f"new leader {new} {time.monotonic() - frozen_at:.1f} s after SIGSTOP")

            # The agent that was connected to the frozen leader re-registers.
            wait_for(lambda: active_agents(new), DEADLINE,
                     what="the agent to re-register with the new leader")
            print(f"agent active at the new leader {time.monotonic() - frozen_at:.1f} s "
                  "after SIGSTOP")

            # `juggler run` (the CLI's operator call, then the SDK's subscribe).
            started = time.monotonic()
            done = subprocess.run([*juggler, "run", "-q", "--", "echo", "hi"], env=env,
                                  capture_output=True, text=True, timeout=RUN_TIMEOUT)
            print(f"juggler run -q -- echo hi: exit {done.returncode} in "
                  f"{time.monotonic() - started:.1f} s")
            assert done.returncode == 0, done.stderr
            assert done.stdout == "hi\n", (done.stdout, done.stderr)

            # A framework of the SDK, given every master, subscribes to the new leader.
            async def subscribe() -> str:
                fw = Framework(masters, common_pb2.FrameworkInfo(
                    name="frozen-leader-test", user="root", failover_timeout=0))
                try:
                    subscribed = await fw.subscribe(timeout=DEADLINE)
                    await fw.teardown()
                    return subscribed.master_address or fw.master
                finally:
                    await fw.close()

            assert asyncio.run(subscribe()) == new

            # The apps service (a framework too) takes an app and runs it.
            if not secure.enabled():   # its REST API wants a token in the TLS mode
                url = f"http://127.0.0.1:{cluster.apps_port}"
                app_id = f"/frozen-{uuid.uuid4().hex[:8]}"
                status, body = api(url, "POST", "/v2/apps", {
                    "id": app_id, "cmd": "exec sleep 600", "instances": 2, "cpus": 0.1,
                    "mem": 16})
                assert status in (200, 201), (status, body)
                wait_for(lambda: app_of(url, app_id)["tasksRunning"] == 2, APP_DEADLINE,
                         interval=0.5, what="the app's 2 instances to run")
                api(url, "DELETE", f"/v2/apps{app_id}?force=true")
        finally:
            os.kill(frozen, signal.SIGCONT)
