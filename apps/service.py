"""The apps service's shell: a framework (juggler.sdk) on the master, the store,
the leader election and the REST API around the pure core (state.py).

    start()  ─▶ REST API up (standbys proxy to the leader, rest.py)
             ─▶ elected (etcd) or alone (embedded store)
             ─▶ lead(): read the store ─▶ subscribe as the framework the store
                names ─▶ reconcile every instance the store knows (explicitly)
                and every task of the framework (implicitly: orphans are
                killed) ─▶ act: offers, updates, requests, ticks

The core's commands are carried out in order by `_execute`: store writes are
gathered and written in one batch before any launch, kill or answer that
follows them (a restarted service knows of every task it may have
launched); launches, kills and declines then go out together. A launch the
master refuses turns its instances into TASK_DROPPED updates for the core,
which launches them again elsewhere. A status update is acknowledged only
after what it changed is in the store.

With etcd, several instances elect a leader under `<prefix>apps/election/`
(the leader's REST URL is the election value); desired state lives under
`<prefix>apps/`. Without etcd the store is a file in `--work-dir` and the
instance leads alone. A leader that loses its term stops acting at once
(`lost`); the daemon then starts over as a standby.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, generate_latest

from juggler.apps import cluster, rest, views
from juggler.apps.commands import (
    Command,
    Decline,
    Emit,
    Kill,
    Launch,
    Persist,
    RemoveLayer,
    Revive,
    Signal,
    Suppress,
)
from juggler.apps.container_requests import ContainerRequests
from juggler.apps.containers import CS
from juggler.apps.containers_state import ContainersState
from juggler.apps.definition import AppDefinition, parse_app
from juggler.apps.events import EventBus
from juggler.apps.instances import Instance
from juggler.apps.plan import Action, D, Deployment, Versioned
from juggler.apps.rest_access import HttpAccess
from juggler.apps.state import AppsState
from juggler.apps.views import iso
from juggler.common import logs, tls
from juggler.common.access import AccessControl, install_sighup
from juggler.common.clock import Clock, SystemClock
from juggler.common.lifecycle import Step
from juggler.common.tokens import Tokens
from juggler.sdk.framework import Framework, FrameworkError
from juggler.store.interface import Delete, NotRecorded, Put, StoreError
from juggler.v1 import agent_pb2, common_pb2, scheduler_pb2

log = logs.get("apps")

ACCESS_METRICS = ["juggler_access_denied_total", "juggler_access_rules_reloads_total"]
FAILOVER_TIMEOUT = 7 * 86400.0   # Marathon's --failover_timeout default: one week
GATHER_SECONDS = 0.01            # how long offers and updates gather before a decision


@dataclass
class AppsConfig:
    master: str
    etcd: str = ""
    etcd_prefix: str = "/juggler/default/"
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    lease_ttl: int = 5
    work_dir: str = "/var/lib/juggler/apps"
    host: str = "127.0.0.1"   # loopback unless told (cli/daemons.py: TLS or --insecure)
    http_port: int = 8080
    advertise: str = ""
    name: str = "juggler-apps"
    role: str = "*"
    failover_timeout: float = FAILOVER_TIMEOUT
    reconcile_timeout: float = 10.0
    tick_seconds: float = 1.0
    # How often the runs last seen UNREACHABLE are asked about (_reconcile_unreachable).
    unreachable_reconcile_seconds: float = 30.0
    # The Docker Engine API's unix socket (apps/docker_api.py); "" for none.
    docker_socket: str = ""
    docker_socket_group: str = ""
    # Access rules and bearer tokens of the REST and Docker APIs (--acls,
    # --tokens; apps/rest_access.py); "" for none (everything allowed).
    acls: str = ""
    tokens: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Metrics:
    """The service's Prometheus metrics, on the REST port's /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.apps = Gauge("juggler_apps_apps", "Apps defined.", registry=r)
        self.instances = Gauge("juggler_apps_instances",
                               "Instances per app: wanted, live, running, healthy (health "
                               "checks passing, as /v2/apps tasksHealthy).",
                               ["app", "kind"], registry=r)
        self.launch_delay = Gauge("juggler_apps_launch_delay_seconds",
                                  "Seconds until an app may launch again (its backoff).",
                                  ["app"], registry=r)
        self.deployments = Gauge("juggler_apps_deployments_in_progress",
                                 "Deployments in progress.", registry=r)
        self.deployments_ended = Counter("juggler_apps_deployments_total",
                                         "Deployments ended, by outcome.", ["outcome"],
                                         registry=r)
        # Both series exist from the start, at 0, so that rate() and increase()
        # count the first failure (Prometheus's advice on missing series).
        for outcome in ("succeeded", "failed"):
            self.deployments_ended.labels(outcome)
        self.declined = Counter("juggler_apps_offers_declined_total",
                                "Offers an app with instances to launch could not use, by "
                                "reason (InsufficientCpus, UnfulfilledConstraint, ...).",
                                ["reason"], registry=r)
        self.launched = Counter("juggler_apps_instances_launched_total",
                                "Instances launched.", registry=r)
        self.leader = Gauge("juggler_apps_is_leader", "1 on the leading apps service.",
                            registry=r)
        self.containers = Gauge("juggler_apps_containers",
                                "Containers (docker run on the cluster), by Docker's state.",
                                ["state"], registry=r)


