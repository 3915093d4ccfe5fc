"""How long-running juggler processes tune Python's cyclic garbage collector.

CPython runs a young collection every 700 net allocations of container
objects, and every 100 of those considers a full one, which walks every
tracked object. A master holding ten thousand agents' streams walks hundreds
of thousands of objects each time, and a burst of re-registrations after a
failover allocates fast enough to set off full collections again and again.

`tune()`: freeze what start-up built (imports, servers, the recovered
registry; it lives for good and is never walked again) and collect young
objects every 10,000 allocations instead of 700, the middle generation every
1,000,000 (100 young collections), full collections considered every ten of
those, as when young ones came every 50,000 (and middle ones every 20).
Cycles are still collected, only in larger batches; reference counting frees
everything else at once, as before.

A young collection's pause grows with the young generation: at 50,000 the
master, which gets a few reference cycles per gRPC call from grpcio's aio
server (its method lookup closure), stopped for 70-90 ms of CPU every few
seconds at 500 launches/s — the tail of Accept→RUNNING latency
(benchmarks/master_throughput.py --rate). At 10,000 each pause is a fifth of
that and the total collection work the same.
"""

from __future__ import annotations

import gc

YOUNG = 10_000
MIDDLE = 100  # young collections per middle one: YOUNG * MIDDLE allocations


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, MIDDLE, 10)
