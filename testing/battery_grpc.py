"""The access battery's gRPC calls: one request builder per method of the
Scheduler, Operator, AgentChannel (the master's) and Agent services
(tests/integration/test_access_battery.py asserts that CALLS covers every
method the service descriptors name).

A builder takes the battery and the caller ("none", "other", "denied",
"allowed") and returns (service address, call): the call runs on a channel
and returns once the answer (the first message of a stream) came, or raises
grpc.RpcError. The refused callers act on the live objects (the setup
framework, its running task, agent a1), so that a refusal applied by mistake
would show in the state; where the allowed caller's call would disturb the
rest of the battery (kill the live task, drain its agent, tear down its
framework), it acts on something harmless instead (a made-up id, the spare
agent, a framework of its own): what its case shows is that authorization
let it through, whatever the call answers next (NOT_FOUND, INVALID_ARGUMENT…).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from juggler.testing.access_battery import PROBE, ROLE, Battery
from juggler.testing.waiting import wait_for
from juggler.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    common_pb2,
    operator_pb2,
    operator_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)

Call = Callable[[grpc.Channel], Any]
Builder = Callable[[Battery, str], tuple[str, Call]]


class Framework:
    """A framework subscribed as principal `allowed` (role battery), its
    Subscribe stream read on a thread."""

    def __init__(self, b: Battery, name: str = "battery-fw") -> None:
        self.channel = b.channel("allowed", b.d.master)
        self.stub = scheduler_pb2_grpc.SchedulerStub(self.channel)
        self.events: queue.Queue[Any] = queue.Queue()
        self.stream = self.stub.Subscribe(subscribe_request(name))
        first = next(self.stream)
        self.fid, self.sid = first.subscribed.framework_id, first.subscribed.stream_id
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        with contextlib.suppress(grpc.RpcError):
            for event in self.stream:
                self.events.put(event)

    def offer(self, agent_id: str) -> common_pb2.Offer:
        while True:
            event = self.events.get(timeout=60)
            if event.HasField("offers"):
                for offer in event.offers.offers:
                    if offer.agent_id == agent_id:
                        return offer

    def teardown(self) -> None:
        self.stub.Teardown(scheduler_pb2.TeardownRequest(framework_id=self.fid,
                                                         stream_id=self.sid), timeout=30)
        self.close()

    def close(self) -> None:
        self.stream.cancel()
        self.channel.close()


def subscribe_request(name: str) -> scheduler_pb2.SubscribeRequest:
    return scheduler_pb2.SubscribeRequest(framework=common_pb2.FrameworkInfo(
        name=name, user="root", roles=[ROLE]))


def launch_live_task(b: Battery, fw: Framework) -> None:
    """The setup framework's task on a1, running `sleep` on the host's
    filesystem after a line of output (what Logs and Attach read first)."""
    offer = fw.offer(b.agent_id)
    task = common_pb2.TaskInfo(
        name=b.task_id, task_id=b.task_id, agent_id=offer.agent_id,
        command=common_pb2.CommandInfo(argv=["sh", "-c", "echo battery; exec sleep 3600"]),
        resources=[common_pb2.Resource(name="cpus", scalar=0.1),
                   common_pb2.Resource(name="mem", scalar=32)])
    fw.stub.Accept(scheduler_pb2.AcceptRequest(
        framework_id=fw.fid, stream_id=fw.sid, offer_ids=[offer.id],
        operations=[scheduler_pb2.Operation(
            launch=scheduler_pb2.Operation.Launch(tasks=[task]))]), timeout=30)

    def running() -> bool:
        with b.channel("allowed", b.d.master) as ch:
            tasks = operator_pb2_grpc.OperatorStub(ch).GetTasks(
                operator_pb2.GetTasksRequest(), timeout=30).tasks
        return any(t.info.task_id == b.task_id and t.state == common_pb2.TASK_RUNNING
                   for t in tasks)

    wait_for(running, timeout=60, what="the live task to run (its executor's link works)")


def first(stream: Iterator[Any]) -> Any:
    """A server stream's first message (None when it ends at once)."""
    try:
        return next(stream)
    except StopIteration:
        return None
    finally:
        with contextlib.suppress(Exception):
            stream.cancel()  # type: ignore[attr-defined]


T = 30  # seconds: each call's deadline


# -- Scheduler ------------------------------------------------------------------------------

def _sched(fn: Callable[[Battery, str, scheduler_pb2_grpc.SchedulerStub], Any]) -> Builder:
    def build(b: Battery, who: str) -> tuple[str, Call]:
        return b.d.master, lambda ch: fn(b, who, scheduler_pb2_grpc.SchedulerStub(ch))
    return build


def _own_framework(b: Battery, stub: scheduler_pb2_grpc.SchedulerStub,
                   name: str) -> tuple[Any, Any]:
    """Subscribe a framework of the caller's: (its stream, its first event);
    raises the refusal."""
    stream = stub.Subscribe(subscribe_request(name), timeout=T)
    try:
        return stream, next(stream)
    except BaseException:
        stream.cancel()
        raise


