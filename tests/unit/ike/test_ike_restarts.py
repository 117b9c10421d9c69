"""What the engine initiates again by itself (ike/restarts.py): close_action, dpd_action trap, peers given
as DNS names; two engines back to back, a fixed clock."""

from __future__ import annotations

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.ike import restarts
from pyike.ike.events import ChildSaUp, Failure, IkeSaUp, InstallTrap, PeerUnmatched, ResolvePeer
from pyike.ike.policy import ChildPolicy
from pyike.ike.sa import CONNECTING, ESTABLISHED
from pyike.ike.tasks.child_delete import delete_child
from pyike.selectors import TrafficSelector
from test_ike_lifecycle_more import run_timers


def established(close_action="none", **kw):
    net, left, right = pair(**kw)
    left.policies["s2s"].children["net"].close_action = close_action
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    return net, left, right


def installed(engine):
    return [c.name for sa in engine.sas.values() if sa.state == ESTABLISHED for c in sa.children]


def peer_deletes_the_ike_sa(net, right, now):
    right.terminate("s2s", now)
    net.run(now=now)


# --- close_action ---------------------------------------------------------------------------------------


def test_close_action_start_initiates_again_after_the_peer_deletes_the_ike_sa():
    net, left, right = established("start")
    peer_deletes_the_ike_sa(net, right, 10.0)
    assert left.sas == {} and left.restarts == {("s2s", "net"): 10.0 + restarts.RESTART_DELAY}
    assert left.counters["close_restarts"] == 1
    run_timers(net, 13.0, start=10.0)
    assert installed(left) == ["net"] and installed(right) == ["net"]


def test_close_action_start_after_the_peer_deletes_only_the_child_uses_the_same_ike_sa():
    net, left, right = established("start")
    (ike,) = left.sas.values()
    (sa,) = right.sas.values()
    delete_child(right, sa, sa.children[0], "operator", 5.0)
    net.run(now=5.0)
    assert installed(left) == [] and list(left.sas.values()) == [ike]
    run_timers(net, 8.0, start=5.0)
    assert installed(left) == ["net"] and list(left.sas.values()) == [ike]  # CREATE_CHILD_SA on it


def test_a_peer_that_keeps_deleting_meets_a_growing_delay():
    """2, 4, 8, 16 ... seconds (at most MAX_CLOSE_DELAY) while the peer closes the child again within
    STABLE_TIME of our restart; a close after a quiet minute starts again at 2 s."""
    net, left, right = established("start")
    now, delays = 0.0, []
    for _round in range(9):
        now += 1.0
        peer_deletes_the_ike_sa(net, right, now)
        (at,) = left.restarts.values()
        delays.append(at - now)
        now = run_timers(net, at + 0.5, start=now)
        assert installed(left) == ["net"]
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 300.0]
    now += restarts.STABLE_TIME + 1.0
    peer_deletes_the_ike_sa(net, right, now)
    assert list(left.restarts.values()) == [now + 2.0]


def test_close_action_trap_asks_the_runtime_for_a_trap():
    net, left, right = established("trap")
    peer_deletes_the_ike_sa(net, right, 10.0)
    assert net.of(LEFT, InstallTrap) == [InstallTrap("s2s", "net", "close_action", "closed by the peer")]
    assert left.restarts == {}


@pytest.mark.parametrize("action", ["start", "trap"])
def test_rekeys_reauthentications_and_our_terminate_are_no_close(action):
    net, left, right = established(action)
    # both ends rekey at once (§2.8.1): the winner deletes the redundant new SA and the old one
    right.rekey_child("s2s", None, 5.0)
    left.rekey_child("s2s", None, 6.0)
    right.rekey_ike("s2s", 7.0)  # the old IKE SA goes, its children moved
    net.run(now=7.0)
    right.reauthenticate("s2s", 8.0)  # a new IKE SA, then the peer deletes the old one
    run_timers(net, 30.0, start=8.0)
    assert installed(left) == ["net"] and installed(right) == ["net"]
    assert left.restarts == {} and net.of(LEFT, InstallTrap) == []
    left.terminate("s2s", 31.0)
    run_timers(net, 60.0, start=31.0)
    assert left.sas == {} and left.restarts == {} and net.of(LEFT, InstallTrap) == []


def test_our_terminate_cancels_a_pending_restart():
    net, left, right = established("start")
    peer_deletes_the_ike_sa(net, right, 10.0)
    assert left.restarts
    left.terminate("s2s", 10.5)
    run_timers(net, 30.0, start=10.5)
    assert left.sas == {} and left.restarts == {}


