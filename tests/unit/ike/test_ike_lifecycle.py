"""CREATE_CHILD_SA, rekeying, collisions, DPD (RFC 7296 §1.3, §2.4, §2.8) between two in-process engines.

The harness applies every Child SA event to a model of each dataplane and checks after each message
that whatever one side sends, the other can receive: rekeying must never lose a packet.
"""

from __future__ import annotations

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.crypto.proposals import parse_proposals
from pyike.ids import ExchangeType, ProtocolId
from pyike.ike import lifetimes
from pyike.ike.events import ChildSaDown, ChildSaOutbound, ChildSaUp, Failure, IkeSaDown, IkeSaUp
from pyike.ike.policy import ChildPolicy
from pyike.selectors import TrafficSelector
from pyike.wire.message import decode_message


def established(**kw):
    net, left, right = pair(**kw)
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    return net, left, right


def children(engine):
    (sa,) = engine.sas.values()
    return sa.children


def exchanges(net):
    return [decode_message(d.data).header.exchange for d in net.wire]


@pytest.mark.parametrize("starter", [LEFT, RIGHT])
@pytest.mark.parametrize("esp", ["aes256gcm16", "aes256gcm16-x25519", "aes256-sha256-modp2048"])
def test_child_rekey_from_either_side_is_make_before_break(starter, esp):
    net, left, right = established(left_kw={"esp": esp}, right_kw={"esp": esp})
    engine = net.engines[starter]
    (old,) = children(engine)
    assert engine.rekey_child("s2s", None, now=10.0) == 1
    net.run(now=10.0)
    (new_left,), (new_right,) = children(left), children(right)
    assert new_left.spi_in != old.spi_in and new_right.spi_in != old.spi_in
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    rekeyed = [e for e in net.of(starter, ChildSaUp) if e.rekey_of is not None]
    assert len(rekeyed) == 1 and rekeyed[0].rekey_of == old.spi_in and rekeyed[0].outbound
    other = RIGHT if starter == LEFT else LEFT
    (peer_up,) = [e for e in net.of(other, ChildSaUp) if e.rekey_of is not None]
    assert peer_up.outbound is False  # the responder switches only when the old SA is deleted
    assert len(net.of(other, ChildSaOutbound)) == 1
    assert all(d.replaced for d in net.of(LEFT, ChildSaDown) + net.of(RIGHT, ChildSaDown))
    if "x25519" in esp or "modp" in esp:  # PFS: a KE payload in the CREATE_CHILD_SA request
        create = [
            decode_message(d.data)
            for d in net.wire
            if decode_message(d.data).header.exchange == ExchangeType.CREATE_CHILD_SA
        ]
        assert create
    assert (
        rekeyed[0].encr_key_out
        != next(e for e in net.of(starter, ChildSaUp) if e.rekey_of is None).encr_key_out
    )


def test_repeated_lifetime_rekeys_keep_one_child_for_a_minute():
    net, left, right = established()
    for engine in (left, right):
        for policy in engine.policies.values():
            policy.children["net"].rekey_time = 5.0
    for engine in (left, right):
        for child in children(engine):
            lifetimes.schedule_child(engine, child, 0.0)
    now = 0.0
    while now < 60.0:
        deadlines = [d for d in (left.next_deadline(), right.next_deadline()) if d is not None]
        now = min(deadlines)
        left.tick(now)
        right.tick(now)
        net.run(now=now)
        assert len(children(left)) >= 1 and len(children(right)) >= 1
    rekeys = [e for e in net.of(LEFT, ChildSaUp) if e.rekey_of is not None]
    assert len(rekeys) >= 10
    assert len(children(left)) == len(children(right)) == 1
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)