class AppsService(ContainerRequests):
    """One instance of the apps service (apps, and containers: container_requests.py).
    Use from one asyncio loop."""

    def __init__(self, config: AppsConfig, store: Any = None, *,
                 clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.store = store
        self.state = AppsState(self.clock, lambda: str(uuid.uuid4()),
                               framework_role=config.role)
        self.containers = ContainersState(self.clock, lambda: secrets.token_hex(32))
        self.state.others_want = self.containers.wants_offers
        self._changes = asyncio.Event()   # set (and replaced) after every decision
        self._next_tick = 0.0              # when the ticker runs next (monotonic)
        self.framework: Framework | None = None
        self.framework_id = ""
        self.election: Any = None
        self.url = ""
        self.port = 0
        self.acting = False
        self.lost = asyncio.Event()
        self.metrics_ = Metrics()
        self._runner: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.bus = EventBus(lambda: iso(self.clock.time()))
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._reconcile_answers: dict[str, common_pb2.TaskStatus] | None = None
        self._reconcile_done = asyncio.Event()
        self._declined_seen: dict[str, int] = {}
        self._background: set[asyncio.Task[Any]] = set()
        # Raises RulesError / TokensError for a bad file (cli/daemons.py checks first).
        self.access = HttpAccess(AccessControl.from_file(config.acls),
                                 Tokens.from_file(config.tokens))

    # -- what rest.py reads ----------------------------------------------------------
    @property
    def leading(self) -> bool:
        return self.acting and (self.election is None or self.election.is_leader)

    def leader_url(self) -> str | None:
        """The leader's REST URL; None while there is none, and while this
        instance, elected, is still taking over (reading the store,
        subscribing): it cannot answer for the apps yet."""
        if self.leading:
            return self.url
        if self.election is None:
            return None
        leader = self.election.leader()
        return None if leader == self.url else leader

    def info(self) -> dict[str, Any]:
        from juggler import __version__

        return {"name": "juggler", "version": __version__, "master": self.config.master,
                "store": "etcd" if self.config.etcd else "embedded",
                "frameworkName": self.config.name, "role": self.config.role,
                "failoverTimeout": self.config.failover_timeout}

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        return self.bus.subscribe()

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.bus.unsubscribe(q)

    def emit(self, event_type: str, body: dict[str, Any]) -> None:
        """An event of the REST layer's own (api_post_event)."""
        self._publish(Emit(event_type, body))

    def metrics(self) -> bytes:
        m, s = self.metrics_, self.state
        m.leader.set(1 if self.leading else 0)
        m.apps.set(len(s.apps))
        m.deployments.set(sum(1 for d in s.deployments.values() if d.state == D.IN_PROGRESS))
        m.instances.clear()
        m.launch_delay.clear()
        now = self.clock.now()
        for a in s.apps.values():
            live = [i for i in a.instances.values() if i.live]
            m.instances.labels(a.id, "wanted").set(a.wanted)
            m.instances.labels(a.id, "live").set(len(live))
            m.instances.labels(a.id, "running").set(sum(i.running for i in live))
            # as /v2/apps tasksHealthy: passing health checks only (0 without checks)
            m.instances.labels(a.id, "healthy").set(views.task_counts(a)[2])
            m.launch_delay.labels(a.id).set(max(0.0, a.delay_until - now))
        by_state = collections.Counter(CS(c.status).name.lower()
                                       for c in self.containers.containers.values())
        for state in CS:
            m.containers.labels(state.name.lower()).set(by_state.get(state.name.lower(), 0))
        for reason, n in s.declined.items():
            seen = self._declined_seen.get(reason, 0)
            if n > seen:
                m.declined.labels(reason).inc(n - seen)
                self._declined_seen[reason] = n
        # The access refusals and reloads (common/access.py's, in the default registry).
        return generate_latest(m.registry) + generate_latest(
            REGISTRY.restricted_registry(ACCESS_METRICS))

    # -- requests (rest.py) -------------------------------------------------------------
    async def deploy(self, targets: dict[str, AppDefinition | None], force: bool = False,
                     restart: Iterable[str] = ()) -> Deployment:
        async with self._lock:
            deployment, cmds = self.state.deploy(targets, force=force, restart=restart)
            await self._execute(cmds)
        log.info("deployment started", deployment=deployment.id,
                 apps=deployment.affected_apps, steps=len(deployment.steps))
        return deployment

    async def cancel(self, deployment_id: str, force: bool) -> Deployment | None:
        async with self._lock:
            rollback, cmds = self.state.cancel(deployment_id, force=force)
            await self._execute(cmds)
        return rollback

    async def kill_instances(self, ids: list[str], scale: bool,
                             wipe: bool) -> tuple[list[Instance], Deployment | None]:
        async with self._lock:
            killed, deployment, cmds = self.state.kill_instances(ids, scale=scale, wipe=wipe)
            await self._execute(cmds)
        return killed, deployment

    async def reset_delay(self, app_id: str) -> None:
        async with self._lock:
            await self._execute(self.state.reset_delay(app_id))

    async def get_version(self, app_id: str, version: str) -> dict[str, Any] | None:
        raw = await self.store.get(f"versions/{app_id}@{version}")
        return None if raw is None else json.loads(raw)

    # -- life cycle --------------------------------------------------------------------
    async def start(self) -> str:
        """Serve the REST API (Marathon's and Docker's), on the docker socket
        too when configured, then lead (alone) or campaign (etcd). Returns the
        REST API's URL. Raises OSError when the port or the socket is taken."""
        self._runner, self.port = await rest.serve(self, self.config.host, self.config.http_port,
                                                   docker=True, access=self.access)
        if self.access.rules.enabled or self.access.tokens is not None:
            try:   # SIGHUP: the rules and tokens files are read again
                install_sighup(self.access.rules.reload,
                               *([self.access.tokens.reload] if self.access.tokens else []))
            except (RuntimeError, ValueError) as e:   # not the main thread (in-process tests)
                log.warning("SIGHUP will not reload the rules", error=str(e))
        if self.config.docker_socket:
            from juggler.apps.docker_api import serve_unix

            try:
                await serve_unix(self._runner, self.config.docker_socket,
                                 self.config.docker_socket_group or None)
            except OSError:
                await self._runner.cleanup()
                raise
            log.info("Docker Engine API listening", socket=self.config.docker_socket)
        host = self.config.host if self.config.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self.url = self.config.advertise or f"{tls.url_scheme()}://{host}:{self.port}"
        if self.config.etcd:
            from juggler.store.election_thread import ElectionThread
            from juggler.store.etcd import EtcdClient, EtcdStore

            def client() -> EtcdClient:
                return EtcdClient(self.config.etcd, ca_cert=self.config.etcd_ca,
                                  cert=self.config.etcd_cert, key=self.config.etcd_key)

            if self.store is None:
                self.store = EtcdStore(client(), self.config.etcd_prefix + "apps/",
                                       owns_client=True)
            self.election = ElectionThread(
                client, self.config.etcd_prefix + "apps/election/", self.url,
                self.config.lease_ttl, endpoints=self.config.etcd, ca_cert=self.config.etcd_ca,
                cert=self.config.etcd_cert, key=self.config.etcd_key)
            self._tasks.append(asyncio.create_task(self._campaign()))
        else:
            if self.store is None:
                from juggler.store.embedded import EmbeddedStore

                self.store = EmbeddedStore(self.config.work_dir)
            self._tasks.append(asyncio.create_task(self._guard(self._lead())))
        log.info("apps service started", url=self.url, master=self.config.master,
                 etcd=self.config.etcd or None)
        return self.url

    async def _guard(self, coro: Any) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the term ends; the daemon starts over
            log.error("apps service stopped acting", error=f"{type(e).__name__}: {e}")
            self.acting = False
            self.lost.set()

    async def _campaign(self) -> None:
        await self.election.campaign()
        lead = asyncio.create_task(self._guard(self._lead()))
        self._tasks.append(lead)
        await self.election.lost.wait()
        log.error("apps leadership lost", reason=self.election.lost_reason)
        self.acting = False
        lead.cancel()
        self.lost.set()

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.framework is not None:
            await self.framework.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.election is not None:
            with contextlib.suppress(Exception):
                await self.election.close()
        if self.store is not None:
            with contextlib.suppress(Exception):
                await self.store.close()

    # -- leading ----------------------------------------------------------------------
    async def _recover(self) -> None:
        apps: dict[str, tuple[Versioned, Versioned | None, list[str], str, int]] = {}
        versions: dict[str, dict[str, AppDefinition]] = {}
        for key, raw in await self.store.range("versions/"):
            app_id, _, version = key.removeprefix("versions/").rpartition("@")
            versions.setdefault(app_id, {})[version] = parse_app(json.loads(raw))

        def versioned(app_id: str, pair: list[str] | None) -> Versioned | None:
            if not pair:
                return None
            d = versions.get(app_id, {}).get(pair[0])
            return None if d is None else Versioned(d, pair[0], pair[1])

        for key, raw in await self.store.range("apps/"):
            app_id = key.removeprefix("apps/")
            r = json.loads(raw)
            current = versioned(app_id, [r["version"], r["configVersion"]])
            if current is None:
                log.error("app without its version in the store; skipped", app=app_id)
                continue
            apps[app_id] = (current, versioned(app_id, r.get("lastGood")),
                            sorted(versions.get(app_id, {})), r.get("lastScalingAt", ""),
                            int(r.get("failures", 0)))
        instances = [Instance.from_record(json.loads(raw))
                     for _, raw in await self.store.range("instances/")]
        deployments = []
        for _, raw in await self.store.range("deployments/"):
            r = json.loads(raw)
            d = Deployment(
                id=r["id"], version=r["version"],
                original={k: versioned(k, v) for k, v in r["original"].items()},
                target={k: versioned(k, v) for k, v in r["target"].items()},
                steps=[[Action(a, app) for a, app in step] for step in r["steps"]],
                started_at=r["startedAt"], deadline=0.0, step=r["step"],
                rollback_of=r.get("rollbackOf", ""))
            d.story.append(Step(self.clock.time(), "deployment", None, D.IN_PROGRESS,
                                "recovered from the store"))
            deployments.append(d)
        self.state.recover(apps, instances, deployments)
        containers = [json.loads(raw) for _, raw in await self.store.range("containers/")]
        removals = []
        for key, raw in await self.store.range("layer_removals/"):
            agent_id, _, name = key.removeprefix("layer_removals/").partition("/")
            removals.append((agent_id, name, json.loads(raw).get("agentAddress", "")))
        self.containers.recover(containers, removals)
        raw = await self.store.get("framework_id")
        self.framework_id = raw.decode() if raw else ""
        log.info("recovered", apps=len(apps), instances=len(instances),
                 deployments=len(deployments), containers=len(containers),
                 framework_id=self.framework_id or None)

    async def _lead(self) -> None:
        await self._recover()
        info = common_pb2.FrameworkInfo(
            id=self.framework_id, name=self.config.name, roles=[self.config.role],
            failover_timeout=self.config.failover_timeout,
            capabilities=[common_pb2.FrameworkInfo.PARTITION_AWARE],
            webui_url=self.url)  # its REST API: the master's UI reads apps through it
        fw = Framework(self.config.master, info, reconnect_timeout=3600.0)
        self.framework = fw
        while True:
            try:
                await fw.subscribe(timeout=30.0)
                break
            except FrameworkError as e:
                if e.code.name == "FAILED_PRECONDITION" and info.id:
                    # Torn down (its failover timeout passed while no instance
                    # of the service ran, or an operator did it): its tasks are
                    # gone. Start as a new framework; reconciliation then finds
                    # every stored instance unknown and launches it again.
                    log.error("the framework was torn down; subscribing as a new one",
                              framework_id=info.id, error=e.message)
                    info.id = ""
                    continue
                log.warning("cannot subscribe yet", error=e.message)
                await asyncio.sleep(1.0)
        if fw.framework_id != self.framework_id:
            self.framework_id = fw.framework_id
            await self.store.put("framework_id", self.framework_id.encode(),
                                 fence=self._fence())
        self.acting = True
        log.info("leading", framework_id=self.framework_id, url=self.url)
        events = asyncio.create_task(self._events(fw))
        self._tasks.append(events)
        await self._reconcile(fw)
        self._tasks.append(asyncio.create_task(self._guard(self._ticker())))
        self._tasks.append(asyncio.create_task(self._guard(self._reconcile_unreachable(fw))))
        await events

    async def _reconcile(self, fw: Framework) -> None:
        """Ask the master about every instance the store knows and about every
        task of the framework, naming each one's agent; the cores drop (or
        end the run of) what the master says does not run (TASK_UNKNOWN,
        TASK_GONE, TASK_GONE_BY_OPERATOR: master/reconciliation.py) and kill
        what they do not know themselves (orphans)."""
        known = {i.id: i.agent_id for i in self.state.instances.values()}
        known.update(self.containers.known_tasks())
        answers: dict[str, common_pb2.TaskStatus] = {}
        self._reconcile_answers = answers
        self._reconcile_done.clear()
        if known:
            await fw.reconcile(known.items())
            deadline = self.clock.now() + self.config.reconcile_timeout
            while set(known) - set(answers) and self.clock.now() < deadline:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._reconcile_done.wait(), 0.2)
                self._reconcile_done.clear()
        self._reconcile_answers = None
        mine = {t: s for t, s in answers.items() if self.containers.owns(t)}
        async with self._lock:
            await self._execute(self.containers.reconciled(mine))
            await self._execute(self.state.reconciled(
                {t: s for t, s in answers.items() if t not in mine}))
        await fw.reconcile()   # implicit: every task of the framework; orphans get killed
        log.info("reconciled", instances=len(known), answered=len(answers))

    async def _events(self, fw: Framework) -> None:
        """Read the master's events. Offers and updates go, in their order,
        to `_work`, which hands the core everything that queued up meanwhile
        at once: under a burst (a thousand instances starting) one decision
        covers many updates instead of one each."""
        inbox: asyncio.Queue[scheduler_pb2.Event] = asyncio.Queue()
        worker = asyncio.create_task(self._work(fw, inbox))
        try:
            async for event in fw.events():
                kind = event.WhichOneof("event")
                if kind in ("offers", "update"):
                    status = event.update.status
                    if kind == "update" and self._reconcile_answers is not None and \
                            status.reason == common_pb2.REASON_RECONCILIATION:
                        self._reconcile_answers[status.task_id] = status
                        self._reconcile_done.set()
                        continue
                    inbox.put_nowait(event)
                elif kind == "subscribed":
                    log.info("re-subscribed", master=event.subscribed.master_address)
                    # A new master leader: ask it again about everything (its
                    # answers arrive as updates; unknown tasks are orphans).
                    self.state.suppressed = None   # the new leader knows nothing of it
                    self._spawn(self._resend_kills())
                    self._spawn(self._quiet(fw.reconcile()))
                    self._spawn(self._quiet(fw.revive()))
                elif kind == "error":
                    raise RuntimeError(
                        f"the master dropped the framework: {event.error.message}")
                if worker.done():
                    worker.result()  # its failure ends the term
        finally:
            worker.cancel()

    async def _work(self, fw: Framework, inbox: asyncio.Queue[scheduler_pb2.Event]) -> None:
        while True:
            batch = [await inbox.get()]
            # Updates come a few at a time while a thousand instances start:
            # a moment's wait lets them gather into one decision (a decision
            # costs the same for one update as for a hundred).
            await asyncio.sleep(GATHER_SECONDS)
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            # The agents' ports, for starts waiting on fixed host ports that
            # are allocated everywhere (they fail, as Docker's): None if none waits.
            agents = (await self.offer_agents() if any(
                e.WhichOneof("event") == "offers" for e in batch) else None)
            async with self._lock:
                i = 0
                while i < len(batch):
                    if batch[i].WhichOneof("event") == "offers":
                        cmds, rest = self.containers.on_offers(batch[i].offers.offers, agents)
                        await self._execute(cmds)
                        if rest:
                            await self._execute(self.state.on_offers(rest))
                        i += 1
                        continue
                    j = i
                    while j < len(batch) and batch[j].WhichOneof("event") == "update":
                        j += 1
                    statuses = [e.update.status for e in batch[i:j]]
                    # What the updates changed is in the store before they are
                    # acknowledged (the agent would send them again otherwise).
                    await self._execute(self.containers.on_updates(
                        [s for s in statuses if self.containers.owns(s.task_id)]))
                    await self._execute(self.state.on_updates(
                        [s for s in statuses if not self.containers.owns(s.task_id)]))
                    for status in statuses:
                        if status.uuid:
                            self._spawn(self._quiet(fw.acknowledge(status)))
                    i = j

    def _spawn(self, coro: Any) -> None:
        """Run `coro` on its own, kept until it ends (acknowledgements: the
        SDK sends those made meanwhile together)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quiet(self, coro: Any) -> None:
        try:
            await coro
        except FrameworkError as e:
            log.warning("call failed", error=e.message)

    async def _reconcile_unreachable(self, fw: Framework) -> None:
        """Every `unreachable_reconcile_seconds`, ask the master about the runs
        last seen UNREACHABLE, naming their agents. A master that holds such a
        task tells its every change anyway; one that does not (a new leader
        since) tells nothing when the agent comes back without it, and answers
        only when asked (master/reconciliation.py: TASK_GONE, or
        TASK_GONE_BY_OPERATOR once that agent is gone for good). Marathon
        reconciles every 600 s for the same reason (--reconciliation_interval);
        asking only about these runs costs nothing when all is well."""
        while True:
            await asyncio.sleep(self.config.unreachable_reconcile_seconds)
            async with self._lock:
                asked = {**self.state.unreachable_tasks(), **self.containers.unreachable_tasks()}
            if asked:
                with contextlib.suppress(FrameworkError):
                    await fw.reconcile(asked.items())

    async def _ticker(self) -> None:
        while True:
            wakes = [w for w in (self.state.next_wakeup(), self.containers.next_wakeup())
                     if w is not None]
            delay = self.config.tick_seconds
            if wakes:
                delay = min(delay, max(0.01, min(wakes) - self.clock.now()))
            # A decision may bring the next wakeup closer (a restart delay of 100 ms).
            self._next_tick = self.clock.now() + delay
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            async with self._lock:
                await self._execute(self.containers.tick())
                await self._execute(self.state.tick())

    def _abdicate(self, error: Exception) -> None:
        """A write of the store failed (etcd unreachable, or this term ended:
        NotLeader): what the core decided is not recorded, and the core no
        longer matches the store. Stop acting on it; the daemon starts over
        as a standby (cli/daemons.py), and whoever leads next (this process
        again, or another) reads the store afresh. Nothing is sent for the
        decision: the commands after the writes are not carried out."""
        if self.acting:
            log.error("a write to the store failed: this instance stops acting and starts "
                      "over from the store", error=f"{type(error).__name__}: {error}")
        self.acting = False
        self.lost.set()

    def _fence(self) -> Any:
        return self.election.fence() if self.election is not None else None

    # -- carrying out commands ----------------------------------------------------------
    async def _execute(self, cmds: list[Command]) -> None:
        try:
            await self._carry_out(cmds)
        finally:
            if cmds:
                self._changed()

    def _changed(self) -> None:
        """Wake whoever waits on a state change (`until`) and the ticker."""
        self._changes.set()
        self._changes = asyncio.Event()
        wake = self.containers.next_wakeup()
        if wake is not None and wake < self._next_tick:
            self._wake.set()

    async def _carry_out(self, cmds: list[Command]) -> None:
        writes: dict[str, Any] = {}
        calls: list[Any] = []
        launches: list[Launch] = []
        for cmd in cmds:
            if isinstance(cmd, Persist):
                writes.update(cmd.writes)
            elif isinstance(cmd, Emit):
                self._publish(cmd)
            elif isinstance(cmd, Launch):
                launches.append(cmd)
            elif isinstance(cmd, Revive):
                self.state.revived()   # the apps' core decides suppression again
                calls.append(cmd)
            else:
                calls.append(cmd)
        if self.lost.is_set():
            # Abdicated (or its term ended): whatever it decides now must not
            # be written or sent; the process starts over from the store.
            raise NotRecorded("this apps service instance no longer acts (it starts over)")
        if writes:
            ops = [Delete(k) if v is None else Put(k, json.dumps(v).encode())
                   for k, v in writes.items()]
            # etcd takes at most --max-txn-ops keys a transaction: a decision
            # over more (a launch of hundreds of instances) goes in several,
            # each fenced.
            size = getattr(self.store, "max_txn_ops", 0) or len(ops)
            try:
                for i in range(0, len(ops), size):
                    await self.store.batch(ops[i:i + size], fence=self._fence())
            except Exception as e:   # StoreError, NotLeader, an embedded store's OSError
                self._abdicate(e)
                raise NotRecorded(str(e) or type(e).__name__) from e
            _log_containers(writes)
        fw = self.framework
        if fw is None or not (calls or launches):
            return
        # Revive and Suppress go once the rest is done, in their order: a
        # Revive that reached the master before a Decline of the same
        # decision would leave that Decline's filter (REFUSE_IDLE) in place.
        offer_state = [c for c in calls if isinstance(c, Revive | Suppress)]
        calls = [c for c in calls if not isinstance(c, Revive | Suppress)]
        results = await asyncio.gather(*(self._launch(fw, c) for c in launches),
                                       *(self._call(fw, c) for c in calls),
                                       return_exceptions=True)
        for cmd in offer_state:
            results.append(await self._call(fw, cmd))
        for r in results:   # a write of a decision made inside a call (_call's NOT_FOUND)
            if isinstance(r, NotRecorded):
                raise r
        dropped: list[common_pb2.TaskStatus] = []
        for r in results[:len(launches)]:
            if isinstance(r, list):
                dropped.extend(r)
        if dropped:
            await self._execute(self.state.on_updates(dropped))

    async def _launch(self, fw: Framework, cmd: Launch) -> list[common_pb2.TaskStatus]:
        """Launch; a refused launch comes back as TASK_DROPPED updates."""
        try:
            # What the tasks leave of the offer comes back at once: a rolling
            # restart launches in waves, each as soon as the last made room.
            await fw.launch([cmd.offer_id], cmd.tasks, refuse_seconds=0)
            self.metrics_.launched.inc(len(cmd.tasks))
            return []
        except Exception as e:   # FrameworkError, or anything else: not launched
            message = e.message if isinstance(e, FrameworkError) else f"{type(e).__name__}: {e}"
            log.warning("launch refused", offer=cmd.offer_id, tasks=len(cmd.tasks),
                        error=message)
            return [common_pb2.TaskStatus(task_id=t.task_id, agent_id=t.agent_id,
                                          state=common_pb2.TASK_DROPPED,
                                          message=f"launch refused: {message}",
                                          source=common_pb2.SOURCE_MASTER)
                    for t in cmd.tasks]

    async def _call(self, fw: Framework, cmd: Command) -> None:
        try:
            if isinstance(cmd, Decline):
                await fw.decline(cmd.offer_ids, cmd.refuse_seconds)
            elif isinstance(cmd, Kill):
                await fw.kill(cmd.task_id, cmd.agent_id, cmd.grace_seconds, cmd.signal)
            elif isinstance(cmd, Revive):
                await fw.revive()
            elif isinstance(cmd, Suppress):
                await fw.suppress()
            elif isinstance(cmd, Signal):
                await cluster.agent_call(cmd.agent_address, "Signal", agent_pb2.SignalRequest(
                    task_id=cmd.task_id, framework_id=self.framework_id, signal=cmd.signal))
            elif isinstance(cmd, RemoveLayer):
                # On its own: it takes the lock that the caller holds.
                self._spawn(self._remove_layer(cmd))
        except FrameworkError as e:
            if isinstance(cmd, Kill) and e.code.name == "NOT_FOUND":
                # The master knows nothing of it: it ended long ago, or was
                # never launched. Tell the core it is gone.
                status = common_pb2.TaskStatus(task_id=cmd.task_id, agent_id=cmd.agent_id,
                                               state=common_pb2.TASK_KILLED,
                                               message="unknown to the master",
                                               source=common_pb2.SOURCE_MASTER)
                if self.containers.owns(cmd.task_id):
                    await self._execute(self.containers.on_updates([status]))
                else:
                    await self._execute(self.state.on_update(status))
                return
            self._call_failed(cmd, e.message)
        except Exception as e:   # not the SDK's own: no call may be lost silently
            self._call_failed(cmd, f"{type(e).__name__}: {e}")

    def _call_failed(self, cmd: Command, error: str) -> None:
        if isinstance(cmd, Revive | Suppress):
            self.state.suppressed = None      # not known: the next decision says again
        if isinstance(cmd, Kill):   # tick() sends it again
            if self.containers.owns(cmd.task_id):
                self.containers.kill_failed(cmd.task_id)
            else:
                self.state.kill_failed(cmd.task_id)
        log.warning("call failed", call=type(cmd).__name__, error=error)

    async def _resend_kills(self) -> None:
        async with self._lock:
            await self._execute(self.containers.resend_kills())
            await self._execute(self.state.resend_kills())

    async def _remove_layer(self, cmd: RemoveLayer) -> None:
        """Delete a removed container's writable layer on its agent; on
        failure the core tries again later (its agent is away, or the
        container's last run has not ended yet)."""
        try:
            await cluster.agent_call(cmd.agent_address, "RemoveWritableLayer",
                                     agent_pb2.RemoveWritableLayerRequest(
                                         framework_id=self.framework_id, name=cmd.name))
        except grpc.aio.AioRpcError as e:
            log.info("writable layer not removed yet", agent=cmd.agent_id, layer=cmd.name,
                     error=e.details() or e.code().name)
            return
        async with self._lock:
            await self._execute(self.containers.layer_removed(cmd.agent_id, cmd.name))

    def _publish(self, cmd: Emit) -> None:
        event = self.bus.publish(cmd.event_type, cmd.body)
        if cmd.event_type in ("deployment_success", "deployment_failed"):
            self.metrics_.deployments_ended.labels(
                "succeeded" if cmd.event_type == "deployment_success" else "failed").inc()
        if cmd.event_type == "status_update_event":
            log.debug("status update", app=event.get("appId"), task=event.get("taskId"),
                      state=event.get("taskStatus"))
        elif cmd.event_type.startswith("deployment") or cmd.event_type == "app_terminated_event":
            plan = event.get("plan") or {}
            log.info(cmd.event_type, deployment=event.get("id") or plan.get("id"),
                     apps=plan.get("affectedApps"), reason=event.get("reason"))


def _log_containers(writes: dict[str, Any]) -> None:
    """Every container's change as recorded: the trail of its states."""
    for key, v in writes.items():
        if not key.startswith("containers/"):
            continue
        if v is None:
            log.info("container removed", id=key.removeprefix("containers/")[:12])
        else:
            log.info("container", name=v["name"], status=v["status"], desired=v["desired"],
                     task=v["taskId"], launched=v["launched"], agent=v["agentId"] or None,
                     exit_code=v["exitCode"], error=v["error"] or None)


__all__ = ["AppsConfig", "AppsService", "NotRecorded", "StoreError"]