def _subscribe(b: Battery, who: str, stub: scheduler_pb2_grpc.SchedulerStub) -> Any:
    stream, event = _own_framework(b, stub, b.fresh("sub"))
    try:
        if who == "allowed":  # a framework of its own: torn down again
            stub.Teardown(scheduler_pb2.TeardownRequest(
                framework_id=event.subscribed.framework_id,
                stream_id=event.subscribed.stream_id), timeout=T)
        return event
    finally:
        stream.cancel()


def _teardown(b: Battery, who: str, stub: scheduler_pb2_grpc.SchedulerStub) -> Any:
    if who != "allowed":   # the setup framework: refused, it keeps running
        return stub.Teardown(scheduler_pb2.TeardownRequest(framework_id=b.fid,
                                                           stream_id=b.sid), timeout=T)
    stream, event = _own_framework(b, stub, b.fresh("down"))
    try:
        return stub.Teardown(scheduler_pb2.TeardownRequest(
            framework_id=event.subscribed.framework_id,
            stream_id=event.subscribed.stream_id), timeout=T)
    finally:
        stream.cancel()


NO_OFFER = "battery-no-such-offer"
NO_TASK = "battery-no-such-task"

SCHEDULER: dict[str, Builder] = {
    "Subscribe": _sched(_subscribe),
    "Accept": _sched(lambda b, who, s: s.Accept(scheduler_pb2.AcceptRequest(
        framework_id=b.fid, stream_id=b.sid, offer_ids=[NO_OFFER]), timeout=T)),
    "Decline": _sched(lambda b, who, s: s.Decline(scheduler_pb2.DeclineRequest(
        framework_id=b.fid, stream_id=b.sid, offer_ids=[NO_OFFER]), timeout=T)),
    "Revive": _sched(lambda b, who, s: s.Revive(scheduler_pb2.ReviveRequest(
        framework_id=b.fid, stream_id=b.sid, roles=[ROLE]), timeout=T)),
    "Suppress": _sched(lambda b, who, s: s.Suppress(scheduler_pb2.SuppressRequest(
        framework_id=b.fid, stream_id=b.sid, roles=[ROLE]), timeout=T)),
    # The refused callers name the live task; the allowed one a made-up task.
    "Kill": _sched(lambda b, who, s: s.Kill(scheduler_pb2.KillRequest(
        framework_id=b.fid, stream_id=b.sid,
        task_id=NO_TASK if who == "allowed" else b.task_id), timeout=T)),
    "Acknowledge": _sched(lambda b, who, s: s.Acknowledge(scheduler_pb2.AcknowledgeRequest(
        framework_id=b.fid, stream_id=b.sid, agent_id=b.agent_id, task_id=b.task_id,
        uuid=bytes(16)), timeout=T)),
    "Reconcile": _sched(lambda b, who, s: s.Reconcile(scheduler_pb2.ReconcileRequest(
        framework_id=b.fid, stream_id=b.sid), timeout=T)),
    "Teardown": _sched(_teardown),
}


# -- Operator -------------------------------------------------------------------------------

def _op(fn: Callable[[Battery, str, operator_pb2_grpc.OperatorStub], Any]) -> Builder:
    def build(b: Battery, who: str) -> tuple[str, Call]:
        return b.d.master, lambda ch: fn(b, who, operator_pb2_grpc.OperatorStub(ch))
    return build


OPERATOR: dict[str, Builder] = {
    "GetState": _op(lambda b, w, s: s.GetState(operator_pb2.GetStateRequest(), timeout=T)),
    "GetAgents": _op(lambda b, w, s: s.GetAgents(operator_pb2.GetAgentsRequest(), timeout=T)),
    "GetFrameworks": _op(lambda b, w, s: s.GetFrameworks(operator_pb2.GetFrameworksRequest(),
                                                         timeout=T)),
    "GetTasks": _op(lambda b, w, s: s.GetTasks(operator_pb2.GetTasksRequest(), timeout=T)),
    "GetLeader": _op(lambda b, w, s: s.GetLeader(operator_pb2.GetLeaderRequest(), timeout=T)),
    "GetRoles": _op(lambda b, w, s: s.GetRoles(operator_pb2.GetRolesRequest(), timeout=T)),
    # Refused callers drain a1 (it runs the live task); the allowed one the spare.
    "DrainAgent": _op(lambda b, w, s: s.DrainAgent(operator_pb2.DrainAgentRequest(
        agent_id=b.spare_id if w == "allowed" else b.agent_id), timeout=T)),
    "UpAgent": _op(lambda b, w, s: s.UpAgent(operator_pb2.UpAgentRequest(
        agent_id=b.spare_id), timeout=T)),
    "UpdateWeights": _op(lambda b, w, s: s.UpdateWeights(operator_pb2.UpdateWeightsRequest(
        weights={ROLE: 2.0}), timeout=T)),
    "UpdateQuota": _op(lambda b, w, s: s.UpdateQuota(operator_pb2.UpdateQuotaRequest(
        role=ROLE, limit=[common_pb2.Resource(name="cpus", scalar=4)]), timeout=T)),
}


