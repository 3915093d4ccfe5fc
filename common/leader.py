"""Following the leading master from any client (agents, frameworks, the CLI).

Standby masters refuse calls with UNAVAILABLE and name the leader in the
trailing metadata key `juggler-leader` (master/leader_gate.py). A client that
lost its leader says which in `juggler-lost-leader` on its next calls, and a
standby that still knows that very master as the leader holds the call until
the election is over instead of refusing it at once.

Finding the leader (`find_leader`, `find_leader_sync`): ask every master
GetLeader at once, each with a short deadline, and trust a master's claim
about itself over what others say of it: a standby names the old leader
until that one's lease runs out, also when it is frozen (SIGSTOPped: its
kernel still accepts connections, it answers nothing). `choose_leader`
decides from the answers (pure).
"""

from __future__ import annotations

import asyncio
import queue
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

LEADER_KEY = "juggler-leader"
LOST_LEADER_KEY = "juggler-lost-leader"
# On a stream opened ahead of a failover to the master that would lead next: the
# leader it stands by for. Its first message is sent once that leader is lost.
STANDBY_FOR_KEY = "juggler-standby-for"
# Seconds a master that failed is not dialled again just because a standby
# names it: the standbys name a dead or frozen leader until its lease runs out
# (the masters' lease TTL, 5 s by default), and a second more for the new
# leader to be elected and read the registry.
FAILED_MEMORY = 6.0
# Seconds each master gets to answer GetLeader (find_leader).
ASK_SECONDS = 1.0


