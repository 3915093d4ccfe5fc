"""Roles' weights and quota limits, and agents' attributes, with real processes:
a master and an agent of known size (the `daemons` fixture), the `juggler` CLI
as an operator runs it, and a framework (juggler.sdk) that receives the offers.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.testing.daemons import Daemons
from juggler.v1 import common_pb2
from tests.conftest import wait_for
from tests.framework_client import Client, run

pytestmark = [pytest.mark.root]
# Generous: two suites may share this 2-core machine.
DEADLINE = 30.0
AGENT = "cpus:1;mem:512;disk:1024"


def juggler(daemons: Daemons, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against this test's master (and no `juggler up` state of the host)."""
    env = dict(os.environ, JUGGLER_MASTER=daemons.master, JUGGLER_HOME=str(daemons.work / "home"))
    return subprocess.run([sys.executable, "-m", "juggler.cli.main", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.args, result.stdout, result.stderr)
    return result.stdout


def table(text: str) -> dict[str, list[str]]:
    """A CLI table's rows by their first column (no cell here has a space)."""
    return {cells[0]: cells for cells in (line.split() for line in text.splitlines()[1:])}


async def next_offer(client: Client) -> common_pb2.Offer:
    return await asyncio.wait_for(client.offers.get(), DEADLINE)


def test_weights_and_quota_set_through_the_cli_shape_the_offers(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", resources=AGENT)
    daemons.wait_agents(1)

    assert ok(juggler(daemons, "quota", "dev", "cpus:0.5;mem:100")) == \
        "dev: quota cpus:0.5;mem:100\n"
    assert ok(juggler(daemons, "weights", "dev=2", "ops=0.5")).splitlines() == [
        "dev: weight 2", "ops: weight 0.5"]
    roles = table(ok(juggler(daemons, "roles")))
    assert roles["dev"] == ["dev", "2", "cpus:0.5;mem:100", "-", "-", "-"]
    assert roles["ops"] == ["ops", "0.5", "-", "-", "-", "-"]
    assert table(ok(juggler(daemons, "weights"))) == {"dev": ["dev", "2"], "ops": ["ops", "0.5"]}
    assert table(ok(juggler(daemons, "quota"))) == {"dev": ["dev", "cpus:0.5;mem:100", "-", "-"]}

    # Bad input: exit 2 with the reason, nothing changed.
    bad = juggler(daemons, "weights", "dev=0")
    assert bad.returncode == 2 and "weight '0' must be a positive number" in bad.stderr
    bad = juggler(daemons, "quota", "dev", "gpus:1")
    assert bad.returncode == 2 and "unknown resource 'gpus'" in bad.stderr
    assert table(ok(juggler(daemons, "roles")))["dev"][1:3] == ["2", "cpus:0.5;mem:100"]

    async def body() -> None:
        async with Client(daemons.master, "capped", roles=("dev",)) as client:
            # The limit caps the offer; disk, which it does not name, is not capped.
            first = await next_offer(client)
            assert first.role == "dev"
            # Ports, which quota does not count (as Mesos's), come with the offer.
            assert Resources.from_proto(first.resources) == Resources(
                {"cpus": 0.5, "mem": 100, "disk": 1024}, ports=Ranges.parse("[31000-32000]"))
            roles = table(ok(await asyncio.to_thread(juggler, daemons, "roles")))
            assert roles["dev"] == ["dev", "2", "cpus:0.5;mem:100", "-",
                                    "cpus:0.5;disk:1024;mem:100;ports:[31000-32000]",
                                    client.fw.framework_id]

            # Removing the limit: the rest of the agent is offered at once.
            assert ok(await asyncio.to_thread(juggler, daemons, "quota", "dev", "--remove")) \
                == "dev: quota removed\n"
            second = await next_offer(client)
            assert Resources.from_proto(second.resources).scalars() == Resources(
                {"cpus": 0.5, "mem": 412})
            assert table(ok(await asyncio.to_thread(juggler, daemons, "quota"))) == {}
    run(body)


def test_agent_attributes_show_in_agents_and_in_offers(daemons: Daemons) -> None:
    daemons.start_master()
    daemons.start_agent("a1", "--attributes", "rack:r1;zone:a", resources=AGENT)
    daemons.wait_agents(1)

    agents = table(ok(juggler(daemons, "agents")).replace("USED / TOTAL", "USED/TOTAL"))
    row = next(cells for cells in agents.values() if "a1" in cells)
    assert "rack:r1;zone:a" in row

    async def body() -> None:
        async with Client(daemons.master, "placer") as client:
            offer = await next_offer(client)
            assert offer.hostname == "a1"
            assert dict(offer.attributes) == {"rack": "r1", "zone": "a"}
    run(body)


@pytest.mark.parametrize(("attributes", "reason"), [
    ("rack", "attribute 'rack' is not NAME:VALUE"),
    ("rack:r1;rack:r2", "attribute 'rack' is given twice"),
    ("rack:r1;.zone:a", "attribute name '.zone' is not valid"),
    ("rack:", "attribute rack: value '' is not valid"),
])
def test_bad_attributes_stop_the_agent_with_exit_2(daemons: Daemons, attributes: str,
                                                   reason: str) -> None:
    daemons.start_agent("bad", "--attributes", attributes, master="127.0.0.1:1")
    proc = daemons.procs["bad"]
    wait_for(lambda: proc.poll() is not None, DEADLINE, what="the agent to exit")
    log = (daemons.work / "bad.log").read_text()
    assert proc.returncode == 2, log
    assert f"juggler agent: --attributes: {reason}" in log