# -- the master's agent channel ---------------------------------------------------------------

def _connect(b: Battery, who: str) -> tuple[str, Call]:
    # Negative resources: a registration the master refuses (INVALID_ARGUMENT)
    # once the rules let it in, so that no agent is added.
    msg = agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
        agent=common_pb2.AgentInfo(hostname=PROBE, resources=[
            common_pb2.Resource(name="cpus", scalar=-1)])))
    return b.d.master, lambda ch: first(agent_pb2_grpc.AgentChannelStub(ch).Connect(
        iter([msg]), timeout=T))


AGENT_CHANNEL: dict[str, Builder] = {"Connect": _connect}


# -- Agent ----------------------------------------------------------------------------------

def _agent(fn: Callable[[Battery, str, agent_pb2_grpc.AgentStub], Any]) -> Builder:
    def build(b: Battery, who: str) -> tuple[str, Call]:
        return b.agent_api, lambda ch: fn(b, who, agent_pb2_grpc.AgentStub(ch))
    return build


def _exec(b: Battery, who: str, s: agent_pb2_grpc.AgentStub) -> Any:
    start = agent_pb2.ExecRequest(start=agent_pb2.ExecRequest.Start(
        task_id=b.task_id, framework_id=b.fid, argv=["echo", "exec"]))
    return first(s.Exec(iter([start]), timeout=T))


def _attach(b: Battery, who: str, s: agent_pb2_grpc.AgentStub) -> Any:
    # logs: the task's output so far ("battery") comes first.
    start = agent_pb2.AttachRequest(start=agent_pb2.AttachRequest.Start(
        task_id=b.task_id, framework_id=b.fid, logs=True))
    done = threading.Event()

    def requests() -> Iterator[agent_pb2.AttachRequest]:
        yield start
        done.wait(T)   # the stream's request side stays open while it is read

    try:
        return first(s.Attach(requests(), timeout=T))
    finally:
        done.set()


def _import(b: Battery, who: str, s: agent_pb2_grpc.AgentStub) -> Any:
    return s.ImportImage(iter([agent_pb2.ImportImageChunk(name="battery/none:1",
                                                          data=b"not a tar")]), timeout=T)


def _task(kind: Any) -> Any:
    return lambda b: kind(task_id=b.task_id, framework_id=b.fid)


UNREACHABLE = "127.0.0.1:9/battery/none"   # nothing listens on the discard port

AGENT: dict[str, Builder] = {
    "Logs": _agent(lambda b, w, s: first(s.Logs(_task(agent_pb2.LogsRequest)(b), timeout=T))),
    "Exec": _agent(_exec),
    "Attach": _agent(_attach),
    "GetState": _agent(lambda b, w, s: s.GetState(agent_pb2.GetAgentStateRequest(),
                                                  timeout=T)),
    "PullImage": _agent(lambda b, w, s: first(s.PullImage(agent_pb2.PullImageRequest(
        reference=f"{UNREACHABLE}:1"), timeout=T))),
    "ListImages": _agent(lambda b, w, s: s.ListImages(agent_pb2.ListImagesRequest(),
                                                      timeout=T)),
    "RemoveImage": _agent(lambda b, w, s: s.RemoveImage(agent_pb2.RemoveImageRequest(
        reference="battery/none:1"), timeout=T)),
    "ImportImage": _agent(_import),
    "ListTags": _agent(lambda b, w, s: s.ListTags(agent_pb2.ListTagsRequest(
        repository=UNREACHABLE), timeout=T)),
    "GetUsage": _agent(lambda b, w, s: s.GetUsage(_task(agent_pb2.GetUsageRequest)(b),
                                                  timeout=T)),
    # SIGCONT: the sleeping task carries on.
    "Signal": _agent(lambda b, w, s: s.Signal(agent_pb2.SignalRequest(
        task_id=b.task_id, framework_id=b.fid, signal="SIGCONT"), timeout=T)),
    "Top": _agent(lambda b, w, s: s.Top(_task(agent_pb2.TopRequest)(b), timeout=T)),
    "RemoveWritableLayer": _agent(lambda b, w, s: s.RemoveWritableLayer(
        agent_pb2.RemoveWritableLayerRequest(framework_id=b.fid, name="battery-none"),
        timeout=T)),
}

CALLS: dict[str, dict[str, Builder]] = {
    "juggler.v1.Scheduler": SCHEDULER,
    "juggler.v1.Operator": OPERATOR,
    "juggler.v1.AgentChannel": AGENT_CHANNEL,
    "juggler.v1.Agent": AGENT,
}
