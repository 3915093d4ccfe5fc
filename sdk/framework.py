"""A framework's connection to the master: one Subscribe stream plus unary calls.

Every unary call carries the framework id and the stream id of the current
subscription, as the Scheduler API requires. Errors surface as FrameworkError
with the gRPC status code and the master's message.

`master` may list several masters ("h1:5050,h2:5050,h3:5050"): the framework
finds the leader (standbys name it when they refuse a call) and, when the
leader changes or the stream breaks, re-subscribes with its framework id; the
new stream starts with a fresh `subscribed` event, which `events()` yields.

TLS: the connection uses the process's TLS configuration (common/tls.py):
call `juggler.common.tls.configure(TLSConfig(ca, cert, key))` before
connecting to a cluster started with --tls-* (the certificate's common name
is the framework's principal).

Acknowledgements go out in batches, one Acknowledge call at a time: those
made while a call is under way wait for it and then go together in the next
(a framework acknowledging a burst of a thousand updates makes a few dozen
calls, not a thousand; a lone one goes at once). Each `acknowledge()` still
returns or raises for its own update: the master applies a batch all or
nothing, so when it refuses one, the batch is sent again one by one and only
the culprit's caller sees the error.

Errors. Every call raises FrameworkError, never a bare grpc error (`stub`
aside: it is the raw stub); its `code` is the gRPC status (scheduler.proto
lists them) and `message` the master's words. Every unary call (launch,
decline, kill, acknowledge, revive, suppress, reconcile, teardown) may raise,
besides what its own docstring says:

  NOT_FOUND            the framework is not subscribed (unknown, or torn down)
  FAILED_PRECONDITION  this stream is not the framework's current subscription
                       (another instance subscribed with its id): subscribe()
  UNAVAILABLE          the master is not the leader (any more), cannot be
                       reached, or the call was cut off because the framework
                       re-subscribed meanwhile (events() re-subscribes to the
                       new leader): call again
  DEADLINE_EXCEEDED    no answer within 30 seconds

and AssertionError when called before subscribe(). Times are seconds
throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import grpc

from juggler.common import servers
from juggler.common.leader import (
    LeaderFollower,
    backoff,
    find_leader,
    from_standby,
    leader_of,
    parse_masters,
)
from juggler.v1 import common_pb2, scheduler_pb2, scheduler_pb2_grpc

# Seconds subscribe() waits, each round, for the masters to say who leads
# (common/leader.py find_leader) before it dials as LeaderFollower says.
FIND_SECONDS = 8.0


class FrameworkError(Exception):
    """A call failed: `code` (grpc.StatusCode) and `message` (the master's,
    or the SDK's own when no master answered). `leader` is the address
    ("host:port") a standby master named as the leader, None if it named
    none; `standby` is True when the refusal came from a standby master;
    `slow` when the master's connection was not set up within
    servers.CONNECT_SECONDS (frozen, or overloaded)."""

    def __init__(self, code: grpc.StatusCode, message: str, leader: str | None = None,
                 standby: bool = False, *, slow: bool = False) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        # A standby master's answer names the leader (if it knows one).
        self.leader = leader
        self.standby = standby
        self.slow = slow


def _error(e: grpc.aio.AioRpcError) -> FrameworkError:
    return FrameworkError(e.code(), e.details() or "")


class Framework:
    """One framework's connection. Not thread-safe: use it from one asyncio
    event loop. After subscribe(), `framework_id` and `stream_id` hold the
    master's answer (and `info.id` the framework id); `master` is the
    address ("host:port") of the master subscribed to."""

    def __init__(self, master: str, info: common_pb2.FrameworkInfo, *,
                 reconnect_timeout: float = 60.0) -> None:
        """`master`: "host:port", or several comma-separated (all asked who
        leads, then tried in that order: subscribe()); `info`: the framework
        to subscribe as (an empty `id` for a new framework; set it to fail
        over to an existing one); it is kept and
        updated with the id the master assigns. `reconnect_timeout`: seconds
        events() keeps re-subscribing after the stream breaks before it gives
        up. Nothing is sent until subscribe(). ValueError when `master` names
        no address."""
        self.masters = parse_masters(master)
        self.master = self.masters[0]
        self.reconnect_timeout = reconnect_timeout
        self.info = info
        self.framework_id = info.id
        self.stream_id = ""
        self._channel: grpc.aio.Channel | None = None
        self._stub: scheduler_pb2_grpc.SchedulerStub | None = None
        self._call: grpc.aio.UnaryStreamCall | None = None
        self._subscribed = scheduler_pb2.Event()
        # The masters in the order they would lead, as the last one subscribed to said.
        self._succession: list[str] = []
        self._closing = False
        # The leader whose stream broke without an answer: re-subscribing tries
        # it once more, then tells standbys it is lost (common/leader.py).
        self._broken: str | None = None
        # Acknowledgements waiting for the next call, each with the future its
        # caller awaits, and the task making the calls (None when idle).
        self._acks: list[tuple[scheduler_pb2.Acknowledgement, asyncio.Future[None]]] = []
        self._ack_sender: asyncio.Task[None] | None = None

    async def subscribe(self, timeout: float = 10.0) -> scheduler_pb2.Event.Subscribed:
        """Open the stream on the leading master and wait for SUBSCRIBED.

        With several masters, asks them all who leads (common/leader.py
        find_leader: a master's claim about itself wins; one that does not
        answer is not believed to lead because standbys still name it) and
        subscribes there; otherwise, or when that fails, tries the masters in
        turn (going straight to the leader a standby names), passing over a
        master other than the one found whose connection is not set up
        within a second (frozen; dialled once more without that check after
        every master was tried: a live but slow leader), until one confirms
        or `timeout` seconds pass. Returns the
        Subscribed event: framework_id, stream_id, heartbeat_interval_seconds,
        master_address and the masters in the order they would lead; sets
        `framework_id`, `stream_id` and `info.id`. A previous stream of this
        object is closed first.

        Raises FrameworkError: INVALID_ARGUMENT for a malformed FrameworkInfo
        (a bad id or role, a role listed twice, a failover_timeout that is not
        a number ≥ 0); FAILED_PRECONDITION when `info.id` names a framework
        that was torn down; UNAVAILABLE or DEADLINE_EXCEEDED when no master
        confirmed within `timeout` (the last master's refusal or silence)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The very policy agents follow (common/leader.py).
        follower = LeaderFollower(self.masters)
        follower.follow_succession(self._succession)
        broken, self._broken = self._broken, None
        if broken:
            follower.session_broke(broken, loop.time())
        attempt = 0
        dialled: set[str] = set()
        slow: set[str] = set()  # failed only the connection check
        again: set[str] = set()  # dialled once more without it
        while True:
            found = None
            if len(follower.masters) > 1:
                found = await find_leader(follower.masters,
                                          max(0.1, min(FIND_SECONDS, deadline - loop.time())))
                if found is not None:
                    follower.go_to(found)
            address = follower.address
            # No check for the master found (it just answered), nor for a slow
            # one's second try once every master was dialled (a live but slow
            # leader still gets the subscription).
            retry = (address in slow and address not in again
                     and dialled.issuperset(follower.masters))
            check = len(follower.masters) > 1 and address != found and not retry
            if retry:
                again.add(address)
            dialled.add(address)
            try:
                return await self._subscribe_to(address,
                                                max(0.1, deadline - loop.time()),
                                                follower.metadata(),
                                                connect_check=check)
            except FrameworkError as e:
                if e.code not in (grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.DEADLINE_EXCEEDED) or loop.time() >= deadline:
                    raise
                if e.slow:
                    slow.add(address)
                delay = follower.ended(loop.time(), answered=e.standby, leader=e.leader,
                                       registered=False)
                attempt += 1
                if found is not None:  # the leader found refused: do not ask again at once
                    delay = max(delay, backoff(attempt, base=0.1, cap=1.0))
                if loop.time() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)

    async def _subscribe_to(self, address: str, timeout: float,
                            metadata: tuple[tuple[str, str], ...] = (),
                            connect_check: bool = False,
                            ) -> scheduler_pb2.Event.Subscribed:
        await self._close_stream()
        self.master = address
        self._channel = servers.channel(address)
        if connect_check and not await servers.connects(self._channel):
            raise FrameworkError(grpc.StatusCode.UNAVAILABLE,
                                 f"no answer from the master at {address} within "
                                 f"{servers.CONNECT_SECONDS:g} s (stopped or overloaded?)",
                                 slow=True)
        self._stub = scheduler_pb2_grpc.SchedulerStub(self._channel)
        self._call = self._stub.Subscribe(scheduler_pb2.SubscribeRequest(framework=self.info),
                                          metadata=metadata)
        try:
            first = await asyncio.wait_for(self._call.read(), timeout)
        except grpc.aio.AioRpcError as e:
            raise FrameworkError(e.code(), e.details() or "", leader_of(e),
                                 from_standby(e)) from None
        except TimeoutError:
            raise FrameworkError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                 f"no answer from the master at {address}") from None
        if first is grpc.aio.EOF:
            raise FrameworkError(grpc.StatusCode.UNAVAILABLE, f"{address} closed the stream")
        if first.WhichOneof("event") != "subscribed":
            # E.g. an `error` from a master that is stepping down: try again.
            raise FrameworkError(grpc.StatusCode.UNAVAILABLE,
                                 f"{address} did not confirm the subscription "
                                 f"({first.WhichOneof('event')})")
        self.framework_id = first.subscribed.framework_id
        self.stream_id = first.subscribed.stream_id
        self.info.id = self.framework_id
        self._subscribed = first
        self._succession = list(first.subscribed.masters)
        return first.subscribed

    async def events(self, *, reconnect: bool = True) -> AsyncIterator[scheduler_pb2.Event]:
        """The stream's events (scheduler_pb2.Event, one of subscribed, offers,
        rescind, update, failure, error, heartbeat), in the master's order.

        When the stream breaks (the master died or lost its leadership) and
        `reconnect` is set, re-subscribe with the framework id (for up to
        `reconnect_timeout` seconds) and go on: the new stream begins with a
        `subscribed` event. The iteration ends after an `error` event, which
        it yields (the master dropped this stream: the framework was torn
        down, or another instance subscribed with its id), when the stream
        ends and `reconnect` is off, or after close().

        Raises FrameworkError: what subscribe() raises when re-subscribing
        fails (UNAVAILABLE or DEADLINE_EXCEEDED after `reconnect_timeout`,
        FAILED_PRECONDITION if the framework was torn down meanwhile), and the
        code of any other error the stream ends with. AssertionError before
        subscribe()."""
        assert self._call is not None, "subscribe() first"
        while True:
            try:
                while True:
                    event = await self._call.read()
                    if event is grpc.aio.EOF:
                        break
                    yield event
                    if event.WhichOneof("event") == "error":
                        return  # the master dropped us on purpose: do not come back
            except grpc.aio.AioRpcError as e:
                if e.code() == grpc.StatusCode.CANCELLED and self._closing:
                    return
                if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                    grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                    raise _error(e) from None
                self._broken = self.master  # broke off without a word: gone, or a blip
            if not reconnect or self._closing or not self.framework_id:
                return
            await self.subscribe(self.reconnect_timeout)
            yield self._subscribed

    @property
    def stub(self) -> scheduler_pb2_grpc.SchedulerStub:
        """The generated Scheduler stub on the current channel, for calls the
        SDK does not wrap (its errors are grpc.aio.AioRpcError). AssertionError
        before subscribe()."""
        assert self._stub is not None, "subscribe() first"
        return self._stub

    async def _unary(self, method: str, request: object) -> None:
        try:
            await getattr(self.stub, method)(request, timeout=30)
        except grpc.aio.AioRpcError as e:
            raise _error(e) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller's own cancellation
            # Re-subscribing (after a failover) closed the channel under this call.
            raise FrameworkError(grpc.StatusCode.UNAVAILABLE,
                                 f"{method} was cut off: the framework re-subscribed to "
                                 f"{self.master}; call again") from None

    async def launch(self, offer_ids: Iterable[str], tasks: Iterable[common_pb2.TaskInfo],
                     refuse_seconds: float | None = None) -> None:
        """Accept offers (all of one agent and one role) and launch `tasks` on
        them; the resources the tasks leave unused go back, refused to this
        framework on that agent for `refuse_seconds` (None: the master's
        default, 5 s; 0: not at all). Returns once the master accepted: the
        tasks' status updates arrive through events().

        Raises FrameworkError (besides the module's list): INVALID_ARGUMENT for
        no offer id or one given twice, offers of several agents or roles, a
        task the master's task check refuses (the message names the task and
        the field), a task id already in use, a task naming another agent than
        the offers', tasks that need more than the
        offers hold, or a refuse_seconds that is not a number ≥ 0; NOT_FOUND
        for an offer that is not valid any more (used, declined, rescinded);
        PERMISSION_DENIED for another framework's offer. Nothing is launched
        when the call is refused."""
        await self._unary("Accept", scheduler_pb2.AcceptRequest(
            framework_id=self.framework_id, stream_id=self.stream_id, offer_ids=list(offer_ids),
            operations=[scheduler_pb2.Operation(
                launch=scheduler_pb2.Operation.Launch(tasks=list(tasks)))],
            filters=_filters(refuse_seconds)))

    async def decline(self, offer_ids: Iterable[str], refuse_seconds: float | None = None) -> None:
        """Return offers unused; their resources are not offered to this
        framework again, on those agents, for `refuse_seconds` (None: the
        master's default, 5 s; 0: no filter). Raises FrameworkError (besides
        the module's list): INVALID_ARGUMENT for no offer id, one given twice,
        or a refuse_seconds that is not a number ≥ 0; NOT_FOUND for an offer
        that is not valid any more; PERMISSION_DENIED for another framework's
        offer."""
        await self._unary("Decline", scheduler_pb2.DeclineRequest(
            framework_id=self.framework_id, stream_id=self.stream_id, offer_ids=list(offer_ids),
            filters=_filters(refuse_seconds)))

    async def kill(self, task_id: str, agent_id: str = "",
                   grace_period_seconds: float | None = None, signal: str = "") -> None:
        """Kill a task: SIGTERM (or `signal`, a name or number: the first
        signal, e.g. an image's StopSignal; empty: the task's own), then
        SIGKILL after `grace_period_seconds` (None: the task's own kill
        policy). `agent_id` (optional) names the
        agent that runs it, for a task this master may not know yet (after a
        failover). The master records the kill and re-sends it until the task
        ends, even while its agent is away; the terminal update (TASK_KILLED,
        or how else it ended) arrives through events(). A task that already
        ended is left alone.

        Raises FrameworkError (besides the module's list): NOT_FOUND for a task
        the master does not know (or no longer: its end was acknowledged)
        unless an agent that may bring it back is away; INVALID_ARGUMENT for a
        grace period that is not a number ≥ 0, or a signal that is none."""
        request = scheduler_pb2.KillRequest(framework_id=self.framework_id,
                                            stream_id=self.stream_id, task_id=task_id,
                                            agent_id=agent_id)
        if grace_period_seconds is not None:
            request.kill_policy.grace_period_seconds = grace_period_seconds
        if signal:
            request.kill_policy.signal = signal
        await self._unary("Kill", request)

    async def acknowledge(self, status: common_pb2.TaskStatus) -> None:
        """Acknowledge an update if it needs it (only updates with a uuid do;
        for others this returns at once). Until acknowledged, the agent sends
        the update again. Returns when the master took this acknowledgement
        (batched with others made meanwhile, as the module says).

        Raises FrameworkError for this update alone (besides the module's
        list): INVALID_ARGUMENT when the update names another agent than the
        task's; NOT_FOUND for a task the master does not know on an agent that
        is not registered."""
        if not status.uuid:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        # Its error is read here too, so a caller that gave up leaves no
        # "exception was never retrieved" behind.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._acks.append((scheduler_pb2.Acknowledgement(
            agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid), done))
        if self._ack_sender is None:
            self._ack_sender = asyncio.ensure_future(self._send_acks())
        # Shielded: a caller that gives up does not cancel the others' call.
        await asyncio.shield(done)

    async def _send_acks(self) -> None:
        try:
            await asyncio.sleep(0)  # the acknowledgements of this loop turn join in
            while self._acks:
                batch, self._acks = self._acks, []
                await self._acknowledge_batch(batch)
        finally:
            self._ack_sender = None

    async def _acknowledge_batch(
            self, batch: list[tuple[scheduler_pb2.Acknowledgement, asyncio.Future[None]]]) -> None:
        def request(acks: list[scheduler_pb2.Acknowledgement]) -> scheduler_pb2.AcknowledgeRequest:
            if len(acks) == 1:
                return scheduler_pb2.AcknowledgeRequest(
                    framework_id=self.framework_id, stream_id=self.stream_id,
                    agent_id=acks[0].agent_id, task_id=acks[0].task_id, uuid=acks[0].uuid)
            return scheduler_pb2.AcknowledgeRequest(
                framework_id=self.framework_id, stream_id=self.stream_id, acknowledgements=acks)

        def settle(future: asyncio.Future[None], error: BaseException | None) -> None:
            if not future.done():
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(error)

        try:
            await self._unary("Acknowledge", request([ack for ack, _ in batch]))
        except FrameworkError as e:
            if len(batch) == 1 or e.code not in (grpc.StatusCode.NOT_FOUND,
                                                 grpc.StatusCode.INVALID_ARGUMENT):
                for _, future in batch:
                    settle(future, e)
                return
            # One of them was refused, so none was applied: one call each.
            for ack, future in batch:
                try:
                    await self._unary("Acknowledge", request([ack]))
                except FrameworkError as one:
                    settle(future, one)
                else:
                    settle(future, None)
            return
        except Exception as e:  # unexpected: its callers hear of it, later batches go on
            for _, future in batch:
                settle(future, e)
            return
        except BaseException:  # cancelled (the loop is closing): so are the callers' waits
            for _, future in batch:
                future.cancel()
            raise
        for _, future in batch:
            settle(future, None)

    async def revive(self, roles: Iterable[str] = ()) -> None:
        """Offers again in `roles` (all of the framework's when empty): ends a
        suppress() and clears the refusal filters of decline() and launch().
        Raises FrameworkError (besides the module's list): INVALID_ARGUMENT for
        a role that is not one of the framework's."""
        await self._unary("Revive", scheduler_pb2.ReviveRequest(
            framework_id=self.framework_id, stream_id=self.stream_id, roles=list(roles)))

    async def suppress(self, roles: Iterable[str] = ()) -> None:
        """No offers in `roles` (all of the framework's when empty) until
        revive(); offers already made stay valid. Raises FrameworkError
        (besides the module's list): INVALID_ARGUMENT for a role that is not
        one of the framework's."""
        await self._unary("Suppress", scheduler_pb2.SuppressRequest(
            framework_id=self.framework_id, stream_id=self.stream_id, roles=list(roles)))

    async def reconcile(self, tasks: Iterable[tuple[str, str]] = ()) -> None:
        """Ask for the latest state of `tasks`, (task_id, agent_id) pairs
        (agent_id may be ""), or of every task of the framework when empty.
        The answers arrive through events() as updates without a uuid (not to
        be acknowledged), reason REASON_RECONCILIATION. A task the master does
        not hold is answered by what it knows of the agent given (Mesos's rule,
        master/reconciliation.py): TASK_GONE when that agent is registered
        without it, TASK_UNREACHABLE, TASK_GONE_BY_OPERATOR when it is gone for
        good (TASK_LOST for all three to a framework not partition-aware),
        TASK_UNKNOWN when no agent or an unknown one is given; none yet for a
        task whose agent a new leader still waits for (ask again later).
        Raises only the module's list."""
        await self._unary("Reconcile", scheduler_pb2.ReconcileRequest(
            framework_id=self.framework_id, stream_id=self.stream_id,
            tasks=[scheduler_pb2.ReconcileRequest.Task(task_id=t, agent_id=a) for t, a in tasks]))

    async def teardown(self) -> None:
        """End the framework for good: its offers are rescinded, every task is
        killed, its stream ends (events() yields an `error` and stops) and its
        id can never subscribe again. Raises only the module's list."""
        await self._unary("Teardown", scheduler_pb2.TeardownRequest(
            framework_id=self.framework_id, stream_id=self.stream_id))

    async def _close_stream(self) -> None:
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def close(self) -> None:
        """Close the stream and the channel (events() ends) without tearing the
        framework down: its tasks run on for its failover_timeout, and another
        Framework with the same id can subscribe meanwhile. Raises nothing."""
        self._closing = True
        await self._close_stream()


def _filters(refuse_seconds: float | None) -> common_pb2.Filters | None:
    if refuse_seconds is None:
        return None
    return common_pb2.Filters(refuse_seconds=refuse_seconds)
