"""The apps service's pure core (apps/state.py), driven with a fake clock and a
small simulated cluster: agents whose offers are all their free resources,
tasks that start when launched and end when killed. No master, no processes:
what a real cluster adds is tested in tests/integration/test_apps.py."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from juggler.apps.commands import AppsError, Decline, Kill, Launch, Persist, Revive, Suppress
from juggler.apps.constraints import Constraint
from juggler.apps.definition import (
    AppDefinition,
    HealthCheckDef,
    UnreachableStrategy,
    UpgradeStrategy,
)
from juggler.apps.plan import D, bounds, plan, roll
from juggler.apps.state import AppsState
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb

FAST = UpgradeStrategy(min_healthy_seconds=0.0)


def app(app_id: str = "/web", **kw: object) -> AppDefinition:
    kw.setdefault("cmd", "sleep 1000")
    kw.setdefault("cpus", 0.1)
    kw.setdefault("mem", 16.0)
    kw.setdefault("upgrade_strategy", FAST)
    return AppDefinition(id=app_id, **kw)  # type: ignore[arg-type]


class Sim:
    """Agents, offers and tasks around one AppsState. `auto_run`: launched
    tasks report RUNNING (and healthy when `healthy(task)` says so) at once."""

    def __init__(self, agents: int = 3, cpus: float = 4.0, mem: float = 4096.0,
                 attributes: dict[str, dict[str, str]] | None = None) -> None:
        self.clock = FakeClock()
        ids = itertools.count(1)
        self.core = AppsState(self.clock, lambda: f"id{next(ids)}")
        self.agents = {f"a{i}": Resources({"cpus": cpus, "mem": mem, "disk": 1000})
                       for i in range(agents)}
        self.attributes = attributes or {}
        self.tasks: dict[str, pb.TaskInfo] = {}
        self.store: dict[str, object] = {}
        self.log: list[object] = []
        self.healthy = lambda task: None
        self.auto_run = True
        self.offer_ids = itertools.count(1)

    def run(self, cmds: list[object]) -> None:
        for c in cmds:
            self.log.append(c)
            if isinstance(c, Persist):
                for k, v in c.writes.items():
                    if v is None:
                        self.store.pop(k, None)
                    else:
                        self.store[k] = v
            elif isinstance(c, Launch):
                for t in c.tasks:
                    assert f"instances/{t.task_id}" in self.store, "launched before persisted"
                    self.tasks[t.task_id] = t
                    self.agents[t.agent_id] = self.agents[t.agent_id] - \
                        Resources.from_proto(t.resources)
                if self.auto_run:
                    for t in c.tasks:
                        self.update(t.task_id, pb.TASK_RUNNING, healthy=self.healthy(t))
            elif isinstance(c, Kill) and c.task_id in self.tasks:
                self.update(c.task_id, pb.TASK_KILLED)

    def update(self, task_id: str, state: int, healthy: bool | None = None) -> None:
        t = self.tasks[task_id]
        status = pb.TaskStatus(task_id=task_id, agent_id=t.agent_id, state=state)
        if healthy is not None:
            status.healthy = healthy
        if state in (pb.TASK_KILLED, pb.TASK_FAILED, pb.TASK_FINISHED, pb.TASK_LOST):
            del self.tasks[task_id]
            self.agents[t.agent_id] = self.agents[t.agent_id] + Resources.from_proto(t.resources)
        self.run(self.core.on_update(status))

    def offer(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            offers = []
            for agent_id, free in sorted(self.agents.items()):
                o = pb.Offer(id=f"o{next(self.offer_ids)}", agent_id=agent_id,
                             hostname=f"host-{agent_id}", resources=free.to_proto())
                o.attributes.update(self.attributes.get(agent_id, {}))
                offers.append(o)
            self.run(self.core.on_offers(offers))

    def tick(self, seconds: float = 1.0) -> None:
        self.clock.advance(seconds)
        self.run(self.core.tick())

    def deploy(self, *defs: AppDefinition, force: bool = False, **kw: object):
        d, cmds = self.core.deploy({x.id: x for x in defs}, force=force, **kw)
        self.run(cmds)
        return d

    def live(self, app_id: str = "/web") -> list:
        a = self.core.apps[app_id]
        return [i for i in a.instances.values() if i.live and not i.kill_requested]

    def healthy_count(self, app_id: str = "/web") -> int:
        a = self.core.apps[app_id]
        return sum(i.is_healthy() for i in a.instances.values())


def test_a_deployment_launches_its_instances_and_succeeds_once_they_run() -> None:
    sim = Sim()
    d = sim.deploy(app(instances=3))
    assert [a.action for a in d.steps[0]] == ["StartApplication"]
    sim.offer()
    assert len(sim.live()) == 3
    assert all(i.running for i in sim.live())
    sim.tick()
    assert d.state == D.SUCCEEDED and not sim.core.deployments
    assert f"deployments/{d.id}" not in sim.store
    assert sim.core.apps["/web"].last_good is not None
    # Nothing more to launch: the service stops taking offers.
    assert isinstance([c for c in sim.log if isinstance(c, Revive | Suppress)][-1], Suppress)


def test_every_launch_is_in_the_store_before_it_is_sent() -> None:
    sim = Sim()
    sim.deploy(app(instances=5))
    sim.offer()  # Sim.run asserts the order for every task
    assert sum(k.startswith("instances/") for k in sim.store) == 5


def test_unique_hostname_spreads_and_the_queue_says_what_blocks_the_last() -> None:
    sim = Sim(agents=2)
    sim.deploy(app(instances=3, constraints=(Constraint("hostname", "UNIQUE"),)))
    sim.offer()
    hosts = sorted(i.hostname for i in sim.live())
    assert hosts == ["host-a0", "host-a1"]
    sim.offer()
    a = sim.core.apps["/web"]
    assert sim.core.waiting_count(a) == 1
    assert a.waiting.reasons["UnfulfilledConstraint"] >= 2
    last = a.waiting.last_offers[-1]
    assert "hostname:UNIQUE" in last["juggler"]
    assert any(isinstance(c, Decline) for c in sim.log)


def test_not_enough_memory_is_named() -> None:
    sim = Sim(agents=1, mem=100.0)
    sim.deploy(app(mem=512.0))
    sim.offer()
    a = sim.core.apps["/web"]
    assert a.waiting.reasons == {"InsufficientMemory": 1}
    assert "mem: needs 512, offer has 100" in a.waiting.last_offers[-1]["juggler"]


def test_a_failed_instance_is_replaced_after_the_backoff_which_grows() -> None:
    sim = Sim()
    sim.deploy(app(instances=1, backoff_seconds=2.0, backoff_factor=2.0))
    sim.offer()
    sim.tick()
    first = sim.live()[0]
    sim.update(first.id, pb.TASK_FAILED)
    sim.offer()
    assert sim.live() == [], "launched again before the backoff passed"
    sim.tick(2.1)
    sim.offer()
    second = sim.live()[0]
    assert second.id != first.id
    sim.update(second.id, pb.TASK_FAILED)
    sim.tick(2.1)
    sim.offer()
    assert sim.live() == [], "the second delay is backoffSeconds × backoffFactor"
    sim.tick(2.0)
    sim.offer()
    assert len(sim.live()) == 1
    assert sim.core.apps["/web"].last_failure["taskId"] == second.id


def test_a_new_version_resets_the_backoff() -> None:
    sim = Sim()
    sim.deploy(app(backoff_seconds=100.0))
    sim.offer()
    sim.tick()
    sim.update(sim.live()[0].id, pb.TASK_FAILED)
    sim.deploy(app(cmd="sleep 2000", backoff_seconds=100.0))
    sim.offer()
    assert len(sim.live()) == 1


def test_scale_down_kills_the_youngest_first() -> None:
    sim = Sim()
    for n in (1, 2, 3):
        sim.deploy(app(instances=n))
        sim.offer()
        sim.tick()
    ages = sorted(sim.live(), key=lambda i: i.staged_at)
    assert len({i.staged_at for i in ages}) == 3
    sim.deploy(app(instances=1))
    assert [i.id for i in sim.live()] == [ages[0].id]
    kills = [c for c in sim.log if isinstance(c, Kill)]
    assert {k.task_id for k in kills} == {ages[1].id, ages[2].id}


def test_scale_only_changes_keep_the_running_instances() -> None:
    sim = Sim()
    sim.deploy(app(instances=2))
    sim.offer()
    sim.tick()
    before = {i.id for i in sim.live()}
    d = sim.deploy(app(instances=4))
    assert [a.action for a in d.steps[0]] == ["ScaleApplication"]
    sim.offer()
    assert before < {i.id for i in sim.live()} and len(sim.live()) == 4


def _rolling(instances: int, strategy: UpgradeStrategy) -> list[tuple[int, int]]:
    """Roll `instances` to a new version one event at a time, tasks turning
    healthy one per tick; returns (healthy, live) after every event."""
    sim = Sim(agents=4, cpus=100, mem=100000)
    checks = (HealthCheckDef(protocol="COMMAND", command="true"),)
    sim.healthy = lambda task: True
    sim.deploy(app(instances=instances, health_checks=checks, upgrade_strategy=strategy))
    sim.offer()
    sim.tick()
    assert sim.healthy_count() == instances
    sim.healthy = lambda task: None  # new tasks start without health
    samples = []
    d = sim.deploy(app(instances=instances, cmd="sleep 2", health_checks=checks,
                       upgrade_strategy=strategy))
    for _ in range(200):
        sim.offer()
        samples.append((sim.healthy_count(), len(sim.live())))
        starting = [i for i in sim.live() if i.healthy is None and i.running]
        if starting:
            sim.update(starting[0].id, pb.TASK_RUNNING, healthy=True)
        samples.append((sim.healthy_count(), len(sim.live())))
        sim.tick()
        if d.state != D.IN_PROGRESS:
            break
    assert d.state == D.SUCCEEDED
    a = sim.core.apps["/web"]
    assert all(i.version == a.current.config_version for i in sim.live())
    return samples


@pytest.mark.parametrize("instances,mhc,moc", [(3, 1.0, 1.0), (4, 0.5, 0.0), (5, 1.0, 0.0),
                                               (3, 0.0, 0.0), (6, 0.5, 0.5)])
def test_a_rolling_restart_stays_within_its_bounds(instances: int, mhc: float,
                                                   moc: float) -> None:
    strategy = UpgradeStrategy(minimum_health_capacity=mhc, maximum_over_capacity=moc,
                               min_healthy_seconds=0.0)
    low, high = bounds(instances, strategy)
    for healthy, live in _rolling(instances, strategy):
        assert healthy >= low
        assert live <= high


@given(st.integers(0, 40), st.floats(0, 1), st.floats(0, 1))
def test_rolling_bounds_follow_marathon(n: int, mhc: float, moc: float) -> None:
    s = UpgradeStrategy(minimum_health_capacity=mhc, maximum_over_capacity=moc)
    low, high = bounds(n, s)
    assert low == math.ceil(n * mhc - 1e-9)
    assert high >= low + 1
    assert high == max(math.floor(n * (1 + moc) + 1e-9), low + 1)


@given(st.integers(1, 30), st.floats(0, 1), st.floats(0, 1), st.data())
def test_a_roll_never_plans_below_the_minimum_nor_above_the_maximum(
        n: int, mhc: float, moc: float, data: st.DataObject) -> None:
    s = UpgradeStrategy(minimum_health_capacity=mhc, maximum_over_capacity=moc)
    low, high = bounds(n, s)
    new_live = data.draw(st.integers(0, n))
    new_healthy = data.draw(st.integers(0, new_live))
    old_live = data.draw(st.integers(1, max(1, high - new_live)))
    old_healthy = data.draw(st.integers(0, old_live))
    r = roll(n, s, new_live=new_live, new_healthy=new_healthy, old_live=old_live,
             old_healthy=old_healthy)
    assert r.kill <= old_live
    killed_healthy = max(0, r.kill - (old_live - old_healthy))
    if old_healthy + new_healthy >= low:
        assert old_healthy - killed_healthy + new_healthy >= low
    assert new_live + old_live - r.kill + r.launch <= max(high, new_live + old_live)


def test_a_new_version_that_never_turns_healthy_is_reverted_after_its_deadline() -> None:
    sim = Sim()
    checks = (HealthCheckDef(protocol="COMMAND", command="true"),)
    strategy = UpgradeStrategy(min_healthy_seconds=0.0, progress_deadline_seconds=30.0)
    sim.healthy = lambda task: True
    sim.deploy(app(instances=2, health_checks=checks, upgrade_strategy=strategy))
    sim.offer()
    sim.tick()
    good = {i.id for i in sim.live()}
    sim.healthy = lambda task: False
    d = sim.deploy(app(instances=2, cmd="broken", health_checks=checks,
                       upgrade_strategy=strategy))
    for _ in range(40):
        sim.offer()
        assert sim.healthy_count() >= 2, "the old instances kept serving"
        sim.tick()
    assert d.state == D.FAILED
    assert "progressDeadlineSeconds" in d.reason
    a = sim.core.apps["/web"]
    assert a.current.app.cmd == "sleep 1000"
    assert {i.id for i in sim.live()} == good, "the old instances were kept, not restarted"
    assert not sim.core.deployments, "the revert finished"
    assert not [t for t in sim.tasks.values() if "broken" in t.command.argv[0]]


def test_a_locked_app_answers_409_unless_forced() -> None:
    sim = Sim(agents=0)
    first = sim.deploy(app(instances=1))
    with pytest.raises(AppsError) as e:
        sim.deploy(app(instances=2))
    assert e.value.status == 409
    assert e.value.body()["deployments"] == [{"id": first.id}]
    second = sim.deploy(app(instances=2), force=True)
    assert first.state == D.CANCELLED and second.state == D.IN_PROGRESS


def test_removing_an_unknown_app_is_404() -> None:
    sim = Sim()
    with pytest.raises(AppsError) as e:
        sim.core.deploy({"/nope": None})
    assert e.value.status == 404


def test_dependencies_start_in_order() -> None:
    sim = Sim()
    db = app("/shop/db")
    web = app("/shop/web", dependencies=("/shop/db",))
    d = sim.deploy(db, web)
    assert [[a.app_id for a in s] for s in d.steps] == [["/shop/db"], ["/shop/web"]]
    sim.auto_run = False
    sim.offer()
    assert {t.name for t in sim.tasks.values()} == {"shop/db"}
    sim.update(next(iter(sim.tasks)), pb.TASK_RUNNING)
    sim.tick()
    sim.offer()
    assert {t.name for t in sim.tasks.values()} == {"shop/db", "shop/web"}


def test_a_dependency_cycle_is_refused() -> None:
    sim = Sim()
    with pytest.raises(Exception) as e:
        sim.deploy(app("/a", dependencies=("/b",)), app("/b", dependencies=("/a",)))
    assert "cycle" in str(e.value)
    assert not sim.core.apps and not sim.core.deployments


def test_deleting_an_app_kills_its_instances_then_forgets_it() -> None:
    sim = Sim()
    sim.deploy(app(instances=2))
    sim.offer()
    sim.tick()
    d, cmds = sim.core.deploy({"/web": None})
    sim.run(cmds)
    assert d.state == D.SUCCEEDED
    assert "/web" not in sim.core.apps
    assert not [k for k in sim.store if k.startswith(("apps/", "instances/", "versions/"))]


def test_cancelling_a_deployment_rolls_back() -> None:
    sim = Sim()
    sim.deploy(app(instances=1))
    sim.offer()
    sim.tick()
    sim.auto_run = False
    d = sim.deploy(app(instances=1, cmd="sleep 3000"))
    sim.offer()
    rollback, cmds = sim.core.cancel(d.id)
    sim.run(cmds)
    assert d.state == D.CANCELLED and rollback is not None
    assert sim.core.apps["/web"].current.app.cmd == "sleep 1000"


def test_an_orphan_task_is_killed_and_an_unknown_instance_replaced_after_recovery() -> None:
    sim = Sim()
    sim.deploy(app(instances=1))
    sim.offer()
    sim.tick()
    inst = sim.live()[0]
    # A new life of the service: the store's view, the master's answers.
    from juggler.apps.instances import Instance

    fresh = AppsState(sim.clock, lambda: "new")
    a = sim.core.apps["/web"]
    fresh.recover({"/web": (a.current, a.last_good, a.versions, "", 0)},
                  [Instance.from_record(inst.record())], [])
    cmds = fresh.on_offers([pb.Offer(id="x", agent_id="a0", hostname="h",
                                     resources=Resources({"cpus": 4, "mem": 4096}).to_proto())])
    (decline,) = [c for c in cmds if isinstance(c, Decline)]
    assert decline.refuse_seconds <= 5, "no launch while reconciling, and back soon"
    cmds = fresh.reconciled({})
    assert inst.id in fresh.instances, "no answer (its agent may be away): kept"
    cmds = fresh.reconciled({inst.id: pb.TaskStatus(task_id=inst.id,
                                                    state=pb.TASK_UNKNOWN)})
    assert not fresh.instances, "unknown to the master: dropped"
    assert [c for c in cmds if isinstance(c, Revive)], \
        "offers wanted at once (Revive also clears the filters of those declined)"
    cmds = fresh.on_update(pb.TaskStatus(task_id="web.orphan", agent_id="a0",
                                         state=pb.TASK_RUNNING))
    assert [c for c in cmds if isinstance(c, Kill) and c.task_id == "web.orphan"]
    cmds = fresh.on_offers([pb.Offer(id="y", agent_id="a0", hostname="h",
                                     resources=Resources({"cpus": 4, "mem": 4096}).to_proto())])
    assert [c for c in cmds if isinstance(c, Launch)], "the instance is replaced"


@pytest.mark.parametrize("answer", [pb.TASK_GONE, pb.TASK_GONE_BY_OPERATOR, pb.TASK_UNKNOWN])
def test_an_unreachable_instance_the_master_says_does_not_run_is_replaced_without_a_failure(
        answer: int) -> None:
    """A master that does not hold the task (a new leader since it went
    UNREACHABLE) tells nothing when its agent comes back without it; the
    service asks about UNREACHABLE instances now and then (service.py), and
    such an answer (master/reconciliation.py) drops and replaces the instance
    at once, with no backoff: it did not fail, it is not there."""
    sim = Sim()
    sim.deploy(app(instances=1, unreachable_strategy=UnreachableStrategy(enabled=False)))
    sim.offer()
    sim.tick()
    first = sim.live()[0]
    sim.update(first.id, pb.TASK_UNREACHABLE)
    assert sim.core.unreachable_tasks() == {first.id: first.agent_id}
    sim.tasks.pop(first.id)
    sim.run(sim.core.on_updates([pb.TaskStatus(
        task_id=first.id, agent_id=first.agent_id, state=answer,
        reason=pb.REASON_RECONCILIATION, message="its agent is registered and does not run it")]))
    assert first.id not in sim.core.instances and sim.core.unreachable_tasks() == {}
    a = sim.core.apps["/web"]
    assert a.failures == 0 and a.delay_until <= sim.clock.now()
    sim.offer()
    assert [i.id for i in sim.live()] and sim.live()[0].id != first.id, "replaced at once"


def test_plan_orders_stops_first_then_dependency_layers() -> None:
    from juggler.apps.plan import Versioned

    v = lambda d: Versioned(d, "v1", "v1")  # noqa: E731
    steps = plan({"/old": v(app("/old")), "/a": None, "/b": None},
                 {"/old": None, "/a": v(app("/a")), "/b": v(app("/b", dependencies=("/a",)))})
    assert [[(x.action, x.app_id) for x in s] for s in steps] == [
        [("StopApplication", "/old")], [("StartApplication", "/a")],
        [("StartApplication", "/b")]]


def test_unreachable_instances_are_replaced_and_the_extra_killed_when_back() -> None:
    sim = Sim()
    sim.deploy(app(instances=1))
    sim.offer()
    sim.tick()
    first = sim.live()[0]
    sim.update(first.id, pb.TASK_UNREACHABLE)
    sim.offer()
    assert not sim.core.waiting_count(sim.core.apps["/web"]), \
        "replaced only after inactiveAfterSeconds (300 s, Marathon's default)"
    sim.tick(300)
    sim.offer()
    assert len([i for i in sim.core.apps["/web"].instances.values() if i.live]) == 2
    sim.update(first.id, pb.TASK_RUNNING)
    live = sim.live()
    assert len(live) == 1


def test_an_instance_unreachable_past_expunge_is_forgotten_and_killed() -> None:
    sim = Sim()
    sim.deploy(app(instances=1))
    sim.offer()
    sim.tick()
    first = sim.live()[0]
    sim.update(first.id, pb.TASK_UNREACHABLE)
    sim.tick(300)
    sim.offer()
    sim.tick(301)
    assert first.id not in sim.core.instances
    assert f"instances/{first.id}" not in sim.store
    assert [c for c in sim.log if isinstance(c, Kill) and c.task_id == first.id]
    assert len(sim.live()) == 1


def test_kill_with_scale_lowers_the_instance_count() -> None:
    sim = Sim()
    sim.deploy(app(instances=3))
    sim.offer()
    sim.tick()
    victim = sim.live()[0]
    killed, _d, cmds = sim.core.kill_instances([victim.id], scale=True)
    sim.run(cmds)
    assert [k.id for k in killed] == [victim.id]
    assert sim.core.apps["/web"].current.app.instances == 2
    sim.offer()
    assert len(sim.live()) == 2


def test_versions_are_kept_per_deployment() -> None:
    sim = Sim()
    sim.deploy(app(instances=1))
    sim.clock.advance(1)
    sim.deploy(replace(app(instances=2)), force=True)
    assert len(sim.core.apps["/web"].versions) == 2
    assert len([k for k in sim.store if k.startswith("versions//web@")]) == 2


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(["offer", "tick", "fail", "scale", "restart", "unreachable"]),
                min_size=5, max_size=40), st.integers(1, 5))
def test_the_app_comes_back_to_its_desired_count(events: list[str], instances: int) -> None:
    sim = Sim(agents=3, cpus=100, mem=100000)
    wanted = instances
    sim.deploy(app(instances=wanted, backoff_seconds=0.5, backoff_factor=1.0))
    cmd = 0
    for e in events:
        live = sim.live()
        if e == "offer":
            sim.offer()
        elif e == "tick":
            sim.tick()
        elif e == "fail" and live:
            sim.update(live[0].id, pb.TASK_FAILED)
        elif e == "unreachable" and live:
            sim.update(live[-1].id, pb.TASK_UNREACHABLE)
        elif e == "scale":
            wanted = wanted % 5 + 1
            sim.deploy(app(instances=wanted, cmd=f"sleep {cmd}", backoff_seconds=0.5,
                           backoff_factor=1.0) if cmd else
                       app(instances=wanted, backoff_seconds=0.5, backoff_factor=1.0),
                       force=True)
        elif e == "restart":
            cmd += 1
            sim.deploy(app(instances=wanted, cmd=f"sleep {cmd}", backoff_seconds=0.5,
                           backoff_factor=1.0), force=True)
    # Then the cluster settles: unreachable tasks come back, time passes.
    for t in list(sim.tasks):
        inst = sim.core.instances.get(t)
        if inst is not None and inst.state == pb.TASK_UNREACHABLE:
            sim.update(t, pb.TASK_RUNNING)
    for _ in range(10):
        sim.tick()
        sim.offer()
    a = sim.core.apps["/web"]
    assert len(sim.live()) == wanted
    assert all(i.version == a.current.config_version for i in sim.live())
    assert not sim.core.deployments
    # Every task the simulated cluster runs is one the core knows and wants.
    assert set(sim.tasks) == {i.id for i in sim.live()}


def test_an_app_whose_tasks_the_master_would_refuse_is_refused_when_deployed() -> None:
    from juggler.apps.definition import Container, InvalidDefinition

    sim = Sim()
    with pytest.raises(InvalidDefinition) as e:
        sim.deploy(app(cmd=None, container=Container(image="Not/A/Valid:Ref:")))
    assert e.value.details[0]["path"] == "/container/docker/image"
    assert not sim.core.apps and not sim.core.deployments and not sim.store


def test_the_deployment_lifecycle_is_the_table_plan_py_shows() -> None:
    from juggler.apps import plan as plan_module
    from juggler.apps.plan import DEPLOYMENT

    doc = [line.strip() for line in (plan_module.__doc__ or "").splitlines()]
    for line in DEPLOYMENT.lines():
        assert line.strip() in doc, line
    with pytest.raises(Exception, match="SUCCEEDED → IN_PROGRESS"):
        sim = Sim()
        d = sim.deploy(app(instances=0))
        assert d.state == D.SUCCEEDED
        DEPLOYMENT.move(d, d.id, D.IN_PROGRESS, "again", 0.0)


def test_adding_a_health_check_keeps_the_old_instances_until_the_new_ones_pass() -> None:
    """Old instances are judged by their own version's checks: without any,
    running is healthy, so adding a check to the app does not make them
    unhealthy and kill them all at once (found by a review: 12 s with no
    healthy instance)."""
    sim = Sim()
    sim.deploy(app(instances=3))
    sim.offer()
    sim.tick()
    old = {i.id for i in sim.live()}
    checks = (HealthCheckDef(protocol="COMMAND", command="true"),)
    d = sim.deploy(app(instances=3, cmd="sleep 2", health_checks=checks))
    for _ in range(5):
        sim.offer()
        sim.tick()
        assert old <= {i.id for i in sim.live()}, "an old instance went before a new passed"
        assert sim.healthy_count() >= 3
    for i in [i for i in sim.live() if i.id not in old]:
        sim.update(i.id, pb.TASK_RUNNING, healthy=True)
    sim.tick()
    assert d.state == D.SUCCEEDED and not old & {i.id for i in sim.live()}


def test_old_instances_whose_health_is_not_known_yet_are_kept_like_healthy_ones() -> None:
    sim = Sim()
    checks = (HealthCheckDef(protocol="COMMAND", command="true"),)
    sim.deploy(app(instances=2, health_checks=checks))
    sim.offer()   # running, health not reported yet (inside their grace period)
    old = {i.id for i in sim.live()}
    sim.deploy(app(instances=2, cmd="sleep 2", health_checks=checks), force=True)
    for _ in range(3):
        sim.offer()
        sim.tick()
    assert old <= {i.id for i in sim.live()}


def test_deploying_an_unchanged_definition_gives_it_the_new_version_at_once() -> None:
    sim = Sim()
    sim.deploy(app(instances=2))
    sim.offer()
    sim.tick()
    before = {i.id for i in sim.live()}
    d = sim.deploy(app(instances=2))
    assert d.state == D.SUCCEEDED and d.steps == []
    assert sim.core.apps["/web"].current.version == d.version
    assert {i.id for i in sim.live()} == before


def test_an_app_may_not_be_a_group_nor_lie_under_an_app() -> None:
    from juggler.apps.definition import InvalidDefinition

    sim = Sim()
    sim.deploy(app("/shop/db"))
    with pytest.raises(InvalidDefinition, match="Groups and Applications"):
        sim.deploy(app("/shop"))
    with pytest.raises(InvalidDefinition, match="under the app /shop/db"):
        sim.deploy(app("/shop/db/sub"))
    sim.deploy(app("/shop/web"))  # a sibling is fine
    assert sorted(sim.core.apps) == ["/shop/db", "/shop/web"]


def test_ended_deployments_say_what_became_of_them() -> None:
    sim = Sim()
    checks = (HealthCheckDef(protocol="COMMAND", command="true"),)
    strategy = UpgradeStrategy(min_healthy_seconds=0.0, progress_deadline_seconds=5.0)
    sim.healthy = lambda task: True
    good = sim.deploy(app(health_checks=checks, upgrade_strategy=strategy))
    sim.offer()
    sim.tick()
    assert sim.core.ended[good.id]["state"] == "SUCCEEDED"
    sim.healthy = lambda task: False
    bad = sim.deploy(app(cmd="broken", health_checks=checks, upgrade_strategy=strategy))
    for _ in range(8):
        sim.offer()
        sim.tick()
    ended = sim.core.ended[bad.id]
    assert ended["state"] == "FAILED" and "progressDeadlineSeconds" in ended["reason"]
    assert ended["rollback"] and sim.core.ended[ended["rollback"]]["state"] == "SUCCEEDED"


def test_ports_are_numbered_as_marathon_numbers_them() -> None:
    from juggler.apps.definition import PortDefinition
    from juggler.apps.plan import Versioned
    from juggler.apps.tasks import environment

    d = app(port_definitions=(PortDefinition(port=0), PortDefinition(port=18999, name="http")))
    env = environment(Versioned(d, "v", "v"), "web.1", "h", [31005, 31007])
    assert env["PORT1"] == "31007" and env["PORT_HTTP"] == "31007"
    assert env["PORT0"] == env["PORT"] == "31005" and env["PORTS"] == "31005,31007"


def test_an_instance_s_start_survives_a_restart_of_the_service() -> None:
    from juggler.apps.instances import Instance

    sim = Sim()
    sim.deploy(app())
    sim.clock.advance(5)
    sim.offer()
    inst = sim.live()[0]
    again = Instance.from_record(sim.store[f"instances/{inst.id}"])
    assert again.started_at == inst.started_at is not None


def test_http_checks_start_at_once_and_command_checks_after_their_delay() -> None:
    from juggler.apps.tasks import health_check

    http = HealthCheckDef(protocol="HTTP", port=8080)
    command = HealthCheckDef(protocol="COMMAND", command="true")
    d = app()
    assert health_check(d, http).delay_seconds < 0.01, "Marathon runs HTTP checks at once"
    assert health_check(d, command).delay_seconds == 15, "Mesos's delaySeconds"
    assert health_check(d, http).grace_period_seconds == 300
    never = HealthCheckDef(protocol="COMMAND", command="true", max_consecutive_failures=0)
    assert not health_check(d, never).kill_when_unhealthy, "0: Marathon's never kill"


def test_an_instance_of_an_app_that_no_longer_exists_is_killed_after_recovery() -> None:
    from juggler.apps.instances import Instance

    sim = Sim()
    sim.deploy(app(instances=1))
    sim.offer()
    inst = sim.live()[0]
    fresh = AppsState(sim.clock, lambda: "new")
    fresh.recover({}, [Instance.from_record(inst.record())], [])
    cmds = fresh.reconciled({inst.id: pb.TaskStatus(task_id=inst.id, state=pb.TASK_RUNNING)})
    assert [c for c in cmds if isinstance(c, Kill) and c.task_id == inst.id]


def test_a_revive_is_sent_again_while_something_waits() -> None:
    """One Revive is one message; a refusal filter that reached the master
    after it (or a failover) would keep offers away for REFUSE_IDLE while an
    instance waits. So it is sent again every REVIVE_AGAIN seconds while
    anything waits, and not once nothing does."""
    from juggler.apps.state import REFUSE_IDLE, REVIVE_AGAIN

    sim = Sim(agents=1)
    sim.deploy(app(instances=1))
    assert isinstance(sim.log[-1], Revive)
    sim.log.clear()
    sim.tick(REVIVE_AGAIN - 1)
    assert not [c for c in sim.log if isinstance(c, Revive)]
    sim.tick(1)
    assert [c for c in sim.log if isinstance(c, Revive)], "still waiting: revived again"
    assert REVIVE_AGAIN < REFUSE_IDLE

    sim.log.clear()
    sim.offer()                         # it launches: nothing waits any more
    assert len(sim.live()) == 1
    sim.tick(10 * REVIVE_AGAIN)
    revives = [c for c in sim.log if isinstance(c, Revive | Suppress)]
    assert revives and all(isinstance(c, Suppress) for c in revives)

    waiting = [True]                    # another core of the framework (containers) waits
    sim.core.others_want = lambda: waiting[0]
    sim.log.clear()
    sim.tick(1)
    sim.core.revived()                  # that core's own Revive, sent by the shell
    sim.tick(REVIVE_AGAIN - 1)
    assert [type(c) for c in sim.log if isinstance(c, Revive | Suppress)] == [Revive]
    sim.tick(1)
    assert [type(c) for c in sim.log if isinstance(c, Revive | Suppress)] == [Revive, Revive]
    waiting[0] = False
    sim.tick(REVIVE_AGAIN)
    assert isinstance([c for c in sim.log if isinstance(c, Revive | Suppress)][-1], Suppress)