def parse_masters(spec: str | Sequence[str]) -> list[str]:
    """"host:port[,host:port...]" (or a list) → addresses, in order, without duplicates."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[str] = []
    for item in (i.strip() for i in items):
        if item and item not in out:
            out.append(item)
    if not out:
        raise ValueError("no master address given")
    return out


def backoff(attempt: int, base: float = 0.1, cap: float = 10.0) -> float:
    """Exponential backoff with full jitter: many clients must not retry in lockstep."""
    return random.uniform(0, min(cap, base * 2 ** min(attempt, 16)))


def leader_of(error: grpc.aio.AioRpcError | grpc.RpcError) -> str | None:
    """The leader a standby master named in its refusal, if any."""
    try:
        if error.code() != grpc.StatusCode.UNAVAILABLE:  # type: ignore[union-attr]
            return None
        metadata = error.trailing_metadata() or ()  # type: ignore[union-attr]
    except Exception:
        return None
    for key, value in metadata:
        if key == LEADER_KEY and value:
            return str(value)
    return None


def from_standby(error: grpc.aio.AioRpcError | grpc.RpcError) -> bool:
    """Whether a refusal came from a live standby master (which may know no leader yet)."""
    try:
        metadata = error.trailing_metadata() or ()  # type: ignore[union-attr]
    except Exception:
        return False
    return any(key == LEADER_KEY for key, _ in metadata)


class LeaderFollower:
    """Which master to dial next, and after how long (pure; time is passed in).

    - A standby's refusal names the leader: go there at once, unless that very
      address failed within the last `memory` seconds without answering since
      (standbys name a dead or frozen leader until its lease runs out).
    - A live standby that knows no leader yet: ask the next master soon, with
      jitter (an election takes about a lease TTL).
    - Nobody answered: try the next master at once; after a whole round in
      which no master answered, back off exponentially with full jitter
      (thousands of agents must not reconnect in lockstep). A round in which a
      standby answered is not silent: an election is under way.
    - A session that got registered resets the backoff. When it broke without
      an answer (the leader's process or host is gone, or the network blinked),
      its master is the `lost` leader: `metadata()` names it on every call
      until the next registration, so that a standby that cannot reach it
      either holds the call until it knows a new leader (master/leader_gate.py)
      instead of naming the dead one; one that can sends the client back.
    """

    def __init__(self, masters: str | Sequence[str], *, cap: float = 5.0,
                 memory: float = FAILED_MEMORY) -> None:
        self.masters = parse_masters(masters)
        self.cap = cap
        self.memory = memory
        self._index = 0
        self._silent_rounds = 0
        self._answered_in_round = False
        self._failed_at: dict[str, float] = {}
        self.lost: str | None = None

    def session_broke(self, address: str, now: float) -> None:
        """Start from a registered session with `address` that broke without an
        answer (for a client that makes a new follower for each reconnection)."""
        if address not in self.masters:
            self.masters.append(address)
        self._index = self.masters.index(address)
        self.ended(now, answered=False, leader=None, registered=True)

    def follow_succession(self, masters: Sequence[str]) -> None:
        """The masters in the order they would lead, as the leader just registered
        with tells it (itself first): after losing it, dial the next one first,
        the standby the election will most likely pick. Masters known only from
        the configured list keep their order after those."""
        order = [m for m in dict.fromkeys(masters) if m]
        if not order:
            return
        current = self.address
        self.masters = order + [m for m in self.masters if m not in order]
        self._index = self.masters.index(current) if current in self.masters else 0

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """Metadata for the next call: the leader this client lost, if any."""
        return ((LOST_LEADER_KEY, self.lost),) if self.lost else ()

    @property
    def address(self) -> str:
        return self.masters[self._index % len(self.masters)]

    def go_to(self, address: str) -> None:
        """Dial `address` next (a master found to lead: find_leader)."""
        if address not in self.masters:
            self.masters.append(address)
        self._index = self.masters.index(address)

    def failed_recently(self, address: str, now: float) -> bool:
        """Whether `address` failed without an answer in the last `memory` seconds."""
        return now - self._failed_at.get(address, -1e9) <= self.memory

    def successor(self) -> str | None:
        """The master dialled first if the current one is lost (None: there is no other)."""
        if len(self.masters) < 2:
            return None
        return self.masters[(self._index + 1) % len(self.masters)]

    def ended(self, now: float, *, answered: bool, leader: str | None,
              registered: bool) -> float:
        """The current session ended; returns the delay before dialling `address`."""
        address = self.address
        if registered:
            self._silent_rounds = 0
            self.lost = None if answered else address
        if answered:
            self._answered_in_round = True
            self._failed_at.pop(address, None)  # it answers again
        else:
            self._failed_at[address] = now
        if leader and leader != address and not self.failed_recently(leader, now):
            self.go_to(leader)
            return 0.0
        self._index += 1
        wrapped = self._index % len(self.masters) == 0
        answered_in_round = self._answered_in_round
        if wrapped:
            self._answered_in_round = False
        if answered:
            return random.uniform(0.05, 0.3)
        if wrapped:
            if answered_in_round:
                self._silent_rounds = 0
                return random.uniform(0.05, 0.3)
            self._silent_rounds += 1
            return backoff(self._silent_rounds, base=0.1, cap=self.cap)
        return 0.0


# -- finding the leader ------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One master's answer to GetLeader: `leader`, the address it names as the
    leader ("" when it knows none), and `is_leader`, whether it says it leads."""

    leader: str
    is_leader: bool


# What asking a master gave: its Claim; SILENT (no answer in time: frozen, or
# unreachable); DOWN (the connection failed outright: nothing listens there,
# or TLS failed); REFUSED (it answered but would not say: an access rule, or
# a master without GetLeader).
SILENT = "silent"
DOWN = "down"
REFUSED = "refused"
Answer = Claim | str


def choose_leader(answers: Mapping[str, Answer]) -> str | None:
    """The master to dial, from each master's answer (`answers`: dialled
    address → Answer, in the configured order), or None when the answers do
    not say (an election is under way, or nobody would tell).

    1. A master that says it leads: its own claim is trusted over any
       standby's. Two that say so (a deposed leader that has not noticed
       yet): the one more of the others name, else the first.
    2. Otherwise the master the answers name most (ties: the first named),
       unless it was asked and did not answer: a standby names a frozen or
       dead leader until its lease runs out. A master that answers naming
       itself without leading yet (elected, still reading the registry)
       counts; so does a named master that was not asked (an address the
       masters advertise that the client was not configured with).
    Raises nothing."""
    claims = {a: c for a, c in answers.items() if isinstance(c, Claim)}
    named: dict[str, int] = {}
    for c in claims.values():
        if c.leader:
            named[c.leader] = named.get(c.leader, 0) + 1
    leaders = [a for a, c in claims.items() if c.is_leader]
    if leaders:
        return max(leaders, key=lambda a: named.get(a, 0))  # max keeps the first of equals
    alive = [a for a in named if answers.get(a) not in (SILENT, DOWN)]
    if not alive:
        return None
    return max(alive, key=lambda a: named[a])


def nobody_will_say(answers: Mapping[str, Answer]) -> bool:
    """Whether asking again is pointless: no master answered with a claim,
    and either one refused to say (an access rule without view_cluster: the
    others, merely slow or frozen, would refuse too) or every master is down.
    Raises nothing."""
    values = list(answers.values())
    if not values or any(isinstance(a, Claim) for a in values):
        return False
    return REFUSED in values or all(a == DOWN for a in values)


def still_electing(answers: Mapping[str, Answer], leader: str) -> bool:
    """Whether `leader` (choose_leader's pick) names itself without leading
    yet: elected, still reading the registry; its leader gate would refuse a
    call for a moment longer. Raises nothing."""
    return answers.get(leader) == Claim(leader, False)


class Dialling:
    """Which master a one-shot call (the CLI, the apps service) dials next,
    and whether it checks first that the connection is set up within
    servers.CONNECT_SECONDS (pure).

    `candidates`: the masters in the order to try; `found`: the one
    find_leader() returned (dialled first, without the check: it just
    answered). A master that fails only the check (frozen, or slow) is
    passed over, and dialled once more without the check after every other
    one was tried: a live but slow leader still gets the call."""

    def __init__(self, candidates: Sequence[str], found: str | None = None) -> None:
        self.candidates = list(candidates)
        if found is not None:
            self.candidates = [found, *(c for c in self.candidates if c != found)]
        self.found = found
        self._queue = list(self.candidates)
        self._tried: set[str] = set()
        self._slow: list[str] = []

    def next(self) -> tuple[str, bool, bool] | None:
        """(address, check first, again) to dial next, `again` when it is a
        slow master's second try (give it what is left of the call's time);
        None when all were tried."""
        while self._queue:
            address = self._queue.pop(0)
            if address in self._tried:
                continue
            self._tried.add(address)
            return address, len(self.candidates) > 1 and address != self.found, False
        if self._slow:
            return self._slow.pop(0), False, True
        return None

    def slow(self, address: str) -> None:
        """`address` failed only the connection check: dial it again at the end."""
        if address not in self._slow:
            self._slow.append(address)

    def named(self, leader: str) -> None:
        """A standby named `leader`: dial it next, unless it was tried already."""
        if leader not in self._tried:
            if leader not in self.candidates:
                self.candidates.append(leader)
            self._queue.insert(0, leader)


# Addresses of masters that refused to say who leads (this process's
# principal lacks view_cluster, master/access.py): not asked again.
_refusing: set[str] = set()


def forget_refusals() -> None:
    """Ask again masters that refused to say who leads (tests; a new principal)."""
    _refusing.clear()


def _refused(candidates: Sequence[str], answers: Mapping[str, Answer]) -> bool:
    """Whether to give up on asking `candidates`: one refused before, or now."""
    _refusing.update(a for a, v in answers.items() if v == REFUSED)
    return any(c in _refusing for c in candidates)


def _request() -> object:
    from juggler.v1 import operator_pb2

    return operator_pb2.GetLeaderRequest()


def _answer(e: grpc.RpcError) -> str:
    code = e.code()  # type: ignore[attr-defined]
    if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.UNIMPLEMENTED):
        return REFUSED
    return DOWN if code == grpc.StatusCode.UNAVAILABLE else SILENT


