"""Access rules on a real master and agent with mutual TLS (`--acls`, `--tls-*`).

One master and one agent for the module, certificates from common/tls.py made
here, a rules file written here. Every refusal is PERMISSION_DENIED, changes
nothing (the master's state is compared before and after) and shows in
juggler_access_denied_total{action} on the master's /metrics.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import signal
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from juggler.common import tls
from juggler.testing.daemons import Daemons
from juggler.testing.waiting import free_port, wait_for
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    operator_pb2,
    operator_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

HOSTS = ("127.0.0.1", "localhost")
ANY = {"type": "ANY"}


def rules(bob_roles: list[str]) -> dict[str, Any]:
    admin = {"values": ["admin"]}
    return {
        "register_agents": [{"principals": {"values": ["agent"]}, "agents": ANY}],
        "register_frameworks": [
            {"principals": {"values": ["alice"]}, "roles": {"values": ["web"]}},
            {"principals": {"values": ["bob"]}, "roles": {"values": bob_roles}},
            {"principals": admin, "roles": ANY}],
        "run_tasks": [{"principals": {"values": ["alice", "bob"]}, "users": {"values": ["root"]}}],
        "run_host_filesystem": [{"principals": {"type": "ANY"}, "roles": ANY}],
        "kill_tasks": [{"principals": admin, "framework_principals": ANY}],
        "teardown_frameworks": [{"principals": admin, "framework_principals": ANY}],
        "view_cluster": [{"principals": admin}],
        "drain_agents": [{"principals": admin, "agents": ANY}],
        "update_quotas": [{"principals": admin, "roles": ANY}],
        "update_weights": [{"principals": admin, "roles": ANY}],
        # None for alice: a framework's owner reads and opens sessions in its
        # own tasks without these (agent/api.py), as it kills them.
        "access_sandboxes": [{"principals": admin, "framework_principals": ANY}],
        "launch_nested_container_sessions": [{"principals": admin,
                                              "framework_principals": ANY}],
    }


class Cluster:
    def __init__(self, d: Daemons, certs: Path, acls: Path, metrics: int) -> None:
        self.d, self.certs, self.acls, self.metrics = d, certs, acls, metrics

    def cfg(self, principal: str) -> tls.TLSConfig:
        return tls.TLSConfig(self.certs / "ca.crt", self.certs / f"{principal}.crt",
                             self.certs / f"{principal}.key")

    def channel(self, principal: str) -> grpc.Channel:
        return grpc.secure_channel(self.d.master, tls.channel_credentials(self.cfg(principal)))

    def operator(self, principal: str = "admin") -> operator_pb2_grpc.OperatorStub:
        return operator_pb2_grpc.OperatorStub(self.channel(principal))

    def state(self) -> tuple[Any, ...]:
        """What a refusal must not change (offers come and go: left out)."""
        s = self.operator().GetState(operator_pb2.GetStateRequest(), timeout=10)
        return (sorted((a.info.id, a.info.hostname, a.state, a.maintenance) for a in s.agents),
                sorted((f.info.id, f.info.principal, tuple(f.info.roles), f.state)
                       for f in s.frameworks),
                sorted((t.info.task_id, t.framework_id, t.state) for t in s.tasks))

    def denied(self) -> dict[str, float]:
        """juggler_access_denied_total by action, from the master's /metrics."""
        ctx = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        ctx.load_cert_chain(str(self.certs / "admin.crt"), str(self.certs / "admin.key"))
        text = urllib.request.urlopen(f"https://127.0.0.1:{self.metrics}/metrics",
                                      context=ctx, timeout=10).read().decode()
        return {m[1]: float(m[2]) for m in re.finditer(
            r'^juggler_access_denied_total\{action="([^"]+)"\} (\S+)$', text, re.M)}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from tests.conftest import needs_root

    needs_root()
    work = tmp_path_factory.mktemp("access")
    certs = work / "certs"
    tls.make_ca(certs)
    for who in ("master", "agent", "admin", "alice", "bob", "rogue"):
        tls.issue(certs, who, HOSTS, certs)
    acls = work / "acls.json"
    acls.write_text(json.dumps(rules(["web"])))
    d = Daemons(work)
    admin = tls.TLSConfig(certs / "ca.crt", certs / "admin.crt", certs / "admin.key")
    previous = tls.current()
    tls.configure(admin)  # Daemons' own calls (GetLeader, GetAgents) are admin's
    metrics = free_port()
    try:
        def flags(who: str) -> tuple[str, ...]:
            cfg = tls.TLSConfig(certs / "ca.crt", certs / f"{who}.crt", certs / f"{who}.key")
            return (*cfg.flags(), "--acls", str(acls))

        d.start_master(*flags("master"), "--metrics-port", str(metrics),
                       "--allocation-interval", "0.2")
        d.start_agent("a1", *flags("agent"))
        d.wait_agents(1)
        yield Cluster(d, certs, acls, metrics)
    finally:
        try:
            d.close()
        finally:
            tls.configure(previous)