@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_child_rekey_keeps_exactly_one_pair(seed):
    net, left, right = established(seed=seed)
    left.rekey_child("s2s", None, now=10.0)
    right.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    (new_left,), (new_right,) = children(left), children(right)
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert net.tables[LEFT].outbound["net"] == new_left.spi_out
    assert net.tables[RIGHT].outbound["net"] == new_right.spi_out
    assert set(net.tables[LEFT].inbound) == {new_left.spi_in}
    assert set(net.tables[RIGHT].inbound) == {new_right.spi_in}


def test_rekey_of_an_unknown_child_gets_child_sa_not_found():
    net, left, right = established()
    (child,) = children(right)
    child.spi_out ^= 0xFFFF  # the responder no longer knows the SA the initiator rekeys
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    assert any("CHILD_SA_NOT_FOUND" in f.reason for f in net.of(LEFT, Failure))


def test_second_child_with_create_child_sa():
    net, left, right = pair()
    for engine, local, remote in (
        (left, "10.1.5.0/24", "10.2.5.0/24"),
        (right, "10.2.5.0/24", "10.1.5.0/24"),
    ):
        engine.policies["s2s"].children["voice"] = ChildPolicy(
            "voice",
            [TrafficSelector.from_network(local)],
            [TrafficSelector.from_network(remote)],
            parse_proposals("aes128gcm16", ProtocolId.ESP),
        )
    left.initiate("s2s", "net", now=0.0)
    net.run()
    left.initiate("s2s", "voice", now=1.0)
    net.run(now=1.0)
    assert sorted(c.name for c in children(left)) == ["net", "voice"]
    assert sorted(c.name for c in children(right)) == ["net", "voice"]
    assert ExchangeType.CREATE_CHILD_SA in exchanges(net)
    assert len(left.sas) == 1


@pytest.mark.parametrize("starter", [LEFT, RIGHT])
def test_ike_rekey_moves_the_children(starter):
    net, left, right = established()
    (child_before,) = children(left)
    engine = net.engines[starter]
    assert engine.rekey_ike("s2s", now=10.0) == 1
    net.run(now=10.0)
    assert len(left.sas) == len(right.sas) == 1
    (child_after,) = children(left)
    assert child_after is child_before
    assert (
        len(net.of(LEFT, IkeSaUp)) == 2 and not net.of(LEFT, ChildSaDown) and not net.of(RIGHT, ChildSaDown)
    )
    # The new IKE SA works: rekey the child over it.
    left.rekey_child("s2s", None, now=20.0)
    net.run(now=20.0)
    assert len(children(left)) == 1 and children(left)[0].spi_in != child_before.spi_in


def test_simultaneous_ike_rekey_ends_with_one_ike_sa():
    net, left, right = established()
    left.rekey_ike("s2s", now=10.0)
    right.rekey_ike("s2s", now=10.0)
    net.run(now=10.0)
    now = 10.0
    for _step in range(20):
        deadlines = [d for d in (left.next_deadline(), right.next_deadline()) if d is not None and d < 100]
        if not deadlines:
            break
        now = min(deadlines)
        left.tick(now)
        right.tick(now)
        net.run(now=now)
    assert len(left.sas) == len(right.sas) == 1
    assert len(children(left)) == len(children(right)) == 1


def test_dead_peer_is_detected_and_cleared():
    net, left, _right = established()
    now = net.peer_dies(left)
    assert not left.sas
    assert any("no answer" in f.reason for f in net.of(LEFT, Failure))
    assert net.of(LEFT, IkeSaDown) and net.of(LEFT, ChildSaDown)
    assert 10.0 + sum(2.0 * 1.8**n for n in range(6)) == pytest.approx(now)


def test_dead_peer_with_restart_comes_back():
    net, left, right = established()
    now = net.peer_dies(left, "restart")
    # The peer restarts with no state and the network comes back.
    right.sas.clear()
    right.half_open.clear()
    net.drop = None
    for _step in range(10):
        now = left.next_deadline()
        left.tick(now)
        net.run(now=now)
        if any(c for sa in left.sas.values() for c in sa.children):
            break
    assert len(left.sas) == 1 and len(children(left)) == 1
