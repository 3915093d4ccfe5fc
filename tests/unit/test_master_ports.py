"""Host ports through the master: offered with the agent, refused when not in the offer,
one task per port on an agent, and back in the pool when the task, the agent or the
framework goes."""

from __future__ import annotations

from juggler.common.ranges import Ranges
from juggler.common.resources import Resources
from juggler.master.commands import Code
from juggler.v1 import agent_pb2, common_pb2
from tests.unit.test_master_state import World, launch_op, refused, task, to_agent, updates

S = common_pb2.TaskState
AGENT = Resources.parse("cpus:4;mem:4096;ports:[31000-31002]")


def port_task(task_id: str, *ports: int) -> common_pb2.TaskInfo:
    """A host-network task holding `ports` (cpus 1, mem 128), each published as itself."""
    t = task(task_id, container=common_pb2.ContainerInfo(
        network=common_pb2.NETWORK_HOST,
        port_mappings=[common_pb2.PortMapping(host_port=p, container_port=p) for p in ports]))
    t.resources.extend(Resources(ports=Ranges.single(*ports)).to_proto())
    return t


def offer_ports(offer: common_pb2.Offer) -> Ranges:
    return Resources.from_proto(offer.resources).ports


def setup() -> tuple[World, str, str, str]:
    w = World()
    aid = w.agent(total=AGENT)
    fid, sid = w.framework()
    return w, fid, sid, aid


def test_an_offer_carries_the_agent_s_ports_with_their_role():
    w, fid, _, _ = setup()
    offer = w.one_offer(fid)
    assert Resources.from_proto(offer.resources) == AGENT
    [ports] = [r for r in offer.resources if r.name == "ports"]
    assert ports.role == "*" and ports.scalar == 0


def test_accept_refuses_a_port_not_in_the_offer_and_names_it():
    w, fid, sid, _ = setup()
    offer = w.one_offer(fid)
    err = refused(w, Code.INVALID_ARGUMENT, w.state.accept, fid, sid, [offer.id],
                  [launch_op(port_task("web", 8080))], None)
    assert "ports [8080] are not in the offers" in err.message
    assert "ports [31000-31002]" in err.message  # what the offer does hold
    assert offer.id in w.state.offers  # still valid


def test_two_tasks_of_one_accept_cannot_share_a_port():
    w, fid, sid, _ = setup()
    offer = w.one_offer(fid)
    err = refused(w, Code.INVALID_ARGUMENT, w.state.accept, fid, sid, [offer.id],
                  [launch_op(port_task("a", 31001), port_task("b", 31001))], None)
    assert "task b: ports [31001] are asked for by another task" in err.message


def test_a_port_is_one_task_s_until_that_task_ends():
    w, fid, sid, aid = setup()
    commands = w.launch(fid, sid, w.one_offer(fid), port_task("a", 31001))
    [run] = to_agent(commands, aid, "run_task")  # the agent is told which port is a's
    assert Resources.from_proto(run.task.resources).ports == Ranges.single(31001)
    # The rest of the agent is offered again, without 31001.
    offer = w.one_offer(fid)
    assert offer_ports(offer) == Ranges.parse("[31000,31002]")
    err = refused(w, Code.INVALID_ARGUMENT, w.state.accept, fid, sid, [offer.id],
                  [launch_op(port_task("b", 31001))], None)
    assert "ports [31001] are not in the offers" in err.message
    # Another free port is fine at the same time.
    w.launch(fid, sid, offer, port_task("c", 31002))
    # a ends: its port is offered again, and b gets it.
    w.update(aid, fid, "a", S.TASK_RUNNING, b"u1")
    w.update(aid, fid, "a", S.TASK_FINISHED, b"u2")
    offer = w.one_offer(fid)
    assert offer_ports(offer) == Ranges.parse("[31000-31001]")
    w.launch(fid, sid, offer, port_task("b", 31001))
    assert w.state.tasks[(fid, "b")].resources.ports == Ranges.single(31001)


def test_a_removed_framework_s_ports_return_when_its_tasks_end():
    w, fid, sid, aid = setup()
    w.launch(fid, sid, w.one_offer(fid), port_task("a", 31000))
    w.state.framework_disconnected(fid, sid)  # no failover timeout: removed, a killed
    assert 31000 not in w.state.allocator.available(aid).ports
    w.update(aid, fid, "a", S.TASK_KILLED, b"u1")
    assert w.state.allocator.available(aid) == AGENT
    fid2, _ = w.framework("other")
    assert offer_ports(w.one_offer(fid2)) == Ranges.parse("[31000-31002]")


def _running(w: World, aid: str, fid: str, *tasks: common_pb2.TaskInfo) -> tuple:
    fw = w.state.frameworks[fid].info
    running = []
    for t in tasks:
        t = common_pb2.TaskInfo().FromString(t.SerializeToString())
        t.agent_id = aid
        running.append(agent_pb2.AgentMessage.RunningTask(task=t, framework=fw))
    statuses = [common_pb2.TaskStatus(task_id=t.task_id, framework_id=fid, agent_id=aid,
                                      state=S.TASK_RUNNING, uuid=b"r" + t.task_id.encode())
                for t in tasks]
    return statuses, running


def test_a_re_registering_agent_books_the_ports_its_tasks_use():
    w, fid, sid, aid = setup()
    w.launch(fid, sid, w.one_offer(fid), port_task("a", 31002))
    info = w.state.agents.get(aid).info
    w.state.reregister_agent(info, *_running(w, aid, fid, w.state.tasks[(fid, "a")].info))
    w.state.validate_state()
    assert w.state.allocator.available(aid).ports == Ranges.parse("[31000-31001]")


def test_re_registration_with_ports_outside_the_agent_or_shared_is_refused():
    w, fid, sid, aid = setup()
    w.launch(fid, sid, w.one_offer(fid), port_task("a", 31002))
    info = common_pb2.AgentInfo()
    info.CopyFrom(w.state.agents.get(aid).info)
    a = w.state.tasks[(fid, "a")].info
    # Restarted with fewer ports than its task uses.
    del info.resources[:]
    info.resources.extend(Resources.parse("cpus:4;mem:4096;ports:[31000-31001]").to_proto())
    err = refused(w, Code.FAILED_PRECONDITION, w.state.reregister_agent, info,
                  *_running(w, aid, fid, a))
    assert "ports [31002]" in err.message and "--resources" in err.message
    # Two tasks reporting the same port.
    info.CopyFrom(w.state.agents.get(aid).info)
    twin = common_pb2.TaskInfo()
    twin.CopyFrom(a)
    twin.task_id = "twin"
    err = refused(w, Code.FAILED_PRECONDITION, w.state.reregister_agent, info,
                  *_running(w, aid, fid, a, twin))
    assert "share host ports ([31002])" in err.message


def test_a_task_s_update_still_flows_with_ports():
    w, fid, sid, aid = setup()
    w.launch(fid, sid, w.one_offer(fid), port_task("a", 31000, 31001))
    got = updates(w.update(aid, fid, "a", S.TASK_RUNNING, b"u1"), fid)
    assert [u.state for u in got] == [S.TASK_RUNNING]