class Framework:
    """A framework on its own certificate: the Subscribe stream read on a thread."""

    def __init__(self, c: Cluster, principal: str, roles: tuple[str, ...] = ("web",),
                 claimed: str = "") -> None:
        self.channel = c.channel(principal)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.events: queue.Queue[Any] = queue.Queue()
        self.stream = self.stub.Subscribe(scheduler_pb2.SubscribeRequest(
            framework=common_pb2.FrameworkInfo(name=f"{principal}-fw", user="root",
                                               roles=roles, principal=claimed)))
        try:
            first = next(self.stream)  # raises the refusal
        except grpc.RpcError:
            self.channel.close()
            raise
        self.fid, self.sid = first.subscribed.framework_id, first.subscribed.stream_id
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for event in self.stream:
                self.events.put(event)

    def offer(self) -> common_pb2.Offer:
        while True:
            event = self.events.get(timeout=30)
            if event.HasField("offers") and event.offers.offers:
                return event.offers.offers[0]

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()


def refused(call: Any, *args: Any, **kwargs: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call(*args, **kwargs)
    return e.value


def test_a_rogue_agent_cannot_register_nor_a_client_without_a_certificate(
        cluster: Cluster) -> None:
    c = cluster
    before, counted = c.state(), c.denied().get("register_agents", 0.0)
    c.d.start_agent("rogue", "--tls-ca", str(c.certs / "ca.crt"),
                    "--tls-cert", str(c.certs / "rogue.crt"),
                    "--tls-key", str(c.certs / "rogue.key"))
    wait_for(lambda: c.denied().get("register_agents", 0.0) > counted, timeout=60,
             what="the rogue agent's registration to be refused")
    log = c.d.work / "rogue.log"
    wait_for(lambda: "permission denied" in log.read_text(), timeout=30,
             what="the rogue agent to log the refusal")
    assert "no register_agents rule allows principal 'rogue'" in log.read_text()
    assert c.state() == before
    c.d.stop("rogue")

    # No certificate: plain text and TLS without a client certificate are both refused.
    with grpc.insecure_channel(c.d.master) as plain:
        e = refused(operator_pb2_grpc.OperatorStub(plain).GetState,
                    operator_pb2.GetStateRequest(), timeout=5)
        assert e.code() == grpc.StatusCode.UNAVAILABLE
    anonymous = grpc.ssl_channel_credentials((c.certs / "ca.crt").read_bytes())
    with grpc.secure_channel(c.d.master, anonymous) as ch:
        connect = agent_pb2_grpc.AgentChannelStub(ch).Connect
        e = refused(lambda: list(connect(iter([agent_pb2.AgentMessage()]), timeout=5)))
        assert e.code() == grpc.StatusCode.UNAVAILABLE
    assert c.state() == before


def test_principals_and_roles_of_frameworks(cluster: Cluster) -> None:
    c = cluster
    before, counted = c.state(), c.denied()
    e = refused(Framework, c, "bob", roles=("db",))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == ("permission denied: no register_frameworks rule allows principal "
                           "'bob' for role 'db' (rule permissive: false)")
    e = refused(Framework, c, "alice", claimed="admin")
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "names principal 'admin' but the caller has principal 'alice'" in e.details()
    assert refused(Framework, c, "rogue").code() == grpc.StatusCode.PERMISSION_DENIED
    # view_cluster: admin only.
    e = refused(c.operator("bob").GetTasks, operator_pb2.GetTasksRequest(), timeout=10)
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert c.state() == before
    after = c.denied()
    assert after.get("register_frameworks", 0) == counted.get("register_frameworks", 0) + 3
    assert after.get("view_cluster", 0) == counted.get("view_cluster", 0) + 1


def test_a_framework_cannot_kill_another_principals_task(cluster: Cluster) -> None:
    c = cluster
    alice = Framework(c, "alice")
    bob: Framework | None = None
    try:
        # Bob subscribes once alice holds the agent's only offer: two frameworks
        # with nothing allocated tie under DRF, the offer could go to bob, who
        # never declines it, and alice would wait for ever (seen under load).
        offer = alice.offer()
        bob = Framework(c, "bob")
        task = common_pb2.TaskInfo(
            name="sleeper", task_id="sleeper", agent_id=offer.agent_id,
            command=common_pb2.CommandInfo(argv=["sleep", "300"]),
            resources=[common_pb2.Resource(name="cpus", scalar=0.1),
                       common_pb2.Resource(name="mem", scalar=32)])

        def accept(*tasks: common_pb2.TaskInfo) -> None:
            alice.stub.Accept(scheduler_pb2.AcceptRequest(
                framework_id=alice.fid, stream_id=alice.sid, offer_ids=[offer.id],
                operations=[scheduler_pb2.Operation(
                    launch=scheduler_pb2.Operation.Launch(tasks=list(tasks)))]), timeout=10)

        # No run_host_network rule: the whole Accept is refused, the offer stays usable.
        host = common_pb2.TaskInfo()
        host.CopyFrom(task)
        host.task_id = "on-host-network"
        host.container.network = common_pb2.NETWORK_HOST
        e = refused(accept, task, host)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no run_host_network rule allows principal 'alice' for role 'web'" in e.details()
        accept(task)

        def running() -> bool:
            tasks = c.operator().GetTasks(operator_pb2.GetTasksRequest(), timeout=10).tasks
            return any(t.info.task_id == "sleeper" and t.state == common_pb2.TASK_RUNNING
                       for t in tasks)

        wait_for(running, timeout=60, what="alice's task to run")
        before, counted = c.state(), c.denied()
        # Bob, even holding alice's stream id, kills nor tears down nothing of hers.
        e = refused(bob.stub.Kill, scheduler_pb2.KillRequest(
            framework_id=alice.fid, stream_id=alice.sid, task_id="sleeper"), timeout=10)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.details() == ("permission denied: no kill_tasks rule allows principal 'bob' "
                               "for framework principal 'alice' (rule permissive: false)")
        e = refused(bob.stub.Teardown, scheduler_pb2.TeardownRequest(
            framework_id=alice.fid, stream_id=alice.sid), timeout=10)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        e = refused(bob.stub.Reconcile, scheduler_pb2.ReconcileRequest(
            framework_id=alice.fid, stream_id=alice.sid), timeout=10)
        assert "rule framework principal" in e.details()
        # Nor may bob drain the agent, nor read alice's task's output on the agent.
        agent_id = c.state()[0][0][0]
        e = refused(c.operator("bob").DrainAgent,
                    operator_pb2.DrainAgentRequest(agent_id=agent_id), timeout=10)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        address = next(a.info.address for a in c.operator().GetAgents(
            operator_pb2.GetAgentsRequest(), timeout=10).agents)
        logs = agent_pb2.LogsRequest(framework_id=alice.fid, task_id="sleeper")
        for who, allowed in (("bob", False), ("alice", True)):
            with grpc.secure_channel(address, tls.channel_credentials(c.cfg(who))) as ch:
                stub = agent_pb2_grpc.AgentStub(ch)
                if allowed:
                    list(stub.Logs(logs, timeout=10))
                else:
                    e = refused(lambda stub=stub: list(stub.Logs(logs, timeout=10)))
                    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "no access_sandboxes rule allows principal 'bob' for framework " \
                           "principal 'alice'" in e.details()
        # Alice, the owner, may exec in her task (no launch_nested_container_sessions
        # rule names her), but only as a user run_tasks lets her run as.
        def exec_as(user: str) -> list[Any]:
            start = agent_pb2.ExecRequest.Start(task_id="sleeper", framework_id=alice.fid,
                                                argv=["true"], user=user)
            with grpc.secure_channel(address, tls.channel_credentials(c.cfg("alice"))) as ch:
                return list(agent_pb2_grpc.AgentStub(ch).Exec(
                    iter([agent_pb2.ExecRequest(start=start)]), timeout=20))

        e = refused(exec_as, "nobody")
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no run_tasks rule allows principal 'alice' for user 'nobody'" in e.details()
        assert exec_as("")[-1].exit_code == 0   # the task's own user: root, allowed
        assert c.state() == before
        assert running()
        after = c.denied()
        assert after.get("kill_tasks", 0) == counted.get("kill_tasks", 0) + 1
        assert after.get("teardown_frameworks", 0) == counted.get("teardown_frameworks", 0) + 1
        assert after.get("framework_owner", 0) == counted.get("framework_owner", 0) + 1
        assert after.get("drain_agents", 0) == counted.get("drain_agents", 0) + 1
        # Alice kills its own.
        alice.stub.Kill(scheduler_pb2.KillRequest(framework_id=alice.fid, stream_id=alice.sid,
                                                  task_id="sleeper"), timeout=10)
        wait_for(lambda: not running(), timeout=60, what="alice's task to be killed")
    finally:
        alice.close()
        if bob is not None:
            bob.close()


def test_sighup_reloads_the_rules(cluster: Cluster) -> None:
    c = cluster
    assert refused(Framework, c, "bob", roles=("db",)).code() == \
        grpc.StatusCode.PERMISSION_DENIED
    try:
        c.acls.write_text("{not json nor: [yaml")  # a bad file: the old rules stay
        c.d.send("master", signal.SIGHUP)
        wait_for(lambda: "access rules not reloaded" in (c.d.work / "master.log").read_text(),
                 timeout=30, what="the master to refuse the bad rules file")
        assert refused(Framework, c, "bob", roles=("db",)).code() == \
            grpc.StatusCode.PERMISSION_DENIED
        c.acls.write_text(json.dumps(rules(["web", "db"])))
        c.d.send("master", signal.SIGHUP)

        def subscribed() -> Framework | None:
            try:
                return Framework(c, "bob", roles=("db",))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED
                return None

        wait_for(subscribed, timeout=30, what="bob to be let in for role db").close()
        # The agent reloads its rules too (and lives on: SIGHUP would end it otherwise).
        c.d.send("a1", signal.SIGHUP)
        wait_for(lambda: "access rules reloaded" in (c.d.work / "a1.log").read_text(),
                 timeout=30, what="the agent to reload its rules")
        assert c.d.procs["a1"].poll() is None
    finally:
        c.acls.write_text(json.dumps(rules(["web"])))
        c.d.send("master", signal.SIGHUP)
