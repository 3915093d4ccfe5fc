"""A scale-down whose Kills never reached the master is still seen through
(fault campaign seed 920191668: an apps leader's Kills failed while the master
failed over; every later apps leader recovered those instances as "kill
requested", never sent the Kill again, and the app ran more instances than its
count for good: its scale-down never ended, DELETE did not kill them).

Real processes: a master, an agent, the apps service (embedded store)."""

from __future__ import annotations

import signal

from juggler.testing.daemons import Daemons
from juggler.testing.processes import marker, processes_with
from juggler.testing.waiting import free_port, wait_for
from tests.integration.test_apps import (
    DEADLINE,
    api,
    app_of,
    definition,
    get,
    leading,
    running,
)


def test_kills_that_failed_while_the_master_was_down_are_sent_by_the_next_apps_leader(
        daemons: Daemons) -> None:
    """3 instances; kill -9 the master; scale to 1 (the apps service records
    the two kills, its Kill calls fail); kill -9 the apps service; the master
    comes back (its registry: the agent and the tasks), then the apps service:
    it kills the two, the deployment ends, one instance runs; DELETE kills it."""
    port = free_port()
    daemons.start_master(port=port)
    daemons.start_agent("host-1", resources="cpus:2;mem:1024;disk:1024")
    daemons.wait_agents(1)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service to lead")
    seconds = marker()
    status, body = api(url, "POST", "/v2/apps", definition("/lost", seconds, 3))
    assert status == 201, body
    wait_for(lambda: len(running(url, "/lost")) == 3 and not get(url, "/v2/deployments"),
             DEADLINE, what="3 instances running")
    assert len(processes_with(f"sleep {seconds}")) == 3

    daemons.stop("master", signal.SIGKILL)
    status, body = api(url, "PUT", "/v2/apps/lost?force=true",
                       definition("/lost", seconds, 1))
    assert status == 200, body   # recorded; its Kills found no master
    daemons.stop("apps", signal.SIGKILL)
    assert len(processes_with(f"sleep {seconds}")) == 3, "nothing killed yet"

    daemons.start_master(port=port)
    url = daemons.start_apps()
    wait_for(lambda: leading(url), DEADLINE, what="the apps service back")
    wait_for(lambda: len(processes_with(f"sleep {seconds}")) == 1, DEADLINE,
             what="the two extra instances killed")
    wait_for(lambda: not get(url, "/v2/deployments"), DEADLINE,
             what="the scale-down to end")
    wait_for(lambda: len(app_of(url, "/lost")["tasks"]) == 1, DEADLINE,
             what="one instance known")
    assert len(running(url, "/lost")) == 1

    status, body = api(url, "DELETE", "/v2/apps/lost?force=true")
    assert status == 200, body
    wait_for(lambda: not processes_with(f"sleep {seconds}"), DEADLINE,
             what="DELETE to kill every instance")
