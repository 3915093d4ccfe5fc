"""The agent's pool of pre-attached namespaces for its built-in bridge
network (agent/network_pool.py), through a real master and agent (root):
bridge containers start on the pool's entries (their addresses, their CNI
container ids; portmap chained on the entry's result for a published port,
which answers), the pool refills, killed containers leave nothing, and a
stopped agent leaves no pool entry behind.

Bridge h7jbr0 and subnet 10.199.77.0/24 are this file's own.
"""

from __future__ import annotations

from pathlib import Path

from juggler.agent.network_pool import POOL_DIR
from juggler.common.resources import Resources
from juggler.container import cni_config, network
from juggler.testing.daemons import Daemons
from juggler.v1 import common_pb2
from tests.framework_client import Client, run
from tests.integration.test_cni_network import (
    HTTPD,
    _answers,
    addresses_of,
    bridge_task,
    get,
    host_address,
    host_state,
    needs_cni,
    own_bridge,
    pool_entries,
    web_rootfs,
)
from tests.integration.test_master_contract import DEADLINE, wait_async

S = common_pb2.TaskState
EMPTY = {"veths": [], "leases": [], "pins": [], "rules": []}


@needs_cni
def test_bridge_containers_start_on_pool_entries_and_the_pool_refills(
        daemons: Daemons, tmp_path: Path) -> None:
    bridge, subnet, size = "h7jbr0", "10.199.77.0/24", 2
    rootfs = web_rootfs(tmp_path / "rootfs")
    networks_dir = daemons.work / "a1" / "networks"
    with own_bridge(bridge, subnet, networks_dir):
        daemons.start_master()
        daemons.start_agent("a1", "--bridge-subnet", subnet, "--bridge-name", bridge,
                            "--bridge-pool-size", str(size),
                            resources="cpus:2;mem:1024;disk:1024;ports:[30370-30379]")
        daemons.wait_agents(1)
        web = host_address()

        async def body() -> None:
            async with Client(daemons.master, "pool") as c:
                # The first bridge launch starts the pool.
                first = bridge_task("first", rootfs, "exec sleep 1000")
                await c.fw.launch([(await c.offer(Resources.parse("cpus:0.05;mem:32"))).id],
                                  [first])
                await c.until("first", S.TASK_RUNNING)
                ready = {e.attachment.container_id: e.attachment.result
                         for e in pool_entries(networks_dir, size)}
                pool_ips = {ip: cid for cid, result in ready.items()
                            for ip in cni_config.ip_addresses(result or {})}
                # Two at once: one plain, one publishing a port (portmap chained
                # on the entry's result). Each takes its own entry.
                plain = bridge_task("plain", rootfs, "exec sleep 1000")
                published = bridge_task("published", rootfs, HTTPD, (30377, 80))
                await c.fw.launch([(await c.offer(Resources.parse(
                    "cpus:0.1;mem:64;ports:[30377]"))).id], [plain, published])
                taken = {}
                for task in ("plain", "published"):
                    running = (await c.until(task, S.TASK_RUNNING))[-1]
                    [ip] = addresses_of(running, networks_dir)
                    assert ip in pool_ips, (ip, pool_ips)
                    taken[task] = pool_ips[ip]
                    # The container's attachment keeps the entry's CNI container id.
                    assert (networks_dir / pool_ips[ip] / network.PIN).exists()
                assert sorted(taken.values()) == sorted(ready)
                await wait_async(lambda: _answers(f"http://{web}:30377/"), DEADLINE,
                                 "the published port to answer")
                assert "hello from a bridge container" in get(f"http://{web}:30377/")
                for task in ("first", "plain", "published"):
                    await c.fw.kill(task)
                for task in ("first", "plain", "published"):
                    await c.until(task, S.TASK_KILLED)
                # Refilled with new entries; nothing of the containers is left.
                assert host_state(bridge, subnet, networks_dir, list(ready),
                                  pool=size) == EMPTY
                refilled = {e.attachment.container_id for e in pool_entries(networks_dir, size)}
                assert not refilled & set(ready)

        run(body)
        # The agent stops: its pool goes with it.
        daemons.stop("a1")
        assert not list((networks_dir.parent / POOL_DIR).iterdir())
        assert host_state(bridge, subnet, networks_dir, [], pool=0) == EMPTY
