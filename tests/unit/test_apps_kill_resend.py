"""A kill the apps service decided is seen through even when the master never
took it (fault campaign seed 920191668: an apps leader's Kills failed while
the master failed over; every later leader recovered the instances as
"kill requested", counted them as dying, never sent the Kill again, so the
app ran more instances than its count, its scale-down deployment never
ended, and DELETE did not kill them). Pure core (apps/state.py), fake clock."""

from __future__ import annotations

from juggler.apps.commands import Kill
from juggler.apps.instances import Instance
from juggler.apps.state import AppsState
from juggler.v1 import common_pb2 as pb
from tests.unit.test_apps_state import Sim, app


def _kills(cmds: list[object]) -> list[str]:
    return sorted(c.task_id for c in cmds if isinstance(c, Kill))


def _scaled_down_with_lost_kills() -> tuple[Sim, list[str]]:
    """3 instances running, scaled to 1: the two Kills never reach the master."""
    sim = Sim()
    sim.deploy(app(instances=3))
    sim.offer()
    assert len(sim.live()) == 3
    _, cmds = sim.core.deploy({"/web": app(instances=1)}, force=True)
    lost = _kills(cmds)
    assert len(lost) == 2
    sim.run([c for c in cmds if not isinstance(c, Kill)])   # the Kills are lost
    return sim, lost


def test_a_kill_the_master_did_not_take_is_sent_again_on_the_next_tick() -> None:
    sim, lost = _scaled_down_with_lost_kills()
    sim.clock.advance(1.0)
    assert _kills(sim.core.tick()) == [], "nothing failed yet: no resend"
    for task_id in lost:
        sim.core.kill_failed(task_id)
    sim.clock.advance(1.0)
    cmds = sim.core.tick()
    assert _kills(cmds) == lost
    sim.run(cmds)
    assert not [i for i in sim.core.instances.values() if i.app_id == "/web"
                and i.kill_requested], "killed: forgotten"
    assert len(sim.tasks) == 1
    sim.clock.advance(1.0)
    assert _kills(sim.core.tick()) == [], "sent again once, not for ever"


def test_a_new_leader_sends_again_the_kills_it_recovers() -> None:
    sim, lost = _scaled_down_with_lost_kills()
    a = sim.core.apps["/web"]
    fresh = AppsState(sim.clock, lambda: "new")
    fresh.recover({"/web": (a.current, a.last_good, a.versions, "", 0)},
                  [Instance.from_record(i.record()) for i in sim.core.instances.values()],
                  [])
    running = {t: pb.TaskStatus(task_id=t, agent_id=sim.tasks[t].agent_id,
                                state=pb.TASK_RUNNING) for t in sim.tasks}
    assert _kills(fresh.reconciled(running)) == lost


def test_resend_kills_covers_every_live_instance_whose_kill_was_asked_for() -> None:
    sim, lost = _scaled_down_with_lost_kills()
    assert _kills(sim.core.resend_kills()) == lost
    sim.update(lost[0], pb.TASK_KILLED)
    assert _kills(sim.core.resend_kills()) == lost[1:], "an ended one is not killed again"
