"""A launch lost on its way to the agent (its stream broke before the agent
read it), then the agent unreachable and back: the master's record of the task
never went past STAGING but for its own UNREACHABLE, so the agent that comes
back without it never started it: TASK_DROPPED ("it never started"), which a
framework may launch again, not TASK_GONE (the task was lost with its agent).
Found by the fault campaign (seed 20261202, 3 hosts): a container's run lost
so was marked "dead, its writable layer gone" though its agent and layer were
back, and every later start was refused."""

from __future__ import annotations

from juggler.testing.cluster import Cluster, sleep_task
from juggler.v1 import common_pb2, scheduler_pb2

S = common_pb2.TaskState


def test_a_launch_the_agent_never_got_is_dropped_when_the_agent_comes_back() -> None:
    cluster = Cluster(["a1"], agent_ping_timeout=2, max_agent_ping_timeouts=3,
                      agent_reregister_timeout=20)
    fw = cluster.framework("f", failover_timeout=30, partition_aware=True)
    cluster.settle(allocate=True)
    offer_id = next(iter(fw.offers))
    fw.offers.clear()
    commands = cluster.master.accept(
        fw.framework_id, fw.stream_id, [offer_id], [scheduler_pb2.Operation(
            launch=scheduler_pb2.Operation.Launch(tasks=[sleep_task("t")]))],
        common_pb2.Filters(refuse_seconds=0))
    cluster._master_commands(commands)
    a1 = cluster.agent("a1")
    assert a1.inbox, "the launch is on its way"
    a1.inbox.clear()   # lost with the stream
    a1.cut()
    cluster.advance(10)
    assert fw.latest("t") == S.TASK_UNREACHABLE
    cluster.heal()
    cluster.advance(2)
    assert fw.latest("t") == S.TASK_DROPPED
    assert [u.message for u in fw.updates if u.task_id == "t"][-1].endswith(
        "it never started")
    assert not cluster.executor_alive("t")
