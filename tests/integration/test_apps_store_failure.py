"""A request whose decision the apps service cannot write to its store is
refused with 503 and not applied: the service stops acting and starts over
from the store, so what it acts on is always what the store holds (the fault
campaign's seed 4 ended with a container exited that its user had last
started: a decision kept in memory only is lost with its leader).

Real processes: a master, an agent, the apps service on a one-member etcd
that is killed (connection refused: the write cannot have been applied) and
started again on its data dir."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from juggler.testing.daemons import Daemons
from juggler.testing.etcd_server import EtcdNotInstalled, etcd_binary, etcd_cluster
from juggler.testing.processes import marker, processes_with
from juggler.testing.rootfs import make_busybox_rootfs
from juggler.testing.waiting import free_port, wait_for
from tests.integration.test_containers import DEADLINE, api, inspect, leading, run


@pytest.fixture(name="etcd1")
def etcd1_fixture(tmp_path: Path) -> Any:
    try:
        etcd_binary()
    except EtcdNotInstalled as e:
        pytest.skip(str(e))
    with etcd_cluster(tmp_path / "etcd", members=1) as cluster:
        yield cluster.members[0]


def test_a_start_the_store_did_not_take_is_refused_and_not_applied(
        daemons: Daemons, etcd1: Any, tmp_path: Path) -> None:
    rootfs = make_busybox_rootfs(tmp_path / "rootfs")
    daemons.start_master()
    daemons.start_agent("host-1", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    port = free_port()   # the same URL after the service starts over
    url = daemons.start_apps("--etcd", etcd1.endpoint, "--etcd-prefix", f"/sf-{port}/",
                             "--lease-ttl", "2", "--http-port", str(port))
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
    seconds = marker()
    run(url, "kept", rootfs, ["sleep", str(seconds)])
    wait_for(lambda: inspect(url, "kept")["State"]["Running"], DEADLINE, what="kept to run")
    assert api(url, "POST", "/containers/kept/stop?t=0")[0] == 204
    assert inspect(url, "kept")["State"]["Status"] == "exited"

    etcd1.process.kill()
    etcd1.process.wait()
    status, body = api(url, "POST", "/containers/kept/start")
    assert status == 503, body
    assert "could not record this in its store for certain" in body["message"], body
    assert not processes_with(f"sleep {seconds}"), "started though not recorded"

    etcd1.restart()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead again")
    assert inspect(url, "kept")["State"]["Status"] == "exited"
    assert not processes_with(f"sleep {seconds}")
    assert api(url, "POST", "/containers/kept/start")[0] == 204   # asked again: it runs
    assert inspect(url, "kept")["State"]["Running"]
    assert len(processes_with(f"sleep {seconds}")) == 1
