"""How long-running juggler processes tune Python's cyclic garbage collector.

CPython runs a young collection every 700 net allocations of container
objects, and every 100 of those considers a full one, which walks every
tracked object. A master holding ten thousand agents' streams walks hundreds
of thousands of objects each time, and a burst of re-registrations after a
failover allocates fast enough to set off full collections again and again.

`tune()`: freeze what start-up built (imports, servers, the recovered
registry; it lives for good and is never walked again) and collect young
objects every 50,000 allocations instead of 700, with full collections
considered every 1,000,000. Cycles are still collected, only in larger
batches; reference counting frees everything else at once, as before.
"""

from __future__ import annotations

import gc

YOUNG = 50_000


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, 20, 10)
