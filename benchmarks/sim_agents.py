"""Simulated agents: many clients of the real AgentChannel.Connect protocol in one process.

Each simulated agent keeps one Connect stream open to the master, as agent/server.py does:
it sends `register` (no id, so the master assigns one), answers every `heartbeat` ping, and
on `run_task` at once sends a TASK_RUNNING `status_update` (source AGENT, a fresh uuid). It
launches nothing and retries nothing; an `acknowledgement` needs no answer (the task stays
RUNNING). Streams share a few HTTP/2 connections (--streams-per-channel).

    python benchmarks/sim_agents.py --master HOST:PORT --agents N [--resources "cpus:8;mem:32768"]

Reports on stdout, one JSON object a line: {"registered": n, "running": n, "errors": n} when
registration completes and then every --report-interval seconds. Exits when stdin closes (its
parent is gone), on SIGTERM or SIGINT; it is benchmarks/master_throughput.py's helper.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
import uuid

import grpc

from juggler.common import servers
from juggler.common.resources import Resources
from juggler.v1 import agent_pb2, agent_pb2_grpc, common_pb2

SIM_VERSION = "0.1.0-sim"
_HEARTBEAT = agent_pb2.AgentMessage(heartbeat=agent_pb2.AgentMessage.Heartbeat())


class Counts:
    def __init__(self) -> None:
        self.registered = 0
        self.running = 0  # RUNNING updates sent
        self.acked = 0
        self.errors = 0
        self.last_error = ""

    def report(self) -> dict[str, object]:
        out: dict[str, object] = {"registered": self.registered, "running": self.running,
                                  "acked": self.acked, "errors": self.errors}
        if self.last_error:
            out["last_error"] = self.last_error
        return out


async def sim_agent(index: int, stub: agent_pb2_grpc.AgentChannelStub,
                    resources: list[common_pb2.Resource], counts: Counts) -> None:
    outbox: asyncio.Queue[agent_pb2.AgentMessage] = asyncio.Queue()
    outbox.put_nowait(agent_pb2.AgentMessage(register=agent_pb2.AgentMessage.Register(
        agent=common_pb2.AgentInfo(hostname=f"sim-{index:06d}", resources=resources,
                                   address=f"127.0.0.1:{10000 + index % 50000}"),
        version=SIM_VERSION)))

    async def outgoing():  # type: ignore[no-untyped-def]
        while True:
            yield await outbox.get()

    call = stub.Connect(outgoing())
    agent_id = ""
    try:
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF:
                counts.errors += 1
                counts.last_error = f"sim-{index}: the master ended the stream"
                return
            kind = msg.WhichOneof("message")
            if kind == "run_task":
                task = msg.run_task.task
                outbox.put_nowait(agent_pb2.AgentMessage(
                    status_update=agent_pb2.AgentMessage.StatusUpdate(
                        status=common_pb2.TaskStatus(
                            task_id=task.task_id, state=common_pb2.TASK_RUNNING,
                            source=common_pb2.SOURCE_AGENT, agent_id=agent_id,
                            framework_id=msg.run_task.framework.id, uuid=uuid.uuid4().bytes,
                            timestamp=time.time()))))
                counts.running += 1
            elif kind == "acknowledgement":
                counts.acked += 1
            elif kind == "heartbeat":
                outbox.put_nowait(_HEARTBEAT)
            elif kind == "registered":
                agent_id = msg.registered.agent_id
                counts.registered += 1
            elif kind == "shutdown":
                counts.errors += 1
                counts.last_error = f"sim-{index}: shutdown: {msg.shutdown.message}"
                return
            # kill_task: the task "keeps running"; nothing to do in this benchmark.
    except grpc.aio.AioRpcError as e:
        counts.errors += 1
        counts.last_error = f"sim-{index}: {e.code().name}: {e.details()}"
    finally:
        call.cancel()


async def run(args: argparse.Namespace) -> None:
    resources = Resources.parse(args.resources).to_proto()
    counts = Counts()
    channels = []
    agents = []
    per = max(1, args.streams_per_channel)
    for first in range(0, args.agents, per):
        # A local subchannel pool gives each channel its own TCP connection.
        ch = grpc.aio.insecure_channel(
            args.master, options=[*servers.OPTIONS, ("grpc.use_local_subchannel_pool", 1)])
        channels.append(ch)
        stub = agent_pb2_grpc.AgentChannelStub(ch)
        for i in range(first, min(first + per, args.agents)):
            agents.append(asyncio.create_task(sim_agent(i, stub, resources, counts)))

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The parent holds our stdin open; EOF means it is gone.
    with contextlib.suppress(Exception):
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

        async def watch_stdin() -> None:
            await reader.read()
            stop.set()
        asyncio.get_running_loop().create_task(watch_stdin())

    def emit() -> None:
        print(json.dumps(counts.report()), flush=True)

    async def reporter() -> None:
        announced = False
        while True:
            await asyncio.sleep(0.05 if not announced else args.report_interval)
            if not announced and counts.registered < args.agents:
                continue
            announced = True
            emit()

    rep = asyncio.create_task(reporter())
    await stop.wait()
    rep.cancel()
    for t in agents:
        t.cancel()
    await asyncio.gather(*agents, return_exceptions=True)
    for ch in channels:
        await ch.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--master", required=True, help="host:port of the master")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--resources", default="cpus:8;mem:32768")
    p.add_argument("--streams-per-channel", type=int, default=100)
    p.add_argument("--report-interval", type=float, default=0.5)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()
