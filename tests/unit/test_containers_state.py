"""The containers' pure core (apps/containers_state.py and containers.py),
driven with a fake clock and a small simulated cluster of agents whose offers
are all their free resources. What a real cluster adds (the agent keeping a
writable layer, the Docker API, the CLIs) is tested in tests/integration."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from juggler.apps.commands import Kill, Launch, Persist, RemoveLayer, Revive, Signal
from juggler.apps.containers import (
    CONTAINER,
    CS,
    Container,
    ContainerConfig,
    ContainerError,
    RestartPolicy,
    next_delay,
    restart_wanted,
)
from juggler.apps.containers_state import ContainersState
from juggler.common.clock import FakeClock
from juggler.common.resources import Resources
from juggler.v1 import common_pb2 as pb


class Sim:
    def __init__(self, agents: int = 2) -> None:
        self.clock = FakeClock()
        ids = itertools.count(1)
        self.core = ContainersState(
            self.clock, lambda: hashlib.sha256(str(next(ids)).encode()).hexdigest())
        self.core.reconciling = False
        self.free = {f"a{i}": Resources({"cpus": 4, "mem": 4096}) for i in range(agents)}
        self.store: dict[str, object] = {}
        self.tasks: dict[str, pb.TaskInfo] = {}
        self.log: list[object] = []
        self.offers = itertools.count(1)

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
                    assert t.task_id.split(".")[0] in {k[11:23] for k in self.store}
                    self.tasks[t.task_id] = t

    def offer(self, agent: str = "") -> None:
        offers = [pb.Offer(id=f"o{next(self.offers)}", agent_id=a, hostname=f"host-{a}",
                           agent_address=f"{a}:5051", resources=r.to_proto())
                  for a, r in self.free.items() if not agent or a == agent]
        cmds, _ = self.core.on_offers(offers)
        self.run(cmds)

    def update(self, task_id: str, state: int, **kw: object) -> None:
        t = self.tasks[task_id]
        status = pb.TaskStatus(task_id=task_id, agent_id=t.agent_id, state=state,
                               timestamp=self.clock.time(), **kw)  # type: ignore[arg-type]
        self.run(self.core.on_updates([status]))

    def create(self, name: str = "", **kw: object) -> Container:
        kw.setdefault("rootfs", "/srv/rootfs")
        kw.setdefault("cmd", ["sleep", "1000"])
        c, cmds = self.core.create(ContainerConfig(**kw), name)  # type: ignore[arg-type]
        self.run(cmds)
        return c

    def started(self, name: str = "web", **kw: object) -> Container:
        c = self.create(name, **kw)
        _, cmds = self.core.start(name)
        self.run(cmds)
        self.offer()
        self.update(c.task_id, pb.TASK_RUNNING, pid=4242)
        return c


def test_create_names_and_conflicts() -> None:
    sim = Sim()
    c = sim.create("web")
    assert len(c.id) == 64 and c.status == CS.CREATED and c.desired == "stopped"
    assert sim.store[f"containers/{c.id}"]["name"] == "web"
    with pytest.raises(ContainerError) as e:
        sim.create("web")
    assert e.value.status == 409 and 'name "/web" is already in use' in e.value.message
    with pytest.raises(ContainerError) as e:
        sim.create("-bad")
    assert e.value.status == 400
    generated = sim.create()
    assert generated.name and generated.name != "web"
    # Every way of naming it finds it.
    for ref in ("web", "/web", c.id, c.id[:12], c.id[:20]):
        assert sim.core.find(ref) is c
    with pytest.raises(ContainerError) as e:
        sim.core.find("nope")
    assert e.value.status == 404 and e.value.message == "No such container: nope"


def test_create_refuses_rm_with_restart_and_bad_tasks() -> None:
    sim = Sim()
    with pytest.raises(ContainerError, match="AutoRemove"):
        sim.create("xx", auto_remove=True, restart=RestartPolicy("always"))
    with pytest.raises(ContainerError) as e:
        sim.create("yy", cpus=-1.0)
    assert e.value.status == 400
    assert sim.core.containers == {} and sim.store == {}


def test_start_launches_on_an_offer_then_runs() -> None:
    sim = Sim()
    c = sim.create("web")
    started, cmds = sim.core.start("web")
    sim.run(cmds)
    assert started and c.status == CS.STARTING and any(isinstance(x, Revive) for x in cmds)
    sim.offer()
    launches = [x for x in sim.log if isinstance(x, Launch)]
    assert len(launches) == 1
    task = launches[0].tasks[0]
    assert task.task_id == f"{c.id[:12]}.1" and task.container.writable_layer == c.id
    assert task.container.hostname == c.id[:12]
    assert task.kill_policy.grace_period_seconds == 10.0
    sim.update(c.task_id, pb.TASK_RUNNING, pid=99)
    assert c.status == CS.RUNNING and c.pid == 99 and c.started_at
    assert sim.core.start("web") == (False, [])       # Docker's 304


def test_stop_kills_with_signal_and_timeout_and_keeps_the_agent() -> None:
    sim = Sim()
    c = sim.started("web", stop_signal="SIGINT")
    stopped, cmds = sim.core.stop("web", timeout=3)
    assert stopped and Kill(c.task_id, c.agent_id, 3.0, "SIGINT") in cmds
    sim.run(cmds)
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=130)
    assert c.status == CS.EXITED and c.exit_code == 130 and c.desired == "stopped"
    assert sim.core.stop("web") == (False, [])
    # start again: the same agent only, a new generation.
    agent = c.agent_id
    sim.run(sim.core.start("web")[1])
    other = next(a for a in sim.free if a != agent)
    sim.offer(other)
    assert c.status == CS.STARTING and not c.launched
    sim.offer(agent)
    assert c.launched and c.task_id.endswith(".2") and c.agent_id == agent


def test_rm_refused_while_running_then_forced() -> None:
    sim = Sim()
    c = sim.started("web")
    with pytest.raises(ContainerError) as e:
        sim.core.remove("web")
    assert e.value.status == 409 and e.value.message == (
        'cannot remove container "/web": container is running: stop the container before '
        "removing or force remove")
    assert sim.core.find("web") is c and f"containers/{c.id}" in sim.store
    _, cmds = sim.core.remove("web", force=True)
    sim.run(cmds)
    assert Kill(c.task_id, c.agent_id, 0.0) in cmds
    assert RemoveLayer(c.agent_id, c.agent_address, c.id) in cmds
    assert f"containers/{c.id}" not in sim.store
    assert sim.store[f"layer_removals/{c.agent_id}/{c.id}"]
    with pytest.raises(ContainerError):
        sim.core.find("web")
    sim.create("web")   # the name is free again
    # The removal is tried again until the shell says it is done.
    sim.clock.advance(6)
    assert any(isinstance(x, RemoveLayer) for x in sim.core.tick())
    sim.run(sim.core.layer_removed(c.agent_id, c.id))
    assert f"layer_removals/{c.agent_id}/{c.id}" not in sim.store
    sim.clock.advance(6)
    assert not any(isinstance(x, RemoveLayer) for x in sim.core.tick())


def test_on_failure_restarts_exactly_n_times_with_doubling_delays() -> None:
    sim = Sim()
    c = sim.started("flaky", restart=RestartPolicy.parse("on-failure:2"))
    delays = []
    for _ in range(3):
        sim.update(c.task_id, pb.TASK_FAILED, exit_code=1)
        if c.status != CS.RESTARTING:
            break
        delays.append(c.delay)
        sim.clock.advance(c.delay)
        sim.run(sim.core.tick())
        sim.offer()
        sim.update(c.task_id, pb.TASK_RUNNING)
    assert c.status == CS.EXITED and c.restart_count == 2 and c.exit_code == 1
    assert delays == [0.1, 0.2]


def test_always_and_a_stopped_container() -> None:
    sim = Sim()
    c = sim.started("web", restart=RestartPolicy("always"))
    sim.update(c.task_id, pb.TASK_FINISHED, exit_code=0)
    assert c.status == CS.RESTARTING
    sim.clock.advance(1)
    sim.run(sim.core.tick())
    sim.offer()
    sim.update(c.task_id, pb.TASK_RUNNING)
    _, cmds = sim.core.stop("web")
    sim.run(cmds)
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=143)
    assert c.status == CS.EXITED and c.restart_count == 1   # stopped by its user: stays


def test_restart_stops_then_starts_without_counting() -> None:
    sim = Sim()
    c = sim.started("web")
    sim.run(sim.core.restart("web", timeout=1))
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=143)
    assert c.status == CS.STARTING and c.generation == 2 and c.restart_count == 0
    sim.offer()
    sim.update(c.task_id, pb.TASK_RUNNING)
    assert c.status == CS.RUNNING


def test_kill_signals() -> None:
    sim = Sim()
    c = sim.started("web")
    assert sim.core.kill("web", "HUP") == [Signal(c.agent_address, c.task_id, "HUP")]
    assert c.desired == "running"
    cmds = sim.core.kill("web")
    assert cmds == [Persist({f"containers/{c.id}": c.record()}), Kill(c.task_id, c.agent_id, 0.0)]
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=137)
    with pytest.raises(ContainerError) as e:
        sim.core.kill("web")
    assert e.value.status == 409 and "is not running" in e.value.message


def test_the_stop_signal_is_only_delivered_and_ends_the_policy() -> None:
    # docker kill -s TERM: delivered, no SIGKILL after a grace period (a process
    # that traps it runs on); when the run ends, `always` does not restart it.
    sim = Sim()
    c = sim.started("web", restart=RestartPolicy("always"))
    assert sim.core.kill("web", "TERM") == [Persist({f"containers/{c.id}": c.record()}),
                                           Signal(c.agent_address, c.task_id, "TERM")]
    sim.clock.advance(60)
    assert not [cmd for cmd in sim.core.tick() if isinstance(cmd, Kill)]
    assert c.status == CS.RUNNING
    sim.update(c.task_id, pb.TASK_FINISHED, exit_code=0)
    sim.clock.advance(60)
    sim.core.tick()
    assert c.status == CS.EXITED and c.desired == "stopped"


def test_oom_and_gone_agents() -> None:
    sim = Sim()
    c = sim.started("hog")
    sim.update(c.task_id, pb.TASK_FAILED, exit_code=137, oom_killed=True,
               reason=pb.REASON_CONTAINER_LIMITATION_MEMORY)
    assert c.status == CS.EXITED and c.oom_killed and c.exit_code == 137
    d = sim.started("lost")
    sim.update(d.task_id, pb.TASK_UNREACHABLE)
    assert d.unreachable and d.status == CS.RUNNING
    sim.update(d.task_id, pb.TASK_GONE)
    assert "gone" in d.error
    assert_dead_for_good(sim, d)


def assert_dead_for_good(sim: Sim, c: Container) -> None:
    """Dead with its agent and layer: a start is refused (409)."""
    assert c.status == CS.DEAD
    with pytest.raises(ContainerError) as e:
        sim.core.start(c.name)
    assert e.value.status == 409


def test_a_run_its_agent_came_back_without_ended_and_may_start_again() -> None:
    # TASK_GONE because the agent re-registered without the task: the agent and
    # the writable layer are back (fault campaign, seed 20261202: every later
    # start of such a container was refused as "dead").
    sim = Sim()
    c = sim.started("kept")
    sim.update(c.task_id, pb.TASK_GONE, reason=pb.REASON_AGENT_RESTARTED,
               message="the agent re-registered without the task")
    assert c.status == CS.EXITED and c.desired == "stopped"
    assert "re-registered without the task" in c.error
    started, _ = sim.core.start("kept")
    assert started and c.status == CS.STARTING


def test_a_reconciliation_s_answer_tells_a_run_ended_from_a_container_gone_for_good() -> None:
    # What the master answers for a run it does not hold (master/reconciliation.py):
    # TASK_GONE, its agent is registered without it (the layer is there);
    # TASK_GONE_BY_OPERATOR, its agent is gone for good (and the layer with it).
    sim = Sim()
    back, gone = sim.started("back"), sim.started("gone")
    sim.run(sim.core.reconciled({
        back.task_id: pb.TaskStatus(task_id=back.task_id, state=pb.TASK_GONE,
                                    reason=pb.REASON_RECONCILIATION,
                                    message="its agent is registered and does not run it"),
        gone.task_id: pb.TaskStatus(task_id=gone.task_id, state=pb.TASK_GONE_BY_OPERATOR,
                                    reason=pb.REASON_RECONCILIATION,
                                    message="its agent is gone for good")}))
    assert back.status == CS.EXITED and "does not run it" in back.error
    assert sim.core.start("back")[0] and back.status == CS.STARTING
    assert_dead_for_good(sim, gone)


def test_an_unreachable_run_is_asked_about_until_the_master_says_how_it_ended() -> None:
    # The service asks about the runs last seen UNREACHABLE now and then
    # (service.py _reconcile_unreachable); an answer UNREACHABLE changes
    # nothing, TASK_GONE (its agent back without it) ends the run.
    sim = Sim()
    c = sim.started("far")
    sim.update(c.task_id, pb.TASK_UNREACHABLE)
    assert sim.core.unreachable_tasks() == {c.task_id: c.agent_id}
    answer = dict(task_id=c.task_id, agent_id=c.agent_id, reason=pb.REASON_RECONCILIATION)
    sim.run(sim.core.on_updates([pb.TaskStatus(state=pb.TASK_UNREACHABLE, **answer)]))
    assert c.status == CS.RUNNING and c.unreachable
    sim.run(sim.core.on_updates([pb.TaskStatus(
        state=pb.TASK_GONE, message="its agent is registered and does not run it", **answer)]))
    assert c.status == CS.EXITED and sim.core.unreachable_tasks() == {}


def test_auto_remove() -> None:
    sim = Sim()
    c = sim.started("once", auto_remove=True)
    sim.update(c.task_id, pb.TASK_FINISHED, exit_code=0)
    assert c.id not in sim.core.containers and sim.core.removed[c.id] == 0
    assert f"containers/{c.id}" not in sim.store


def test_a_launch_that_fails_reports_its_error() -> None:
    sim = Sim()
    c = sim.create("bad", image="nope:1", rootfs="")
    sim.run(sim.core.start("bad")[1])
    sim.offer()
    sim.update(c.task_id, pb.TASK_FAILED, reason=pb.REASON_CONTAINER_LAUNCH_FAILED,
               message="cannot pull nope:1: not found")
    assert c.status == CS.EXITED and c.exit_code == 125 and "cannot pull" in c.error


def test_recovery_keeps_everything_and_reconciles() -> None:
    sim = Sim()
    c = sim.started("web", restart=RestartPolicy("always"))
    stopped = sim.started("manual", restart=RestartPolicy("always"))
    sim.run(sim.core.stop("manual")[1])
    sim.update(stopped.task_id, pb.TASK_KILLED, exit_code=143)
    records = [v for k, v in sim.store.items() if k.startswith("containers/")]
    clock = FakeClock()
    again = ContainersState(clock, lambda: "f" * 64)
    again.recover(records)
    assert again.find("web").status == CS.RUNNING
    assert again.known_tasks() == {c.task_id: c.agent_id}
    cmds = again.reconciled({c.task_id: pb.TaskStatus(task_id=c.task_id, state=pb.TASK_RUNNING)})
    # `always`, stopped by its user, starts when the service starts (Docker's daemon restart).
    assert again.find("manual").status == CS.STARTING and Revive() in cmds


def test_a_stop_recorded_before_a_restart_of_the_service_is_sent_again() -> None:
    sim = Sim()
    c = sim.started("web")
    sim.run(sim.core.stop("web", timeout=2)[1])   # the kill is lost with the service
    records = [v for k, v in sim.store.items() if k.startswith("containers/")]
    again = ContainersState(FakeClock(), lambda: "f" * 64)
    again.recover(records)
    cmds = again.reconciled({c.task_id: pb.TaskStatus(task_id=c.task_id, state=pb.TASK_RUNNING)})
    assert Kill(c.task_id, c.agent_id, 2.0, "") in cmds   # the stop's own -t 2


def test_the_transition_table_refuses_what_it_does_not_list() -> None:
    for source in CS:
        for target in CS:
            c = Container(id="0" * 64, name="x", created=0.0, config=ContainerConfig())
            CONTAINER.begin(c, source, "test", 0.0)
            if CONTAINER.allows(source, target):
                c.move(target, "test", 1.0)
                assert c.status == target
            else:
                with pytest.raises(Exception, match="not allowed"):
                    c.move(target, "test", 1.0)
                assert c.status == source


@given(st.sampled_from(RestartPolicy.NAMES), st.integers(0, 5), st.integers(0, 255),
       st.integers(0, 10), st.booleans())
def test_restart_rules(name: str, retries: int, code: int, count: int, by_user: bool) -> None:
    policy = RestartPolicy.of(name, retries if name == "on-failure" else 0)
    wanted = restart_wanted(policy, code, count, by_user)
    if by_user or name == "no":
        assert not wanted
    elif name == "on-failure":
        assert wanted == (code != 0 and (retries == 0 or count < retries))
    else:
        assert wanted


def test_backoff_doubles_to_a_minute_and_resets_after_ten_seconds() -> None:
    d, seen = 0.0, []
    for _ in range(12):
        d = next_delay(d, 1.0)
        seen.append(d)
    assert seen[:4] == [0.1, 0.2, 0.4, 0.8] and seen[-1] == 60.0
    assert next_delay(60.0, 10.0) == 0.1


def test_restart_policy_parsing() -> None:
    assert RestartPolicy.parse("on-failure:3") == RestartPolicy("on-failure", 3)
    assert RestartPolicy.parse("unless-stopped").text() == "unless-stopped"
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(ContainerError):
            RestartPolicy.parse(bad)


def test_a_kill_the_master_did_not_take_is_sent_again() -> None:
    sim = Sim()
    c = sim.started("web")
    _, cmds = sim.core.stop("web", timeout=4)
    assert Kill(c.task_id, c.agent_id, 4.0, "") in cmds
    assert not any(isinstance(x, Kill) for x in sim.core.tick())   # taken: nothing again
    sim.core.kill_failed(c.task_id)                 # e.g. refused by a deposed leader
    assert Kill(c.task_id, c.agent_id, 4.0, "") in sim.core.tick()
    assert Kill(c.task_id, c.agent_id, 4.0, "") in sim.core.resend_kills()   # a new leader
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=137)
    assert sim.core.resend_kills() == [] and c.status == CS.EXITED


def test_a_kill_refused_changes_nothing_and_a_starting_run_can_be_killed() -> None:
    sim = Sim()
    c = sim.create("web")
    sim.run(sim.core.start("web")[1])
    sim.offer()                       # launched, not running yet (an image pulling)
    before = c.record()
    with pytest.raises(ContainerError) as e:
        sim.core.kill("web", "HUP")   # only a running container takes a signal
    assert e.value.status == 409 and c.record() == before
    cmds = sim.core.kill("web")       # SIGKILL ends it wherever it is
    assert Kill(c.task_id, c.agent_id, 0.0) in cmds and c.desired == "stopped"
    sim.update(c.task_id, pb.TASK_KILLED, exit_code=137)
    assert c.status == CS.EXITED


def test_signals_compare_by_number_and_a_bad_one_is_refused() -> None:
    sim = Sim()
    c = sim.started("web", stop_signal="SIGUSR1")
    before = c.record()
    with pytest.raises(ContainerError) as e:
        sim.core.kill("web", "SIGNOPE")
    assert e.value.status == 400 and "'SIGNOPE' is not a signal" in e.value.message
    assert c.record() == before
    sim.core.kill("web", "10")         # SIGUSR1 by number: its stop signal
    assert c.stopped_by_user
