"""The paced framework of benchmarks/master_throughput.py --rate R: it launches
R tasks/s whatever the offers, and records each task's Accept→RUNNING latency
(the latency under load of issue 19; Kubernetes' pod-startup SLO, p99 ≤ 5 s,
is the field's yardstick)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import grpc

from juggler.common.resources import Resources
from juggler.sdk import Framework, FrameworkError
from juggler.v1 import common_pb2, scheduler_pb2

TASK = Resources({"cpus": 0.1, "mem": 32})   # every benchmark task's


class Paced:
    """Launches `rate` tasks/s for `duration` s, whatever the offers; records Accept→RUNNING.

    Offers are held (never declined) in a pool, oldest first. Every `tick` seconds the tasks
    due by then (rate × elapsed, minus those launched) are launched with one Accept per offer
    they need, refuse_seconds 0 so the rest of the offer comes back at the next allocation.
    Each task is `sleep task_seconds` (sim_agents.py finishes it then), so capacity stays free.
    `behind` counts ticks that could not launch all that was due (no offer held)."""

    def __init__(self, fw: Framework, rate: float, duration: float, task_seconds: float,
                 tick: float = 0.01) -> None:
        self.fw = fw
        self.rate = rate
        self.duration = duration
        self.task_seconds = task_seconds
        self.tick = tick
        self.pool: dict[str, tuple[str, int]] = {}  # offer id -> (agent id, tasks it fits)
        self.seq = 0
        self.launched = 0
        self.accepts = 0
        self.behind = 0
        self.start = 0.0
        self.last_accept = 0.0
        self.accepted_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.samples: list[tuple[float, float]] = []  # (Accept at, s after start; latency)
        self.running = 0
        self.finished = 0
        self.failures: list[str] = []
        self.failed = asyncio.Event()
        self._pending: set[asyncio.Task[None]] = set()
        self.acks_sent = 0
        self.acks_done = 0

    def _spawn(self, coro: Any) -> None:
        t = asyncio.get_running_loop().create_task(coro)
        self._pending.add(t)
        t.add_done_callback(self._pending.discard)

    async def stop(self) -> None:
        """Cancel the calls still under way (acknowledgements of late updates)."""
        pending = list(self._pending)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def _fail(self, message: str) -> None:
        self.failures.append(message)
        self.failed.set()

    async def events(self) -> None:
        try:
            async for event in self.fw.events():
                kind = event.WhichOneof("event")
                if kind == "offers":
                    for offer in event.offers.offers:
                        have = Resources.from_proto(offer.resources).milli_vector()
                        fit = min(h // n for h, n in zip(have, TASK.milli_vector(), strict=True)
                                  if n)
                        if fit > 0:
                            self.pool[offer.id] = (offer.agent_id, fit)
                        else:
                            self._spawn(self._decline(offer.id))
                elif kind == "rescind":
                    self.pool.pop(event.rescind.offer_id, None)
                elif kind == "update":
                    self._on_update(event.update.status)
                elif kind == "error":
                    self._fail(f"the master dropped the framework: {event.error.message}")
                    return
        except FrameworkError as e:
            self._fail(f"subscription stream broke: {e}")

    async def pace(self) -> None:
        """Launch at the rate until the duration is over (or a failure)."""
        self.start = time.monotonic()
        while not self.failed.is_set():
            elapsed = time.monotonic() - self.start
            if elapsed >= self.duration:
                break
            due = int(self.rate * elapsed) + 1 - self.launched
            while due > 0 and self.pool:
                offer_id = next(iter(self.pool))
                agent_id, fit = self.pool.pop(offer_id)
                n = min(due, fit)
                self._spawn(self._accept(offer_id, agent_id, n))
                due -= n
            if due > 0:
                self.behind += 1
            await asyncio.sleep(self.tick)

    async def _accept(self, offer_id: str, agent_id: str, n: int) -> None:
        tasks = []
        for _ in range(n):
            self.seq += 1
            tasks.append(common_pb2.TaskInfo(
                name="paced", task_id=f"p{self.seq:07d}", agent_id=agent_id,
                resources=TASK.to_proto(), command=common_pb2.CommandInfo(
                    argv=["sleep", f"{self.task_seconds:g}"])))
        now = self.last_accept = time.monotonic()
        for t in tasks:
            self.accepted_at[t.task_id] = now
        self.launched += n
        self.accepts += 1
        try:
            await self.fw.stub.Accept(scheduler_pb2.AcceptRequest(
                framework_id=self.fw.framework_id, stream_id=self.fw.stream_id,
                offer_ids=[offer_id], filters=common_pb2.Filters(refuse_seconds=0),
                operations=[scheduler_pb2.Operation(launch=scheduler_pb2.Operation.Launch(
                    tasks=tasks))]))
        except grpc.aio.AioRpcError as e:
            self._fail(f"Accept of {n} tasks failed: {e.code().name}: {e.details()}")

    async def _decline(self, offer_id: str) -> None:
        try:
            await self.fw.stub.Decline(scheduler_pb2.DeclineRequest(
                framework_id=self.fw.framework_id, stream_id=self.fw.stream_id,
                offer_ids=[offer_id], filters=common_pb2.Filters(refuse_seconds=1.0)))
        except grpc.aio.AioRpcError as e:
            self._fail(f"Decline failed: {e.code().name}: {e.details()}")

    def _on_update(self, status: common_pb2.TaskStatus) -> None:
        now = time.monotonic()
        if status.state == common_pb2.TASK_RUNNING:
            started = self.accepted_at.pop(status.task_id, None)
            if started is not None:
                self.latencies.append(now - started)
                self.samples.append((started - self.start, now - started))
                self.running += 1
        elif status.state == common_pb2.TASK_FINISHED:
            self.finished += 1
        else:
            self._fail(f"task {status.task_id}: "
                       f"{common_pb2.TaskState.Name(status.state)} {status.message}")
        if status.uuid:
            self.acks_sent += 1
            self._spawn(self._ack(status))

    async def _ack(self, status: common_pb2.TaskStatus) -> None:
        # Through the SDK, as frameworks do: the acknowledgements of one loop turn go in
        # one call. (One call each costs the master a reference cycle per call in grpcio's
        # aio server, collected only by its cyclic GC: see the module's notes.)
        try:
            await self.fw.acknowledge(status)
        except FrameworkError as e:
            self._fail(f"Acknowledge of {status.task_id} failed: {e}")
        self.acks_done += 1


def percentiles(lat: list[float]) -> dict[str, float]:
    lat = sorted(lat)
    return {"p50": statistics.median(lat), "p99": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
            "max": lat[-1]}
