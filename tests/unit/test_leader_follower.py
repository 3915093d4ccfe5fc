"""Where an agent dials next after losing its master (common/leader.py), pure."""

from __future__ import annotations

import pytest

from juggler.common.leader import LeaderFollower


def test_a_named_leader_is_dialled_at_once() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    assert f.address == "m1:1"
    assert f.ended(10.0, answered=True, leader="m3:1", registered=False) == 0.0
    assert f.address == "m3:1"


def test_a_leader_that_just_failed_is_not_dialled_again_at_once() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    f.ended(10.0, answered=False, leader=None, registered=True)  # m1 (the old leader) died
    assert f.address == "m2:1"
    # m2 still names m1 (its lease has not run out): ask around instead, soon.
    delay = f.ended(10.5, answered=True, leader="m1:1", registered=False)
    assert f.address == "m3:1" and 0.05 <= delay <= 0.3
    # Still within a lease TTL and a second (FAILED_MEMORY): a frozen m1 is
    # named by the standbys until its lease runs out; not followed at once.
    assert 0.05 <= f.ended(15.5, answered=True, leader="m1:1", registered=False) <= 0.3
    # Later m1 may be back: then it is followed again.
    f = LeaderFollower("m1:1,m2:1,m3:1")
    f.ended(10.0, answered=False, leader=None, registered=True)
    assert f.ended(16.5, answered=True, leader="m1:1", registered=False) == 0.0
    assert f.address == "m1:1"


def test_silence_backs_off_only_after_a_whole_round_and_resets_on_registration() -> None:
    f = LeaderFollower("m1:1,m2:1", cap=5.0)
    assert f.ended(1.0, answered=False, leader=None, registered=False) == 0.0  # try m2 now
    rounds = [f.ended(2.0 + i, answered=False, leader=None, registered=False)
              for i in range(20)]
    assert all(0.0 <= d <= 5.0 for d in rounds)
    assert max(rounds) > 0.0
    f.ended(30.0, answered=True, leader=None, registered=True)
    assert f._silent_rounds == 0


def test_the_lost_leader_is_named_until_the_next_registration() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    assert f.metadata() == ()
    f.ended(10.0, answered=False, leader=None, registered=True)  # registered at m1, broke off
    assert f.address == "m2:1"
    assert f.metadata() == (("juggler-lost-leader", "m1:1"),)
    f.ended(10.1, answered=True, leader="m3:1", registered=False)  # m2 names the new leader
    assert f.address == "m3:1"
    assert f.metadata() == (("juggler-lost-leader", "m1:1"),)
    f.ended(20.0, answered=True, leader=None, registered=True)  # m3 hung up: not lost
    assert f.metadata() == ()


@pytest.mark.parametrize("dead", ["m1:1", "m3:1"])
def test_rounds_in_which_a_standby_answered_do_not_back_off(dead: str) -> None:
    # The leader died; the other two still name it while its lease runs out.
    f = LeaderFollower("m1:1,m2:1,m3:1", cap=5.0)
    while f.address != dead:
        f.ended(9.0, answered=True, leader=dead, registered=False)
    f.ended(10.0, answered=False, leader=None, registered=True)
    now, delays = 10.0, []
    for _ in range(30):
        now += 0.1
        answered = f.address != dead
        delays.append(f.ended(now, answered=answered, leader=dead if answered else None,
                              registered=False))
    assert max(delays) <= 0.3  # never the exponential backoff of a silent cluster
    assert f._silent_rounds == 0


def test_after_losing_its_leader_an_agent_dials_the_leaders_successor_first() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    f.ended(1.0, answered=True, leader="m3:1", registered=False)  # m1 names m3
    assert f.address == "m3:1"
    # Registered at m3, which says m1 would lead after it, then m2; and m4 joined.
    f.follow_succession(["m3:1", "m1:1", "m4:1", "m2:1"])
    assert f.address == "m3:1"
    assert f.ended(5.0, answered=False, leader=None, registered=True) == 0.0  # m3 died
    assert f.address == "m1:1" and f.metadata() == (("juggler-lost-leader", "m3:1"),)
    assert f.ended(5.1, answered=False, leader=None, registered=False) == 0.0
    assert f.address == "m4:1"
    f.follow_succession([])  # a master that does not say: nothing changes
    assert f.address == "m4:1"


def test_the_successor_is_the_master_dialled_first_when_the_current_one_is_lost() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    f.ended(1.0, answered=True, leader="m3:1", registered=False)  # m1 names m3
    f.follow_succession(["m3:1", "m2:1", "m1:1"])  # registered at m3
    assert f.successor() == "m2:1"
    f.ended(2.0, answered=False, leader=None, registered=True)  # m3 died
    assert f.address == "m2:1"  # where an agent's stream opened ahead of time waits
    assert LeaderFollower("m1:1").successor() is None  # one master: none to stand by with
