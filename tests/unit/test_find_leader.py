"""Which master a client dials after asking them all who leads
(common/leader.py choose_leader, Dialling), and how long a failed leader is
not followed on a standby's word (LeaderFollower): pure, no sockets; then
find_leader's give-ups against real sockets (a refusing gRPC server in this
process, a listening socket that never answers, as a frozen master's kernel
does)."""

from __future__ import annotations

import asyncio
import socket
from concurrent import futures
from pathlib import Path

import grpc

from juggler.common import leader, tls
from juggler.common.leader import (
    DOWN,
    FAILED_MEMORY,
    REFUSED,
    SILENT,
    Claim,
    Dialling,
    LeaderFollower,
    choose_leader,
    find_leader_sync,
    nobody_will_say,
    still_electing,
)
from juggler.v1 import operator_pb2_grpc


def test_a_master_s_claim_about_itself_wins_over_what_standbys_say() -> None:
    # m1 froze while leading; m2 won the election; m3 still names m1 (its
    # lease has not run out there yet).
    answers = {"m1:1": SILENT, "m2:1": Claim("m2:1", True), "m3:1": Claim("m1:1", False)}
    assert choose_leader(answers) == "m2:1"


def test_a_silent_master_is_not_chosen_however_many_name_it() -> None:
    answers = {"m1:1": SILENT, "m2:1": Claim("m1:1", False), "m3:1": Claim("m1:1", False)}
    assert choose_leader(answers) is None  # an election is under way: ask again


def test_a_master_elected_but_still_reading_the_registry_is_chosen() -> None:
    # It names itself without leading yet; a standby names it too.
    answers = {"m1:1": SILENT, "m2:1": Claim("m2:1", False), "m3:1": Claim("m2:1", False)}
    assert choose_leader(answers) == "m2:1"


def test_the_leader_most_standbys_name_wins_without_a_claim() -> None:
    answers = {"m1:1": Claim("m3:1", False), "m2:1": Claim("m2:1", False),
               "m3:1": Claim("m3:1", False)}
    assert choose_leader(answers) == "m3:1"


def test_a_named_leader_that_was_not_asked_is_trusted() -> None:
    # The masters advertise an address the client was not configured with.
    answers = {"10.0.0.1:5050": Claim("lb.example:5050", False), "10.0.0.2:5050": SILENT}
    assert choose_leader(answers) == "lb.example:5050"


def test_a_master_that_refused_to_say_is_alive() -> None:
    answers = {"m1:1": REFUSED, "m2:1": Claim("m1:1", False)}
    assert choose_leader(answers) == "m1:1"


def test_two_claims_the_one_the_others_name_wins() -> None:
    # m1 was deposed (paused) and says it leads a moment longer.
    answers = {"m1:1": Claim("m1:1", True), "m2:1": Claim("m2:1", True),
               "m3:1": Claim("m2:1", False)}
    assert choose_leader(answers) == "m2:1"
    equal = {"m1:1": Claim("m1:1", True), "m2:1": Claim("m2:1", True)}
    assert choose_leader(equal) == "m1:1"  # a tie: the first


def test_nobody_knows_a_leader() -> None:
    answers = {"m1:1": Claim("", False), "m2:1": Claim("", False), "m3:1": SILENT}
    assert choose_leader(answers) is None
    assert not nobody_will_say(answers)


def test_a_master_that_is_down_is_not_chosen() -> None:
    answers = {"m1:1": DOWN, "m2:1": Claim("m1:1", False), "m3:1": Claim("m3:1", False)}
    assert choose_leader(answers) == "m3:1"


def test_asking_again_is_pointless_only_when_no_master_may_still_say() -> None:
    assert nobody_will_say({"m1:1": REFUSED, "m2:1": REFUSED})
    assert nobody_will_say({"m1:1": DOWN, "m2:1": REFUSED})  # no cluster there
    # One refused, none claimed: a principal without view_cluster; the
    # silent one (slow, or frozen) would refuse too. Not waited for.
    assert nobody_will_say({"m1:1": REFUSED, "m2:1": SILENT})
    assert not nobody_will_say({"m1:1": SILENT, "m2:1": SILENT})  # an election, or frozen
    assert not nobody_will_say({"m1:1": DOWN, "m2:1": SILENT})
    assert not nobody_will_say({"m1:1": DOWN, "m2:1": Claim("", False)})  # an election
    assert not nobody_will_say({})


def test_a_failed_leader_is_not_followed_for_a_lease_ttl_and_a_second() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1,m4:1")
    f.ended(100.0, answered=False, leader=None, registered=True)  # m1 froze under us
    assert f.address == "m2:1" and f.failed_recently("m1:1", 100.0)
    # The standbys name m1 until its lease runs out: never followed straight
    # there (0.0: "dial the named leader now"); the masters are asked in turn.
    now = 100.0
    while now < 100.0 + FAILED_MEMORY - 0.5:
        now += 0.5
        if f.address != "m1:1":
            assert f.ended(now, answered=True, leader="m1:1", registered=False) > 0.0
        else:  # its turn in the round: still silent
            f.ended(now, answered=False, leader=None, registered=False)
    # After FAILED_MEMORY without an answer from it, a standby's word is followed again.
    later = now + FAILED_MEMORY + 0.1
    if f.address == "m1:1":
        f.go_to("m2:1")
    assert f.ended(later, answered=True, leader="m1:1", registered=False) == 0.0
    assert f.address == "m1:1"