def test_a_peer_that_refuses_our_authentication_is_no_close():
    net, left, _right = pair(right_kw={"psk": b"another-psk-of-right"})
    left.policies["s2s"].children["net"].close_action = "start"
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert left.sas == {} and left.restarts == {}
    assert any("AUTHENTICATION_FAILED" in f.reason for f in net.of(LEFT, Failure))


# --- dpd_action trap --------------------------------------------------------------------------------------


def test_dpd_action_trap_asks_for_a_trap_per_child_that_was_up():
    net, left, _right = established()
    net.peer_dies(left, "trap")
    assert net.of(LEFT, InstallTrap) == [
        InstallTrap("s2s", "net", "dpd_action", "the peer stopped answering")
    ]
    assert left.restarts == {}


# --- peers given as DNS names ------------------------------------------------------------------------------


def by_name(engine, host="right.example.net"):
    policy = engine.policies["s2s"]
    policy.remote_address, policy.remote_host = None, host
    return policy


def test_initiating_to_a_dns_name_asks_the_runtime_first():
    net, left, _right = pair()
    by_name(left)
    assert left.initiate("s2s", "net", now=0.0) == ""
    assert left.pop_events() == [ResolvePeer("s2s", "net", "right.example.net")]
    assert left.sas == {}
    key = left.initiate("s2s", "net", now=0.1, remote_ip=RIGHT)
    net.run(now=0.1)
    assert left.sas[next(iter(left.sas))].key == key and installed(left) == ["net"]
    assert left.sas[next(iter(left.sas))].remote[0] == RIGHT
    # an IKE SA is there: a second child needs no resolution
    assert left.initiate("s2s", "net", now=1.0) == key


def test_a_failed_resolution_is_reported_and_tried_again_later():
    _net, left, _right = pair()
    by_name(left)
    times = []
    now = 0.0
    for _round in range(8):
        left.initiate("s2s", None, now)
        assert [type(e) for e in left.pop_events()] == [ResolvePeer]
        left.resolve_failed("s2s", [None], "right.example.net", "no answer within 5s", now)
        (failure,) = left.pop_events()
        assert failure.conn == "s2s" and failure.what == "resolve right.example.net"
        ((_key, at),) = left.restarts.items()
        times.append(at - now)
        now = at
        left.tick(now)  # the retry asks again
        assert [type(e) for e in left.events] == [ResolvePeer]
        left.pop_events()
    assert times == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert "trying again in 60s" in failure.reason
    left.terminate("s2s", now)
    assert left.restarts == {}


def test_a_responder_accepts_a_named_peer_from_its_resolved_addresses_only():
    net, left, right = pair()
    by_name(right, "left.example.net")
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert right.sas == {} and left.sas == {}
    assert net.of(RIGHT, PeerUnmatched) == [PeerUnmatched((RIGHT, 500), (LEFT, 500))]
    right.set_peer_addresses("s2s", ("192.0.2.99", LEFT))
    left.initiate("s2s", None, now=1.0)
    net.run(now=1.0)
    assert installed(left) == ["net"] and installed(right) == ["net"]


def test_a_reload_that_changes_the_name_forgets_its_addresses():
    _net, left, _right = pair()
    policy = by_name(left)
    left.set_peer_addresses("s2s", (RIGHT,))
    same = {"s2s": policy}
    left.update_policies(same, 0.0)
    assert left.peer_addresses == {"s2s": (RIGHT,)}
    other = by_name(pair()[1], "elsewhere.example.net")
    left.update_policies({"s2s": other}, 0.0)
    assert left.peer_addresses == {}


# --- a second child asked for while the IKE SA comes up -----------------------------------------------------


def test_a_child_asked_for_while_the_ike_sa_comes_up_follows_it():
    net, left, right = pair()
    for engine, mine, theirs in ((left, "10.1.1.0/24", "10.2.1.0/24"), (right, "10.2.1.0/24", "10.1.1.0/24")):
        first = engine.policies["s2s"].children["net"]
        engine.policies["s2s"].children["two"] = ChildPolicy(
            "two", [TrafficSelector.from_network(mine)], [TrafficSelector.from_network(theirs)],
            first.esp_proposals,
        )  # fmt: skip
    left.initiate("s2s", "net", now=0.0)
    (sa,) = left.sas.values()
    assert sa.state == CONNECTING
    assert left.initiate("s2s", "two", now=0.0) == sa.key
    assert left.initiate("s2s", "two", now=0.0) == sa.key  # once only
    net.run()
    assert sorted(installed(left)) == ["net", "two"] and sorted(installed(right)) == ["net", "two"]
    assert len(net.of(LEFT, IkeSaUp)) == 1
