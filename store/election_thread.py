"""An Election kept on its own thread and event loop.

A leader's event loop can be busy for seconds (ten thousand agents
re-registering at once); the lease keepalive must not wait behind that work,
or the leader loses its lease under exactly the load it must carry. Here the
election (its etcd client, keepalive and watchdog) lives on a thread of its
own; the master's loop reads `is_leader`, `leader()` and `fence()` (plain reads
of values the election thread writes) and awaits `campaign()` and `lost`.

Campaigning retries with backoff until elected (a standby's etcd session can
end while etcd is unreachable); once elected, the term ends for good when
`lost` is set, as with Election itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from juggler.common import logs
from juggler.common.leader import backoff
from juggler.store import lease_keepalive
from juggler.store.election import Election
from juggler.store.etcd import Endpoint, EtcdClient, Fence, NotLeader, parse_endpoints
from juggler.store.lease_reaper import LeaseReaper

log = logs.get("election")


class ElectionThread:
    def __init__(self, make_client: Callable[[], EtcdClient], prefix: str, address: str,
                 ttl: int, *, endpoints: str = "", ca_cert: str | None = None,
                 cert: str | None = None, key: str | None = None) -> None:
        self._make_client = make_client
        # The lease is renewed over etcd's HTTP gateway (store/lease_keepalive.py).
        self._endpoints = parse_endpoints(endpoints) if endpoints else []
        self._tls = (lease_keepalive.tls_context(ca_cert, cert, key)
                     if any(e.tls for e in self._endpoints) else None)
        self._prefix = prefix
        self._address = address
        self._ttl = ttl
        # Through the same endpoints, a companion process revokes this master's
        # leases the moment it dies: a crash costs no lease TTL (store/lease_reaper.py).
        self._reaper = (LeaseReaper([str(e) for e in self._endpoints], ca_cert=ca_cert,
                                    cert=cert, key=key) if self._endpoints else None)
        self._election: Election | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._home: asyncio.AbstractEventLoop | None = None
        self._home_watches_grpc = False
        self._elected: asyncio.Future[None] | None = None
        self._main: asyncio.Task[None]
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None

    # -- read from the master's loop -------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        election = self._election
        return election is not None and election.is_leader

    def leader(self) -> str | None:
        election = self._election
        return election.leader() if election is not None else None

    def succession(self) -> list[str]:
        """Every candidate's address in the order they would lead (the leader first)."""
        election = self._election
        return election.succession() if election is not None else []

    def fence(self) -> Fence:
        election = self._election
        if election is None:
            raise NotLeader(f"{self._address} is not the leader")
        return election.fence()

    # -- life cycle ----------------------------------------------------------------------------
    async def campaign(self) -> None:
        """Return once elected (retrying failed campaigns in the election thread)."""
        self._home = asyncio.get_running_loop()
        self._home_watches_grpc = _watch_grpc_events()
        self._elected = self._home.create_future()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="election",
                                        daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait)
        await self._elected

    def _run(self, ready: threading.Event) -> None:
        loop = (_ElectionLoop() if self._home_watches_grpc else asyncio.new_event_loop())
        self._loop = loop
        self._main = loop.create_task(self._serve())
        ready.set()
        try:
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._main)
        finally:
            loop.close()

    async def _serve(self) -> None:
        client = self._make_client()
        attempt = 0
        try:
            while True:
                election = _HttpKeepaliveElection(
                    client, self._prefix, self._address, ttl=self._ttl, reaper=self._reaper)
                election.endpoints, election.tls = self._endpoints, self._tls
                self._election = election
                try:
                    await election.campaign()
                    break
                except Exception as e:  # ElectionLost, StoreError, aetcd's errors
                    attempt += 1
                    log.info("campaign failed; trying again", error=f"{type(e).__name__}: {e}")
                    with contextlib.suppress(Exception):
                        await election.close()
                    await asyncio.sleep(backoff(attempt, base=0.2, cap=2.0))
            self._tell(lambda: self._elected.done() or self._elected.set_result(None))  # type: ignore[union-attr]
            await election.lost.wait()
            self.lost_reason = election.lost_reason
            self._tell(self.lost.set)
            await asyncio.Event().wait()  # keep the client until close()
        finally:
            if self._election is not None:
                with contextlib.suppress(Exception):
                    await self._election.close()
            with contextlib.suppress(Exception):
                await client.close()

    def _tell(self, fn: Callable[[], object]) -> None:
        if self._home is not None and not self._home.is_closed():
            self._home.call_soon_threadsafe(fn)

    async def close(self) -> None:
        """Resign (revoking the lease), stop the thread and the lease reaper."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop may have ended already
                loop.call_soon_threadsafe(self._main.cancel)
            await asyncio.to_thread(thread.join, 10)
        if self._reaper is not None:
            await asyncio.to_thread(self._reaper.close)
        if self._home_watches_grpc:
            self._home_watches_grpc = False
            _unwatch_grpc_events()


def _watch_grpc_events() -> bool:
    """Make the running loop (the master's) one that handles grpc.aio's completion
    events, as using grpc.aio on it does; False if this grpcio cannot be asked."""
    try:
        from grpc._cython import cygrpc

        cygrpc.init_grpc_aio()  # counted; _unwatch_grpc_events() undoes it
    except (ImportError, AttributeError):
        return False
    return True


def _unwatch_grpc_events() -> None:
    from grpc._cython import cygrpc

    cygrpc.shutdown_grpc_aio()


def _is_grpc_event_reader(callback: Any) -> bool:
    func = getattr(callback, "func", None)  # grpc binds its reader with functools.partial
    return getattr(func, "__qualname__", "") == "PollerCompletionQueue._handle_events"


class _ElectionLoop(asyncio.SelectorEventLoop):
    """The election thread's loop: it does not watch grpc.aio's wake-up socket.

    grpc.aio has one completion queue per process. Each loop that uses grpc.aio
    watches its wake-up socket; whichever loop wakes first handles every event
    and hands the other loops' events on with call_soon_threadsafe. With the
    election's loop watching as well, both threads woke on each event of the
    master's ten thousand agent streams, and the election thread often took
    the master's events only to hand them back: after a failover that cost the
    new leader about a sixth of its CPU (benchmarks/failover.py). So this loop
    leaves the socket to the master's loop (bound by ElectionThread.campaign)
    and gets its few gRPC events (campaign, watch) handed on from there. Nothing
    that keeps leadership safe waits on gRPC: the lease keepalive goes over HTTP
    from a worker thread and the watchdog runs on this loop's timers.
    """

    def add_reader(self, fd: Any, callback: Any, *args: Any) -> None:
        if _is_grpc_event_reader(callback):
            return
        super().add_reader(fd, callback, *args)


class _HttpKeepaliveElection(Election):
    """Election whose keepalive goes over HTTP from a worker thread, not gRPC."""

    endpoints: list[Endpoint]
    tls: ssl.SSLContext | None = None

    async def _refresh_lease(self) -> int:
        if not self.endpoints:
            return await super()._refresh_lease()
        assert self.lease_id is not None
        # A slow answer still proves the lease from the time the request was sent
        # (Election._renew), so wait for it as long as it can still help.
        timeout = max(self._interval, (self.granted_ttl or self.ttl) - self.margin)
        lease_id, times = self.lease_id, {}

        def renew() -> int:
            times["started"] = time.monotonic()
            try:
                return lease_keepalive.keepalive(self.endpoints, lease_id, timeout, self.tls)
            finally:
                times["answered"] = time.monotonic()

        asked = time.monotonic()
        ttl = await asyncio.to_thread(renew)
        took = time.monotonic() - asked
        if took > self._interval / 2:
            # Where a slow renewal spent its time tells a starved process (the
            # worker thread waited to run) from a slow etcd (the request did).
            self._log.warning("slow lease keepalive", seconds=round(took, 3),
                              waiting_to_start=round(times["started"] - asked, 3),
                              request=round(times["answered"] - times["started"], 3))
        return ttl
