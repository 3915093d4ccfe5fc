"""Leader election on etcd, as etcd's own `concurrency.Election` does it.

    candidate ──campaign()──▶ waiting ──lowest create revision──▶ leader
        │                       │                                   │
        └──── lease lost, key deleted, resign() or close() ─────────┴──▶ lost (terminal)

Each candidate grants a lease (`ttl` seconds) and, in a transaction conditioned
on create_revision == 0, puts `<prefix><lease id hex>` = its address, bound to
that lease (telling the master's lease reaper first, store/lease_reaper.py, so
that a crashed leader's lease is revoked at once). The key with the lowest
create revision under the prefix is the leader; the others watch the prefix
and re-check whenever it changes, so the next one takes over as soon as the
leader's key is deleted (resign, or its lease expired or was revoked).

Safety: the lease is kept alive every ttl/3. A keepalive sent at time `t` and
answered with TTL `x` proves the lease lives until at least `t + x` (etcd
started counting after `t`). The leader stops acting as leader once
`clock.now() > t + x - safety_margin` for its last such proof, i.e. BEFORE
etcd can expire the lease and elect another; `is_leader` re-checks that bound
on every read, so it holds even if this process was paused. Writes are also
fenced (store/etcd.py `Fence`), so a leader that lost anyway cannot write.

An Election is one term: once `lost` is set it stays set; campaign again with
a new Election (a new lease and key).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import NamedTuple

import aetcd
from aetcd import transactions as tx

from juggler.common import logs
from juggler.common.clock import Clock, SystemClock
from juggler.store.etcd import EtcdClient, Fence, NotLeader
from juggler.store.interface import StoreError
from juggler.store.lease_reaper import LeaseReaper


class ElectionLost(StoreError):
    """The candidate's session ended (lease lost, key deleted, resigned) before or while leading."""


class Candidate(NamedTuple):
    create_revision: int
    key: bytes
    address: str


