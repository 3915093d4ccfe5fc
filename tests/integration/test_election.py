"""Leader election against a real etcd: one leader, takeover, fencing, stepping down in time.

Waits for what etcd and the event loop do have a deadline of DEADLINE, generous
for a loaded 2-core machine; the few bounds that are the subject of a test (a
lease revoked long before its TTL) say so where they are.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from juggler.common.clock import FakeClock
from juggler.store.election import Election, ElectionLost
from juggler.store.etcd import EtcdClient, EtcdStore, NotLeader
from juggler.store.interface import StoreError
from juggler.testing.etcd_server import EtcdServer, etcd_binary, etcd_server

DEADLINE = 30.0


def run(coro):  # pytest-asyncio is not a dependency
    return asyncio.run(coro)


def election_prefix() -> str:
    return f"/juggler/test-{uuid.uuid4().hex[:8]}/election/"


async def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def elect(candidates: list[Election]) -> tuple[Election, list[asyncio.Task[None]]]:
    """Campaign in order (so create revisions follow the list); return the leader and tasks."""
    tasks = []
    for c in candidates:
        tasks.append(asyncio.create_task(c.campaign()))
        await wait_until(lambda c=c: c.create_revision is not None, DEADLINE,
                         f"{c.address} to enter")
    done, _ = await asyncio.wait(tasks, timeout=DEADLINE, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1, "exactly one candidate wins"
    leader = candidates[tasks.index(done.pop())]
    return leader, tasks


async def close_all(candidates: list[Election], tasks: list[asyncio.Task[None]]) -> None:
    for c in candidates:
        await c.close()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_three_candidates_one_leader_everyone_knows_it(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        prefix = election_prefix()
        candidates = [Election(client, prefix, f"master-{i}:5050") for i in range(3)]
        leader, tasks = await elect(candidates)
        assert leader is candidates[0]  # the lowest create revision leads
        assert [c.is_leader for c in candidates] == [True, False, False]
        for c in candidates:
            await wait_until(lambda c=c: c.leader() == "master-0:5050", DEADLINE,
                             f"{c.address} to learn the leader")
            assert await c.query_leader() == "master-0:5050"
        assert all(not t.done() for t in tasks[1:])
        await close_all(candidates, tasks)
        await client.close()

    run(main())


def test_next_lowest_takes_over_when_the_leader_resigns(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        prefix = election_prefix()
        candidates = [Election(client, prefix, f"master-{i}:5050") for i in range(3)]
        first, tasks = await elect(candidates)
        await first.resign()
        assert first.lost.is_set() and not first.is_leader
        await asyncio.wait_for(tasks[1], DEADLINE)  # master-1 entered before master-2
        assert candidates[1].is_leader and not candidates[2].is_leader
        await wait_until(lambda: candidates[2].leader() == "master-1:5050", DEADLINE,
                         "the new leader")
        with pytest.raises(NotLeader):
            first.fence()
        await close_all(candidates, tasks)
        await client.close()

    run(main())


def test_a_deposed_leaders_fenced_write_fails_and_the_new_leaders_succeeds(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        prefix = election_prefix()
        store = EtcdStore(client, prefix.replace("/election/", "/registry/"))
        candidates = [Election(client, prefix, f"master-{i}:5050") for i in range(2)]
        old, tasks = await elect(candidates)
        old_fence = old.fence()
        await store.put("agents/a", b"by master-0", fence=old_fence)

        # The old leader's lease ends behind its back (as if it were paused past its TTL).
        assert old.lease_id is not None
        await client.call(lambda c: c.revoke_lease(old.lease_id))
        new = candidates[1]
        await asyncio.wait_for(tasks[1], DEADLINE)
        assert new.is_leader
        with pytest.raises(NotLeader, match="no longer exists"):
            await store.put("agents/a", b"late write by master-0", fence=old_fence)
        await store.put("agents/a", b"by master-1", fence=new.fence())
        assert await store.get("agents/a") == b"by master-1"
        # ...and the old leader learns it lost (keepalive answers TTL 0, or the watch).
        await asyncio.wait_for(old.lost.wait(), DEADLINE)
        assert not old.is_leader
        await close_all(candidates, tasks)
        await client.close()

    run(main())


class FlakyElection(Election):
    """An election whose keepalives can be made to fail, as if etcd were unreachable."""

    failing = False

    async def _refresh_lease(self) -> int:
        if self.failing:
            raise StoreError("etcd unavailable: injected")
        return await super()._refresh_lease()


def test_leader_steps_down_by_the_injected_clock_when_keepalives_fail(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        clock = FakeClock()
        reasons: list[str] = []
        e = FlakyElection(client, election_prefix(), "master-0:5050", ttl=5,
                          safety_margin=1.0, clock=clock, on_lost=reasons.append)
        await asyncio.wait_for(e.campaign(), DEADLINE)
        await wait_until(lambda: e.last_keepalive is not None, DEADLINE, "a keepalive")
        e.failing = True
        proven = e.lease_deadline  # the lease lives at least until then
        assert e.granted_ttl == 5 and proven == clock.now() + 5

        clock.advance(5 - 1.0 - 0.01)  # just inside the margin: still leading
        assert e.is_leader and not e.lost.is_set()
        clock.advance(0.02)  # past ttl - margin: not leading, whatever the tasks do
        assert not e.is_leader
        await asyncio.wait_for(e.lost.wait(), DEADLINE)  # the fake clock decided; the loop tells
        assert clock.now() < proven  # stepped down before the lease could expire
        assert reasons and "stepping down before it can expire" in reasons[0]
        with pytest.raises(NotLeader):
            e.fence()
        await e.close()
        await client.close()

    run(main())


async def lead_eventually(client: EtcdClient, prefix: str, address: str, ttl: int,
                          entered: asyncio.Event) -> Election:
    """What a master does: campaign, and start a new term whenever a session is lost."""
    while True:
        election = Election(client, prefix, address, ttl=ttl)
        try:
            campaign = asyncio.create_task(election.campaign())
            await wait_until(lambda e=election, c=campaign: e.create_revision or c.done(),
                             DEADLINE, "entering the election")
            entered.set()
            await campaign
            return election
        except StoreError:  # ElectionLost, or etcd unreachable: a new term, a new lease
            await election.close()
            await asyncio.sleep(0.1)


def test_leader_steps_down_before_its_lease_expires_when_etcd_is_paused(tmp_path: Path):
    try:
        etcd_binary()
    except Exception as e:
        pytest.skip(str(e))

    async def main(server: EtcdServer) -> None:
        client = EtcdClient(server.endpoint, timeout=1.0)
        prefix = election_prefix()
        lost_at: list[float] = []
        leader = Election(client, prefix, "master-0:5050", ttl=2,
                          on_lost=lambda _: lost_at.append(time.monotonic()))
        await asyncio.wait_for(leader.campaign(), DEADLINE)
        entered = asyncio.Event()
        standing = asyncio.create_task(lead_eventually(client, prefix, "master-1:5050", 2,
                                                       entered))
        await asyncio.wait_for(entered.wait(), DEADLINE)
        await wait_until(lambda: leader.last_keepalive is not None, DEADLINE, "a keepalive")

        server.pause()
        try:
            ttl = leader.granted_ttl
            assert ttl is not None
            # Only a deadline: when it stepped down is checked against its keepalives.
            await asyncio.wait_for(leader.lost.wait(), ttl + DEADLINE)
            assert leader.last_keepalive is not None
            # Stepped down after at least ttl - margin without a renewal, and before the
            # lease (renewed no earlier than last_keepalive) could expire.
            assert lost_at[0] < leader.last_keepalive + ttl
            assert lost_at[0] >= leader.last_keepalive + ttl - leader.margin
            assert not leader.is_leader and not standing.done()
        finally:
            server.resume()

        # etcd back: the old lease expires (or is revoked by close), the standby leads.
        await leader.close()
        standby = await asyncio.wait_for(standing, DEADLINE)
        elected_at = time.monotonic()
        assert standby.is_leader, (standby.lost_reason, standby.lease_deadline,
                                   standby.clock.now(), standby.last_keepalive)
        assert elected_at > lost_at[0]  # terms do not overlap
        assert await standby.query_leader() == "master-1:5050"
        await standby.close()
        await client.close()

    with etcd_server(tmp_path) as server:
        run(main(server))


def test_campaign_raises_when_the_session_is_lost_before_leading(etcd: EtcdServer):
    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        prefix = election_prefix()
        leader = Election(client, prefix, "master-0:5050")
        await leader.campaign()
        waiting = Election(client, prefix, "master-1:5050")
        task = asyncio.create_task(waiting.campaign())
        await wait_until(lambda: waiting.lease_id is not None and waiting.create_revision,
                         DEADLINE, "the candidate to enter")
        await client.call(lambda c: c.revoke_lease(waiting.lease_id))
        with pytest.raises(ElectionLost):
            await asyncio.wait_for(task, DEADLINE)
        assert leader.is_leader
        await waiting.close()
        await leader.close()
        await client.close()

    run(main())


def test_lease_reaper_revokes_the_leases_it_holds_when_its_master_goes(etcd: EtcdServer):
    """The companion revokes at end-of-file on its stdin, which is when the master
    process has exited; a signal to the master's process group does not end it first."""
    import os
    import signal

    from juggler.store.lease_reaper import LeaseReaper

    async def main() -> None:
        client = EtcdClient(etcd.endpoint)
        try:
            held = await client.call(lambda c: c.lease(60))
            released = await client.call(lambda c: c.lease(60))
            reaper = LeaseReaper([etcd.endpoint])
            reaper.hold(held.id)
            reaper.hold(released.id)
            reaper.release(released.id)  # the master revoked this one itself (or meant to)
            os.kill(reaper.pid, signal.SIGINT)  # Ctrl-C in the master's terminal
            os.kill(reaper.pid, signal.SIGTERM)
            await asyncio.to_thread(reaper.close)  # end-of-file: as when the master dies
            assert reaper.returncode == 0  # it was not ended by either signal
            assert (await client.call(lambda c: c.get_lease_info(held.id))).TTL == -1
            assert (await client.call(lambda c: c.get_lease_info(released.id))).TTL > 30
        finally:
            await client.close()
    run(main())