def test_a_failed_master_that_answers_again_is_forgotten() -> None:
    f = LeaderFollower("m1:1,m2:1")
    f.ended(10.0, answered=False, leader=None, registered=False)  # m1 silent
    assert f.failed_recently("m1:1", 10.5)
    f.ended(10.5, answered=True, leader=None, registered=False)  # m2: no leader yet
    assert f.address == "m1:1"
    f.ended(11.0, answered=True, leader="m2:1", registered=False)  # m1 answers again
    assert not f.failed_recently("m1:1", 11.0)


def test_a_standby_naming_the_failed_leader_does_not_send_the_client_back() -> None:
    f = LeaderFollower("m1:1,m2:1,m3:1")
    f.ended(10.0, answered=False, leader=None, registered=True)  # m1 lost
    assert f.address == "m2:1"
    assert f.ended(13.0, answered=True, leader="m1:1", registered=False) > 0.0  # 3 s later
    assert f.address == "m3:1"


def test_go_to_dials_a_found_leader_next() -> None:
    f = LeaderFollower("m1:1,m2:1")
    f.go_to("m2:1")
    assert f.address == "m2:1"
    f.go_to("m9:1")  # one the masters advertise
    assert f.address == "m9:1" and "m9:1" in f.masters


# -- a master elected but still reading the registry (not leading yet) -------------------------

def test_a_master_naming_itself_before_it_leads_is_still_electing() -> None:
    answers = {"m1:1": SILENT, "m2:1": Claim("m2:1", False), "m3:1": Claim("m2:1", False)}
    assert still_electing(answers, choose_leader(answers) or "")  # ask again, 0.2 s on
    leading = {"m1:1": SILENT, "m2:1": Claim("m2:1", True)}
    assert not still_electing(leading, choose_leader(leading) or "")
    # Named by a standby, not asked: nothing says it does not lead yet.
    unasked = {"10.0.0.1:5050": Claim("lb.example:5050", False)}
    assert not still_electing(unasked, choose_leader(unasked) or "")


# -- the order a one-shot call dials in (CLI, apps) ----------------------------------------------

def test_the_found_leader_is_dialled_first_without_the_connection_check() -> None:
    d = Dialling(["m1:1", "m2:1", "m3:1"], found="m2:1")
    assert d.next() == ("m2:1", False, False)
    assert d.next() == ("m1:1", True, False)


def test_a_master_that_failed_only_the_check_is_dialled_again_at_the_end() -> None:
    # m1 leads but is slow; find_leader did not find it (no answer in time).
    d = Dialling(["m1:1", "m2:1"])
    assert d.next() == ("m1:1", True, False)
    d.slow("m1:1")
    assert d.next() == ("m2:1", True, False)
    d.named("m1:1")  # m2, a standby, names m1: tried already, not now
    assert d.next() == ("m1:1", False, True)  # once more, without the check
    assert d.next() is None


def test_a_named_leader_not_tried_yet_is_dialled_next() -> None:
    d = Dialling(["m1:1", "m2:1", "m3:1"])
    assert d.next() == ("m1:1", True, False)
    d.named("m3:1")
    assert d.next() == ("m3:1", True, False)
    assert d.next() == ("m2:1", True, False)
    assert d.next() is None
    d = Dialling(["m1:1"])
    assert d.next() == ("m1:1", False, False)  # a lone master: no check


# -- find_leader gives up at once --------------------------------------------------------------

def test_an_unreadable_tls_configuration_is_down_not_silent(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    tls.configure(tls.TLSConfig(missing, missing, missing))
    leader.forget_refusals()
    try:
        masters = ["127.0.0.1:1", "127.0.0.1:2"]
        assert leader.ask_masters_sync(masters) == {m: DOWN for m in masters}
        assert asyncio.run(leader.ask_masters(masters)) == {m: DOWN for m in masters}
        # None at once (no 8 s of asking): the caller's own dial raises tls.TLSError.
        assert find_leader_sync(masters, 8.0) is None
    finally:
        tls.configure(None)


class _Refusing(operator_pb2_grpc.OperatorServicer):
    """A master whose access rules refuse GetLeader (no view_cluster)."""

    def __init__(self) -> None:
        self.asked = 0

    def GetLeader(self, request: object, context: grpc.ServicerContext) -> object:
        self.asked += 1
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "view_cluster")


def test_a_refusal_with_a_silent_master_ends_the_search_and_is_remembered() -> None:
    refusing = _Refusing()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    operator_pb2_grpc.add_OperatorServicer_to_server(refusing, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    frozen = socket.socket()  # listens, never answers: a SIGSTOPped master's kernel
    frozen.bind(("127.0.0.1", 0))
    frozen.listen(8)
    leader.forget_refusals()
    try:
        masters = [f"127.0.0.1:{frozen.getsockname()[1]}", f"127.0.0.1:{port}"]
        assert find_leader_sync(masters, 8.0) is None
        assert refusing.asked == 1  # not asked again in a loop
        assert find_leader_sync(masters, 8.0) is None
        assert asyncio.run(leader.find_leader(masters, 8.0)) is None
        assert refusing.asked == 1  # remembered by this process
    finally:
        leader.forget_refusals()
        frozen.close()
        server.stop(None)
