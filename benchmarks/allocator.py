"""One full allocation cycle at cluster scale, compared with Mesos 1.8's published figures.

    python benchmarks/allocator.py [--quick] [--ports]

Every size: all frameworks in one role, active and wanting offers, no filters, identical agents
(cpus:16, mem:64 GiB, disk:1 TiB; with --ports also ports [31000-32000], an agent's default
range resource, offered with the scalars). Each repetition builds a fresh allocator (not timed) and
times one allocate() that hands out every agent. The last line is one JSON object for machines.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time

from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.master.allocator import Allocator

SIZES = [(1000, 100), (5000, 500), (10000, 1000), (20000, 2000)]
MESOS_1_8 = {"1000x100": 0.1, "5000x500": 0.4, "10000x1000": 1.1, "20000x2000": 3.8}
AGENT = Resources({"cpus": 16, "mem": 65536, "disk": 1048576})
AGENT_WITH_PORTS = Resources(AGENT.as_dict(), ports="[31000-32000]")


def build(agents: int, frameworks: int, agent: Resources = AGENT) -> Allocator:
    allocator = Allocator(FakeClock())
    for i in range(frameworks):
        allocator.add_framework(f"framework-{i:05d}", ["role-a"])
    for i in range(agents):
        allocator.add_agent(f"agent-{i:06d}", agent)
    return allocator


def time_cycle(agents: int, frameworks: int, repeats: int,
               agent: Resources = AGENT) -> list[float]:
    times = []
    for _ in range(repeats):
        allocator = build(agents, frameworks, agent)
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            allocations = allocator.allocate()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
        if len(allocations) != agents:
            raise SystemExit(f"{agents}x{frameworks}: {len(allocations)} allocations, not {agents}")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the two smallest sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ports", action="store_true", help="agents offer ports [31000-32000]")
    args = parser.parse_args()
    sizes = SIZES[:2] if args.quick else SIZES

    results: dict[str, float] = {}
    header = ("agents x frameworks", "best s", "median s", "Mesos 1.8 s", "ratio")
    print(f"{header[0]:>20} {header[1]:>9} {header[2]:>9} {header[3]:>12} {header[4]:>7}")
    for agents, frameworks in sizes:
        key = f"{agents}x{frameworks}"
        times = time_cycle(agents, frameworks, args.repeats,
                           AGENT_WITH_PORTS if args.ports else AGENT)
        best, median = min(times), statistics.median(times)
        results[key] = round(best, 4)
        mesos = MESOS_1_8[key]
        print(f"{key:>20} {best:9.3f} {median:9.3f} {mesos:12.1f} {best / mesos:6.2f}x")
    print(json.dumps({"cycle_seconds": results}))


if __name__ == "__main__":
    main()