LEADER_PROCESS = """
import asyncio, sys
from juggler.store.election import Election
from juggler.store.etcd import EtcdClient
from juggler.store.lease_reaper import LeaseReaper

async def main():
    endpoint, prefix = sys.argv[1], sys.argv[2]
    election = Election(EtcdClient(endpoint), prefix, "crasher", ttl=60,
                        reaper=LeaseReaper([endpoint]))
    await election.campaign()
    print("leading", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def test_a_crashed_leaders_lease_is_revoked_without_waiting_for_its_ttl(etcd: EtcdServer):
    """kill -9 of a leader with a 60 s lease: its reaper revokes the lease, and the
    next candidate leads long before those 60 s (the deadline below is 30 s)."""
    import subprocess
    import sys

    prefix = election_prefix()
    leader = subprocess.Popen([sys.executable, "-c", LEADER_PROCESS, etcd.endpoint, prefix],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert leader.stdout is not None
        for line in leader.stdout:  # its log lines come first
            if line == "leading\n":
                break
        else:
            raise AssertionError(f"the leader process ended: {leader.wait()}")

        async def main() -> None:
            client = EtcdClient(etcd.endpoint)
            nxt = Election(client, prefix, "next", ttl=30)
            try:
                campaign = asyncio.create_task(nxt.campaign())
                # In the race once its key is written and the candidates are read.
                await wait_until(lambda: nxt.leader() is not None, DEADLINE, "next to enter")
                assert nxt.leader() == "crasher" and not campaign.done()
                leader.kill()  # SIGKILL: no clean-up of its own
                # The subject: well within the crasher's 60 s lease.
                await asyncio.wait_for(campaign, DEADLINE)
                assert nxt.is_leader
            finally:
                await nxt.close()
                await client.close()
        run(main())
    finally:
        leader.kill()
        leader.wait()