class Election:
    def __init__(self, client: EtcdClient, prefix: str, address: str, ttl: int = 5, *,
                 safety_margin: float | None = None, clock: Clock | None = None,
                 on_lost: Callable[[str], None] | None = None,
                 reaper: LeaseReaper | None = None) -> None:
        if not prefix.endswith("/"):
            raise ValueError(f"election prefix {prefix!r} must end with '/'")
        if ttl < 1:
            raise ValueError("the election lease TTL is whole seconds, at least 1")
        self.client = client
        self.prefix = prefix
        self.address = address
        self.ttl = ttl
        self.safety_margin = safety_margin
        self.clock = clock or SystemClock()
        self.on_lost = on_lost
        # Told of the lease before anything is bound to it, so that a crash of this
        # process revokes it at once (store/lease_reaper.py).
        self.reaper = reaper
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self.lease_id: int | None = None
        self.key: bytes | None = None
        self.create_revision: int | None = None
        # The lease is known to live until this clock.now() value, at least.
        self.lease_deadline = float("-inf")
        self.last_keepalive: float | None = None  # clock.now() when the last good one was sent
        self.granted_ttl: int | None = None
        self._renewing: float | None = None  # clock.now() when the renewal under way was sent
        self._leading = False
        self._candidates: list[Candidate] | None = None
        self._snapshot_revision = 0
        self._updated = asyncio.Event()  # replaced (after being set) on every new snapshot
        self._tasks: list[asyncio.Task[None]] = []
        self._log = logs.get("election", address=address, prefix=prefix)

    # -- what the master reads -------------------------------------------------------------------

    @property
    def margin(self) -> float:
        """How long before the lease's proven end the leader steps down."""
        if self.safety_margin is not None:
            return self.safety_margin
        return min(1.0, (self.granted_ttl or self.ttl) / 4)

    @property
    def is_leader(self) -> bool:
        return (self._leading and not self.lost.is_set()
                and self.clock.now() < self.lease_deadline - self.margin)

    def leader(self) -> str | None:
        """The leader's address as last seen (kept fresh by a watch), or None if none is known."""
        if self.is_leader:
            return self.address
        if not self._candidates:
            return None
        return self._candidates[0].address

    def succession(self) -> list[str]:
        """Every candidate's address, as last seen, in the order they would lead."""
        return [c.address for c in self._candidates or ()]

    async def query_leader(self) -> str | None:
        """The leader's address, read from etcd now."""
        await self._read()
        return self._candidates[0].address if self._candidates else None

    def fence(self) -> Fence:
        """What fenced writes compare: this leader's key and its create revision."""
        if not self.is_leader or self.key is None or self.create_revision is None:
            raise NotLeader(f"{self.address} is not the leader"
                            + (f": {self.lost_reason}" if self.lost_reason else ""))
        return Fence(self.key, self.create_revision)

    # -- campaign ----------------------------------------------------------------------------------

    async def campaign(self) -> None:
        """Return once this candidate leads; raise ElectionLost if its session ends first."""
        if self.lease_id is None:
            await self._start()
        while True:
            updated = self._updated
            if self.lost.is_set():
                raise ElectionLost(self.lost_reason or "election lost")
            if self._candidates is not None and self._candidates[0].key == self.key:
                # Start the term with a fresh proof of the lease, not one from before a pause.
                with contextlib.suppress(StoreError, aetcd.ClientError):
                    await self._renew()
                self._leading = True
                if self.is_leader:
                    self._log.info("elected leader", create_revision=self.create_revision,
                                   lease=hex(self.lease_id or 0))
                    return
                self._leading = False
            waits = [asyncio.create_task(self.lost.wait()), asyncio.create_task(updated.wait())]
            try:
                await asyncio.wait(waits, timeout=self._interval,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _start(self) -> None:
        sent = self.clock.now()
        lease = await self.client.call(lambda c: c.lease(self.ttl))
        # etcd may grant more than asked (its minimum TTL): the granted TTL is what counts.
        self.lease_id, self.granted_ttl = lease.id, lease.ttl
        if self.reaper is not None:
            self.reaper.hold(lease.id)
        self.lease_deadline, self.last_keepalive = sent + lease.ttl, sent
        self.key = f"{self.prefix}{lease.id:x}".encode()
        key, value = self.key, self.address.encode()
        ok, responses = await self.client.call(lambda c: c.transaction(
            compare=[tx.Create(key) == 0],
            success=[tx.Put(key, value, lease=lease.id), tx.Get(key)],
            failure=[tx.Get(key)]))
        kv = responses[-1][0][1]
        if not ok and bytes(kv.value) != value:  # a retried campaign (etcd's recipe does this)
            await self.client.call(lambda c: c.put(key, value, lease=lease.id))
        self.create_revision = kv.create_revision
        self._log.info("campaigning", key=key.decode(), create_revision=self.create_revision,
                       ttl=lease.ttl)
        self._tasks = [asyncio.create_task(self._keep_alive(), name="election-keepalive"),
                       asyncio.create_task(self._watchdog(), name="election-watchdog"),
                       asyncio.create_task(self._observe(), name="election-observe")]
        await self._read()

    # -- background --------------------------------------------------------------------------------

    @property
    def _interval(self) -> float:
        """How often the lease is renewed: a third of its TTL, as etcd's clients do."""
        return (self.granted_ttl or self.ttl) / 3

    async def _refresh_lease(self) -> int:
        """One keepalive round trip: the lease's TTL as etcd now counts it (0: it is gone)."""
        assert self.lease_id is not None
        lease_id = self.lease_id
        reply = await self.client.call(lambda c: c.refresh_lease(lease_id),
                                       timeout=self._interval)
        return 0 if reply is None else int(reply.TTL)

    async def _renew(self) -> None:
        sent = self.clock.now()  # etcd restarts the TTL after this: a safe lower bound
        self._renewing = sent
        try:
            ttl = await self._refresh_lease()
        finally:
            self._renewing = None
        if ttl <= 0:
            self._step_down("the election lease expired or was revoked")
            return
        self.last_keepalive = sent
        self.lease_deadline = max(self.lease_deadline, sent + ttl)

    async def _keep_alive(self) -> None:
        while not self.lost.is_set():
            try:
                await self._renew()
            except (StoreError, aetcd.ClientError) as e:
                self._log.warning("lease keepalive failed", error=str(e))
                await asyncio.sleep(min(self._interval / 4, 0.2))
                continue
            await asyncio.sleep(self._interval)

    async def _watchdog(self) -> None:
        # Real sleeps only pace the checks; the decision reads the injected clock.
        tick = min(0.1, (self.granted_ttl or self.ttl) / 20)
        while not self.lost.is_set():
            left = self.lease_deadline - self.margin - self.clock.now()
            if left <= 0:
                now = self.clock.now()
                since = now - (self.last_keepalive or 0.0)
                # Which it was tells a slow etcd from a starved process.
                pending = (f"a renewal sent {now - self._renewing:.1f}s ago is unanswered"
                           if self._renewing is not None else "no renewal under way")
                self._step_down(f"lease not renewed for {since:.1f}s (TTL "
                                f"{self.granted_ttl}s; {pending}): stepping down before "
                                f"it can expire")
                return
            await asyncio.sleep(min(left, tick))

    async def _observe(self) -> None:
        """Keep `_candidates` fresh: re-read the prefix whenever a watch on it fires."""
        poll = max(self.granted_ttl or self.ttl, 1)  # backstop for a watch that went quiet
        while not self.lost.is_set():
            watch = None
            try:
                watch = await self.client.call(
                    lambda c: c.watch_prefix(self.prefix.encode()))
                changed = asyncio.Event()
                drain = asyncio.create_task(_drain(watch, changed))
                try:
                    await self._read()
                    while not drain.done() and not self.lost.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(changed.wait(), poll)
                        changed.clear()
                        await self._read()
                    if drain.done():
                        drain.result()
                finally:
                    drain.cancel()
            except Exception as e:  # a dead watch stream surfaces as many error types
                self._log.warning("election watch failed; retrying", error=repr(e))
                await asyncio.sleep(0.5)
            finally:
                if watch is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(watch.cancel(), 1.0)

    async def _read(self) -> None:
        result = await self.client.call(lambda c: c.get_prefix(
            self.prefix.encode(), sort_order="ascend", sort_target="create"))
        if result.header.revision < self._snapshot_revision:
            return  # an older endpoint's view; keep the newer one
        self._snapshot_revision = result.header.revision
        self._candidates = [Candidate(kv.create_revision, bytes(kv.key), bytes(kv.value).decode())
                            for kv in result.kvs]
        mine = any(c.key == self.key for c in self._candidates)
        if self.key is not None and not mine and self.create_revision is not None \
                and result.header.revision >= self.create_revision and not self.lost.is_set():
            self._step_down("the election key was deleted")
        updated, self._updated = self._updated, asyncio.Event()
        updated.set()

    def _step_down(self, reason: str) -> None:
        if self.lost.is_set():
            return
        was_leader = self._leading
        self._leading = False
        self.lost_reason = reason
        self.lost.set()
        (self._log.warning if was_leader else self._log.info)(
            "left the election", reason=reason, was_leader=was_leader)
        if self.on_lost is not None:
            self.on_lost(reason)

    # -- leaving -----------------------------------------------------------------------------------

    async def resign(self) -> None:
        """Stop leading (or campaigning) now and let the next candidate take over at once."""
        self._step_down("resigned")
        await self.close()

    async def close(self) -> None:
        """Stop the background tasks and revoke the lease (best effort: etcd may be gone)."""
        self._step_down("closed")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self.lease_id is not None:
            lease_id = self.lease_id
            try:
                # Revoking deletes our key: the next candidate need not wait for the TTL.
                await self.client.call(lambda c: c.revoke_lease(lease_id),
                                       timeout=min(1.0, self.client.timeout))
                if self.reaper is not None:
                    self.reaper.release(lease_id)
            except (StoreError, aetcd.ClientError) as e:
                self._log.info("could not revoke the election lease; it will expire",
                               error=str(e))


async def _drain(watch: aetcd.Watch, changed: asyncio.Event) -> None:
    async for _ in watch:
        changed.set()