async def ask_masters(masters: Sequence[str], per_try: float = ASK_SECONDS) -> dict[str, Answer]:
    """Every master's answer to GetLeader, asked at once, each given
    `per_try` seconds; returns as soon as one says it leads (those not heard
    from yet are then SILENT). Raises nothing."""
    from juggler.common import servers
    from juggler.v1 import operator_pb2_grpc

    async def ask(address: str) -> tuple[str, Answer]:
        try:
            async with servers.channel(address) as ch:
                got = await operator_pb2_grpc.OperatorStub(ch).GetLeader(_request(),
                                                                        timeout=per_try)
        except grpc.aio.AioRpcError as e:
            return address, _answer(e)
        except Exception:  # a TLS configuration that cannot be read (tls.TLSError)
            # DOWN: find_leader gives up at once and the caller's own dial
            # raises the clear error.
            return address, DOWN
        return address, Claim(got.address, got.is_leader)

    answers: dict[str, Answer] = dict.fromkeys(masters, SILENT)
    pending = {asyncio.ensure_future(ask(a)) for a in masters}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                address, answer = task.result()
                answers[address] = answer
                if isinstance(answer, Claim) and answer.is_leader:
                    return answers
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
    return answers


def ask_masters_sync(masters: Sequence[str],
                     per_try: float = ASK_SECONDS) -> dict[str, Answer]:
    """ask_masters() for blocking code (the CLI)."""
    from juggler.common import servers
    from juggler.v1 import operator_pb2_grpc

    answers: dict[str, Answer] = dict.fromkeys(masters, SILENT)
    heard: queue.Queue[tuple[str, Answer]] = queue.Queue()
    channels = []
    try:
        for address in masters:
            try:
                ch = servers.sync_channel(address)
            except Exception:  # a TLS configuration that cannot be read (tls.TLSError)
                answers[address] = DOWN
                continue
            channels.append(ch)
            future = operator_pb2_grpc.OperatorStub(ch).GetLeader.future(_request(),
                                                                         timeout=per_try)

            def done(f: grpc.Future, address: str = address) -> None:
                try:
                    got = f.result()
                except grpc.RpcError as e:
                    heard.put((address, _answer(e)))
                except Exception:  # cancelled
                    heard.put((address, SILENT))
                else:
                    heard.put((address, Claim(got.address, got.is_leader)))

            future.add_done_callback(done)
        deadline = time.monotonic() + per_try + 0.5
        for _ in channels:
            try:
                address, answer = heard.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            answers[address] = answer
            if isinstance(answer, Claim) and answer.is_leader:
                break
    finally:
        for ch in channels:
            ch.close()
    return answers


