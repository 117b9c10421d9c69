"""Issue 11: the collision matrix, in the style of strongSwan's test_child_rekey.c. Both ends start one of
{child rekey, child delete, IKE rekey, IKE delete, reauthentication, new child} at the same moment (each
request reaches the other end before either is answered), once with the left end's nonces lowest and once
with the right end's (the lowest nonce decides §2.8.1 collisions). Every combination ends with one IKE SA
and one Child SA pair per child on both ends, agreeing (or nothing, when an IKE SA was deleted), and the
dataplane model never sends on an SA the peer cannot receive."""

from __future__ import annotations

import itertools
import random

import pytest
from ike_harness import LEFT, RIGHT, Net, _engine, policy
from pyike.crypto.proposals import parse_proposals
from pyike.ids import ProtocolId
from pyike.ike.policy import ChildPolicy
from pyike.ike.sa import ESTABLISHED
from pyike.ike.tasks.child_delete import delete_child
from pyike.selectors import TrafficSelector


def only_sa(engine):
    (sa,) = engine.sas.values()
    return sa


ACTIONS = {
    "child_rekey": lambda e, now: e.rekey_child("s2s", "net", now),
    "child_delete": lambda e, now: delete_child(e, only_sa(e), _child(e, "net"), "by the operator", now),
    "ike_rekey": lambda e, now: e.rekey_ike("s2s", now),
    "ike_delete": lambda e, now: e.terminate("s2s", now),
    "reauth": lambda e, now: e.reauthenticate("s2s", now),
    "new_child": lambda e, now: e.initiate("s2s", "extra", now),
}


def _child(engine, name):
    return next(c for c in only_sa(engine).children if c.name == name)


def _extra(local, remote):
    return ChildPolicy(
        "extra",
        [TrafficSelector.from_network(local)],
        [TrafficSelector.from_network(remote)],
        parse_proposals("aes128gcm16", ProtocolId.ESP),
    )


def _biased(seed, first_octet):
    """Seeded randomness whose nonces (32-octet draws) all start with `first_octet`."""
    rng = random.Random(seed)

    def random_bytes(n):
        data = rng.getrandbits(8 * n).to_bytes(n, "big")
        return bytes([first_octet]) + data[1:] if n == 32 else data

    return random_bytes


def engines(left_low: bool, seed: int = 3):
    left_policy = policy((LEFT, "left.example"), (RIGHT, "right.example"), ["10.1.0.0/24"], ["10.2.0.0/24"])
    right_policy = policy((RIGHT, "right.example"), (LEFT, "left.example"), ["10.2.0.0/24"], ["10.1.0.0/24"])
    left_policy.children["extra"] = _extra("10.11.0.0/24", "10.12.0.0/24")
    right_policy.children["extra"] = _extra("10.12.0.0/24", "10.11.0.0/24")
    left = _engine(left_policy, random.Random(seed))
    right = _engine(right_policy, random.Random(seed + 100))
    left.random_bytes = _biased(seed, 0x10 if left_low else 0xF0)
    right.random_bytes = _biased(seed + 100, 0xF0 if left_low else 0x10)
    for engine in (left, right):
        engine.cookies.__init__(engine.random_bytes, 0.0)
    return Net({LEFT: left, RIGHT: right}), left, right


def cross(net, now):
    """Both ends' queued requests are delivered to the other end before any answer is."""
    sent = {}
    for ip, engine in net.engines.items():
        events = engine.pop_events()
        sent[ip] = [e for e in events if hasattr(e, "data")]
        for event in events:
            if not hasattr(event, "data"):
                net.events[ip].append(event)
                net.tables[ip].apply(event)
    for ip in sent:
        for datagram in sent[ip]:
            net.wire.append(datagram)
            net.engines[datagram.remote[0]].receive(datagram.data, datagram.remote, datagram.local, now)
    net.run(now=now)


def settle(net, start, until):
    now = start
    for _step in range(1000):
        deadlines = [
            d for d in (e.next_deadline() for e in net.engines.values()) if d is not None and d <= until
        ]
        if not deadlines:
            return
        now = max(now, min(deadlines))
        for engine in net.engines.values():
            engine.tick(now)
        net.run(now=now)
    raise AssertionError("timers did not settle")


def assert_agree(left, right):
    """One IKE SA on each end with the same SPIs, and per child name one pair of SAs that match."""
    (sa_left,), (sa_right,) = left.sas.values(), right.sas.values()
    assert sa_left.state == sa_right.state == ESTABLISHED
    assert (sa_left.spi_i, sa_left.spi_r) == (sa_right.spi_i, sa_right.spi_r)
    names = sorted(c.name for c in sa_left.children)
    assert names == sorted(c.name for c in sa_right.children) and len(set(names)) == len(names), names
    for name in names:
        mine, theirs = _child_of(sa_left, name), _child_of(sa_right, name)
        assert (mine.spi_in, mine.spi_out) == (theirs.spi_out, theirs.spi_in)
    return names


def _child_of(sa, name):
    return next(c for c in sa.children if c.name == name)


@pytest.mark.parametrize("left_low", [True, False], ids=["left-lowest-nonce", "right-lowest-nonce"])
@pytest.mark.parametrize(("left_action", "right_action"), list(itertools.product(ACTIONS, repeat=2)))
def test_both_ends_at_once(left_action, right_action, left_low):
    net, left, right = engines(left_low)
    left.initiate("s2s", "net", now=0.0)
    net.run(now=0.0)
    ACTIONS[left_action](left, 10.0)
    ACTIONS[right_action](right, 10.0)
    cross(net, 10.0)
    settle(net, 10.0, 200.0)  # drains, deletes, retries and timeouts; lifetimes are an hour
    actions = {left_action, right_action}
    if "ike_delete" in actions and (actions != {"ike_delete", "reauth"} or not (left.sas or right.sas)):
        assert left.sas == {} and right.sas == {}
        return
    # A reauthentication builds a new IKE SA, which the other end's termination of the old one leaves alone
    # (strongSwan alike): it comes up, with its Child SA.
    names = assert_agree(left, right)
    if "new_child" in actions:
        assert "extra" in names
    if "child_delete" not in actions and "ike_delete" not in actions:
        assert "net" in names
    elif actions == {"child_delete"} or actions <= {"child_delete", "child_rekey", "ike_rekey"}:
        assert "net" not in names  # the deletion wins (§2.25.1); an IKE SA rekey carries it over
    assert set(net.tables[LEFT].inbound) == {c.spi_in for c in only_sa(left).children}
    assert set(net.tables[RIGHT].inbound) == {c.spi_in for c in only_sa(right).children}