def _after(candidates: Sequence[str], answers: Mapping[str, Answer], left: float,
           pause: float) -> tuple[bool, str | None, float]:
    """What find_leader does after a round of `answers`, `left` seconds before
    its deadline: (done, the leader to return, else the seconds to wait
    before asking again: `pause`, or 0.2 for a pick still electing). A
    refusal from every master is remembered (_refused)."""
    leader = choose_leader(answers)
    if leader is not None and not still_electing(answers, leader):
        return True, leader, 0.0
    if nobody_will_say(answers):
        _refused(candidates, answers)
        return True, None, 0.0
    wait = 0.2 if leader is not None else pause
    if wait >= left:
        return True, leader, 0.0
    return False, leader, wait


async def find_leader(masters: str | Sequence[str], timeout: float,
                      per_try: float = ASK_SECONDS) -> str | None:
    """The leading master of `masters` ("host:port[,…]" or a list), as
    choose_leader() decides from every master's answer; asked again (after
    0.2 s, growing to 2 s) while the answers do not say, for up to `timeout`
    seconds. A pick that names itself without leading yet (still_electing)
    is asked again every 0.2 s and returned only when `timeout` is near.
    None when the answers did not say in that time, or at once when a master
    refused to say and none answered (an access rule without view_cluster:
    then it is not asked again by this process) or every master is down (or
    the TLS configuration cannot be read: the caller's own dial says so).
    Raises ValueError when `masters` names none."""
    candidates = parse_masters(masters)
    if _refused(candidates, {}):
        return None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pause = 0.2
    while True:
        answers = await ask_masters(candidates, min(per_try, max(0.1, deadline - loop.time())))
        done, leader, wait = _after(candidates, answers, deadline - loop.time(), pause)
        if done:
            return leader
        await asyncio.sleep(wait)
        pause = min(2.0, pause * 1.5)


def find_leader_sync(masters: str | Sequence[str], timeout: float,
                     per_try: float = ASK_SECONDS) -> str | None:
    """find_leader() for blocking code (the CLI)."""
    candidates = parse_masters(masters)
    if _refused(candidates, {}):
        return None
    deadline = time.monotonic() + timeout
    pause = 0.2
    while True:
        answers = ask_masters_sync(candidates,
                                   min(per_try, max(0.1, deadline - time.monotonic())))
        done, leader, wait = _after(candidates, answers, deadline - time.monotonic(), pause)
        if done:
            return leader
        time.sleep(wait)
        pause = min(2.0, pause * 1.5)
