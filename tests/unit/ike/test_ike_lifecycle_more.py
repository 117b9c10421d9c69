"""More of the IKE lifecycle between two in-process engines: byte/packet/sequence-number lifetimes,
rekey-versus-delete collisions (RFC 7296 §2.25), simultaneous initiation (duplicate IKE SAs) and
reauthentication (§2.8.3).

As in test_ike_lifecycle.py, the harness applies every Child SA event to a model of each dataplane and
checks after each round of messages that whatever one side sends, the other can receive.
"""

from __future__ import annotations

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.crypto.proposals import parse_proposals
from pyike.ids import ExchangeType, NotifyType, ProtocolId
from pyike.ike import lifetimes
from pyike.ike.duplicates import DUPLICATE_GRACE, RETIRE_DRAIN
from pyike.ike.engine import Engine
from pyike.ike.events import ChildSaDown, ChildSaOutbound, ChildSaUp, Failure, IkeSaDown, IkeSaUp
from pyike.ike.lifetimes import SEQ_MAX, SEQ_REKEY_MARGIN, volume_pair
from pyike.ike.policy import ChildPolicy
from pyike.ike.sa import DELETING, ESTABLISHED
from pyike.ike.tasks.child_delete import ChildDelete, delete_child
from pyike.ike.tasks.ike_reauth import REAUTH_RETRY
from pyike.ike.timers import HARD_LIMIT_GRACE
from pyike.selectors import TrafficSelector
from pyike.wire.message import decode_message
from pyike.wire.notify import DeletePayload, NotifyPayload


def established(**kw):
    net, left, right = pair(**kw)
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    return net, left, right


def only_sa(engine):
    (sa,) = engine.sas.values()
    return sa


def children(engine):
    return only_sa(engine).children


def set_child(engines, **values):
    for engine in engines:
        for name, value in values.items():
            setattr(engine.policies["s2s"].children["net"], name, value)


def run_timers(net, until, start=0.0, limit=500):
    """Tick both engines at their deadlines up to `until`; returns the time reached."""
    engines = list(net.engines.values())
    now = start
    net.run(now=now)  # what is already queued goes first
    for _step in range(limit):
        deadlines = [d for d in (e.next_deadline() for e in engines) if d is not None and d <= until]
        if not deadlines:
            return until
        now = max(now, min(deadlines))
        for engine in engines:
            engine.tick(now)
        net.run(now=now)
    raise AssertionError("timers did not settle before %s" % until)


def cross(net, now):
    """Deliver the requests both engines queued to the other end before either answers: the requests
    cross on the wire (RFC 7296 §2.25). Then let everything settle."""
    left, right = net.engines[LEFT], net.engines[RIGHT]
    from_left, from_right = left.pop_events(), right.pop_events()
    for events, target in ((from_left, right), (from_right, left)):
        for event in events:
            if hasattr(event, "data"):
                net.wire.append(event)
                target.receive(event.data, event.remote, event.local, now)
            else:
                source = LEFT if target is right else RIGHT
                net.events[source].append(event)
                net.tables[source].apply(event)
    net.run(now=now)


def inner_payloads(receiver, datagram):
    """The decrypted payloads of `datagram`, as the engine it was sent to sees them."""
    message = decode_message(datagram.data)
    header = message.header
    our_spi = header.spi_r if header.initiator else header.spi_i
    return receiver.sas[our_spi].unprotect(message)


def informational_responses(net, receiver_ip):
    receiver = net.engines[receiver_ip]
    out = []
    for datagram in net.wire:
        header = decode_message(datagram.data).header
        if (
            datagram.remote[0] == receiver_ip
            and header.exchange == ExchangeType.INFORMATIONAL
            and header.response
            and (header.spi_r if header.initiator else header.spi_i) in receiver.sas
        ):
            out.append(inner_payloads(receiver, datagram))
    return out


def notifies(net, ip):
    """Notify types in the encrypted responses that reached `ip` on IKE SAs it still has."""
    receiver = net.engines[ip]
    out = []
    for datagram in net.wire:
        header = decode_message(datagram.data).header
        our_spi = header.spi_r if header.initiator else header.spi_i
        if datagram.remote[0] != ip or not header.response or header.exchange == ExchangeType.IKE_SA_INIT:
            continue
        if our_spi in receiver.sas:
            out += [n.notify_type for n in inner_payloads(receiver, datagram) if isinstance(n, NotifyPayload)]
    return out


# --- byte, packet and sequence-number lifetimes -------------------------------------------------------


def test_volume_pair_derives_the_missing_limit_as_strongswan_and_vyos_do():
    assert volume_pair(0, 0) == (0, 0)
    assert volume_pair(1000, 0) == (1000, 1100)  # life = rekey + 10%
    assert volume_pair(0, 1100) == (1000, 1100)  # rekey = life / 1.1
    assert volume_pair(1000, 5000) == (1000, 5000)
    assert volume_pair(3, 0) == (3, 4)  # always a little room above the soft limit


def test_limits_of_a_new_child_have_jitter_below_the_rekey_value():
    net, left, right = pair()
    set_child([left, right], rekey_bytes=1_000_000, rekey_packets=5000, life_packets=9000)
    left.initiate("s2s", None, now=0.0)
    net.run()
    (up,) = net.of(LEFT, ChildSaUp)
    (peer_up,) = net.of(RIGHT, ChildSaUp)
    for limits in (up.limits, peer_up.limits):
        assert 900_000 <= limits.soft_bytes <= 1_000_000 and limits.hard_bytes == 1_100_000
        assert 4500 <= limits.soft_packets <= 5000 and limits.hard_packets == 9000
        assert limits.soft_seq == SEQ_MAX - SEQ_REKEY_MARGIN  # no ESN: rekey before the counter wraps
    assert up.limits.soft_bytes != peer_up.limits.soft_bytes  # each end draws its own jitter
    assert children(left)[0].limits is up.limits


def test_without_limits_only_the_sequence_number_is_watched():
    net, _left, _right = established()
    (up,) = net.of(LEFT, ChildSaUp)
    assert not up.limits.counts and up.limits.soft_seq == SEQ_MAX - SEQ_REKEY_MARGIN


@pytest.mark.parametrize("starter", [LEFT, RIGHT])
def test_a_soft_volume_limit_rekeys_make_before_break(starter):
    net, left, right = established()
    engine = net.engines[starter]
    (old,) = children(engine)
    assert engine.child_volume_reached(old.spi_in, False, 5.0, "bytes")
    net.run(now=5.0)
    (new_left,), (new_right,) = children(left), children(right)
    assert new_left.spi_in != old.spi_in and new_right.spi_in != old.spi_in
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert engine.counters["volume_rekeys"] == 1
    (rekeyed,) = [e for e in net.of(starter, ChildSaUp) if e.rekey_of is not None]
    assert rekeyed.limits is not None  # the new SA is watched afresh
    # The same report again (another SA of the pair, a late batch) starts nothing more.
    assert not engine.child_volume_reached(old.spi_in, False, 5.0, "bytes")


def test_a_soft_limit_during_a_running_rekey_starts_nothing_more():
    net, left, _right = established()
    (child,) = children(left)
    left.rekey_child("s2s", None, now=1.0)
    assert not left.child_volume_reached(child.spi_in, False, 1.0, "packets")
    net.run(now=1.0)
    assert len(children(left)) == 1 and "volume_rekeys" not in left.counters


def test_a_hard_volume_limit_deletes_the_child_sa():
    net, left, right = established()
    (child,) = children(left)
    assert left.child_volume_reached(child.spi_in, True, 5.0, "bytes")
    net.run(now=5.0)
    assert children(left) == [] and children(right) == []
    assert only_sa(left).state == ESTABLISHED  # the IKE SA stays
    (down,) = net.of(LEFT, ChildSaDown)
    assert down.reason == "hard bytes limit reached" and not down.replaced
    assert left.counters["volume_expiries"] == 1


def test_a_hard_limit_during_our_rekey_waits_for_it_a_moment():
    net, left, right = established()
    (child,) = children(left)
    left.rekey_child("s2s", None, now=5.0)
    assert not left.child_volume_reached(child.spi_in, True, 5.0, "bytes")
    assert child.expire_at == pytest.approx(5.0 + HARD_LIMIT_GRACE)
    net.run(now=5.0)  # the rekey completes: nothing is deleted but the old SA
    assert len(children(left)) == len(children(right)) == 1 and children(left)[0] is not child
    assert "volume_expiries" not in left.counters


def test_a_hard_limit_during_a_rekey_that_never_completes_deletes_the_child_sa():
    net, left, _right = established()
    (child,) = children(left)
    net.drop = lambda datagram: datagram.remote[0] == RIGHT  # the peer hears nothing more
    left.rekey_child("s2s", None, now=5.0)
    left.child_volume_reached(child.spi_in, True, 5.5, "bytes")
    run_timers(net, 5.5 + HARD_LIMIT_GRACE, start=5.5)
    assert child.delete_sent


def test_the_sequence_number_limit_rekeys_too():
    """RFC 4303 §3.3.3: the runtime reports the outbound sequence number near 2^32; a rekey follows."""
    net, left, right = established()
    (child,) = children(right)
    assert right.child_volume_reached(child.spi_in, False, 5.0, "sequence numbers")
    net.run(now=5.0)
    assert children(right)[0].spi_in != child.spi_in and len(children(left)) == 1


def test_an_unknown_spi_is_ignored():
    _net, left, _right = established()
    assert not left.child_volume_reached(0x12345678, False, 1.0, "bytes")
    assert not left.child_volume_reached(0x12345678, True, 1.0, "bytes")


def test_volume_rekeys_that_keep_coming_keep_one_child():
    """Like a dataplane under load: both ends report soft limits over and over, sometimes at once."""
    net, left, right = established()
    now = 0.0
    for round_ in range(30):
        now += 1.0
        reporters = [left, right] if round_ % 3 == 0 else [left if round_ % 2 else right]
        for engine in reporters:
            engine.child_volume_reached(children(engine)[0].spi_in, False, now, "bytes")
        net.run(now=now)
        now = run_timers(net, now + 0.5, start=now)
    assert len(children(left)) == len(children(right)) == 1
    assert left.counters["volume_rekeys"] + right.counters["volume_rekeys"] >= 30
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)


# --- §2.25.1: a Child SA rekey meets the deletion of that Child SA --------------------------------------


@pytest.mark.parametrize("rekeyer", [LEFT, RIGHT])
def test_child_rekey_crossing_its_delete(rekeyer):
    net, left, right = established()
    rekeying = net.engines[rekeyer]
    deleting = right if rekeying is left else left
    deleting_ip = RIGHT if rekeyer == LEFT else LEFT
    rekeying.rekey_child("s2s", None, now=5.0)
    (doomed,) = children(deleting)
    delete_child(deleting, only_sa(deleting), doomed, "hard lifetime expired", 5.0)
    cross(net, 5.0)
    # The deleting end is closing the SA: it answers the rekey with TEMPORARY_FAILURE (§2.25.1), and
    # the rekeying end answers the DELETE as usual, with a Delete payload.
    assert NotifyType.TEMPORARY_FAILURE in notifies(net, rekeyer)
    (answer,) = informational_responses(net, deleting_ip)
    assert [type(p) for p in answer] == [DeletePayload]
    assert children(left) == [] and children(right) == []
    assert only_sa(left).state == only_sa(right).state == ESTABLISHED
    assert not net.of(rekeyer, Failure)  # nothing failed: the SA was meant to go
    assert not net.tables[LEFT].inbound and not net.tables[RIGHT].inbound


def test_a_rekey_that_arrives_after_the_delete_gets_child_sa_not_found():
    net, left, right = established()
    lost = []

    def lose_first_rekey(datagram):
        header = decode_message(datagram.data).header
        if header.exchange == ExchangeType.CREATE_CHILD_SA and not lost:
            lost.append(datagram)
            return True
        return False

    net.drop = lose_first_rekey
    left.rekey_child("s2s", None, now=5.0)
    net.run(now=5.0)
    assert lost
    net.drop = None
    (child,) = children(right)
    delete_child(right, only_sa(right), child, "hard lifetime expired", 5.5)
    net.run(now=5.5)  # the delete is answered; the rekey waits for its retransmission
    assert children(right) == [] and children(left) == []
    run_timers(net, 20.0, start=5.5)
    assert NotifyType.CHILD_SA_NOT_FOUND in notifies(net, LEFT)
    assert not net.of(LEFT, Failure)
    assert len(left.sas) == len(right.sas) == 1


def test_crossing_deletes_are_answered_without_delete_payloads():
    """§1.4.1: both ends close the same Child SA at once; neither response may carry a Delete."""
    net, left, right = established()
    for engine in (left, right):
        (child,) = children(engine)
        delete_child(engine, only_sa(engine), child, "hard lifetime expired", 5.0)
    cross(net, 5.0)
    for ip in (LEFT, RIGHT):
        (answer,) = informational_responses(net, ip)
        assert not any(isinstance(p, DeletePayload) for p in answer)
        assert len(net.of(ip, ChildSaDown)) == 1
    assert children(left) == [] and children(right) == []


def test_a_rekey_answered_by_a_peer_that_then_deletes_the_old_sa_deletes_the_new_one_too():
    """A peer (strongSwan can) answers our rekey and deletes the rekeyed SA before its answer reaches
    us: the peer wanted the Child SA gone, so the new SA goes as well and no Child SA is left over."""
    net, left, right = established()

    def datagrams(ip):  # the rest goes to the dataplane models, as Net.run does
        events = net.engines[ip].pop_events()
        for event in events:
            if not hasattr(event, "data"):
                net.events[ip].append(event)
                net.tables[ip].apply(event)
        return [e for e in events if hasattr(e, "data")]

    left.rekey_child("s2s", None, now=5.0)
    (request,) = datagrams(LEFT)
    right.receive(request.data, request.remote, request.local, 5.0)
    response = datagrams(RIGHT)
    new_right = [c for c in children(right) if c.replaced_by is None]
    old_right = next(c for c in children(right) if c.replaced_by is not None)
    # the DELETE goes out after the response; it overtakes it on the way
    only_sa(right).tasks.initiate(
        ChildDelete(right, only_sa(right), old_right, "terminated by the operator", 5.0), 5.0
    )
    delete = datagrams(RIGHT)
    assert new_right and len(delete) == 1
    for datagram in delete + response:
        left.receive(datagram.data, datagram.remote, datagram.local, 5.0)
    net.run(now=5.0)
    assert children(left) == [] and children(right) == []
    assert len(left.sas) == len(right.sas) == 1


# --- §2.25.2: an IKE SA rekey meets the deletion of the IKE SA --------------------------------------


@pytest.mark.parametrize("rekeyer", [LEFT, RIGHT])
def test_ike_rekey_crossing_the_ike_delete(rekeyer):
    net, left, right = established()
    rekeying = net.engines[rekeyer]
    deleting = right if rekeying is left else left
    rekeying_sa = only_sa(rekeying)  # kept to read the answer after the SA is gone
    assert rekeying.rekey_ike("s2s", now=5.0) == 1
    assert deleting.terminate("s2s", now=5.0) == 1
    cross(net, 5.0)
    # The deleting end answers the rekey with TEMPORARY_FAILURE (it is closing the IKE SA, §2.25.2);
    # the rekeying end answers the DELETE and forgets its rekey.
    (answer,) = [
        rekeying_sa.unprotect(decode_message(d.data))
        for d in net.wire
        if d.remote[0] == rekeyer and decode_message(d.data).header.exchange == ExchangeType.CREATE_CHILD_SA
    ]
    assert [n.notify_type for n in answer] == [NotifyType.TEMPORARY_FAILURE]
    assert left.sas == {} and right.sas == {}
    assert not net.tables[LEFT].inbound and not net.tables[RIGHT].inbound
    assert run_timers(net, 100.0, start=5.0) == 100.0 and left.sas == {} and right.sas == {}
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)


def test_a_terminate_after_answering_an_ike_rekey_lets_the_old_sa_finish():
    """The responder of an IKE rekey holds the old IKE SA until the initiator deletes it. A terminate
    in that moment must not drop it silently: the initiator's DELETE would go unanswered, retransmit
    for a minute and then count as a dead peer (and, with dpd_action restart, bring the tunnel back)."""
    net, left, right = established()
    left.policies["s2s"].dpd_action = "restart"
    left.rekey_ike("s2s", now=5.0)
    (request,) = [e for e in left.pop_events() if hasattr(e, "data")]
    right.receive(request.data, request.remote, request.local, 5.0)
    assert sorted(sa.state for sa in right.sas.values()) == [DELETING, ESTABLISHED]
    assert right.terminate("s2s", now=5.0) == 2
    for datagram in [e for e in right.pop_events() if hasattr(e, "data")]:
        left.receive(datagram.data, datagram.remote, datagram.local, 5.0)
    net.run(now=5.0)
    assert run_timers(net, 120.0, start=5.0) == 120.0
    assert left.sas == {} and right.sas == {}
    assert not [f for f in net.of(LEFT, Failure) if "no answer" in f.reason]
    assert not left.restarts


# --- simultaneous initiation: duplicate IKE SAs -------------------------------------------------------


def both_initiate(seed, now=0.0):
    net, left, right = pair(seed=seed)
    left.initiate("s2s", None, now=now)
    right.initiate("s2s", None, now=now)
    # Each IKE_SA_INIT reaches the other end while its own is still in flight. While both IKE SAs come
    # up, each end installs the Child SA of the IKE_AUTH it answers before the other end has it, as
    # for any new Child SA; the receivability check applies once both are up.
    net.check_no_loss = lambda: None
    cross(net, now)
    del net.check_no_loss
    net.check_no_loss()
    return net, left, right


def assert_one_pair(net, left, right):
    (sa_left,), (sa_right,) = left.sas.values(), right.sas.values()
    assert (sa_left.spi_i, sa_left.spi_r) == (sa_right.spi_i, sa_right.spi_r)
    assert sa_left.state == sa_right.state == ESTABLISHED
    (child_left,), (child_right,) = sa_left.children, sa_right.children
    assert (child_left.spi_in, child_left.spi_out) == (child_right.spi_out, child_right.spi_in)
    # the dataplane models: exactly the surviving pair, sending on it
    assert set(net.tables[LEFT].inbound) == {child_left.spi_in}
    assert set(net.tables[RIGHT].inbound) == {child_right.spi_in}
    assert net.tables[LEFT].outbound == {"net": child_left.spi_out}
    assert net.tables[RIGHT].outbound == {"net": child_right.spi_out}
    return sa_left


@pytest.mark.parametrize("seed", range(8))
def test_simultaneous_initiation_keeps_one_ike_sa_and_one_child_pair(seed):
    net, left, right = both_initiate(seed)
    assert len(left.sas) == len(right.sas) == 2  # both IKE SAs came up ...
    assert len(net.of(LEFT, IkeSaUp)) == len(net.of(RIGHT, IkeSaUp)) == 2
    duplicates = sorted(left.sas.values(), key=lambda sa: min(sa.nonce_i, sa.nonce_r))
    redundant_spis = (duplicates[0].spi_i, duplicates[0].spi_r)
    run_timers(net, RETIRE_DRAIN)  # ... and the redundant one goes at once, without a grace time
    kept = assert_one_pair(net, left, right)
    assert (kept.spi_i, kept.spi_r) != redundant_spis  # the lowest nonce lost
    deleted = [e.counters.get("duplicate_ike_sas_deleted", 0) for e in (left, right)]
    assert sorted(deleted) == [0, 1]
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)
    # one DELETE for the IKE SA, sent by the end that initiated the redundant one
    deletes = [
        d
        for d in net.wire
        if decode_message(d.data).header.exchange == ExchangeType.INFORMATIONAL
        and not decode_message(d.data).header.response
    ]
    assert len(deletes) == 1


def test_simultaneous_initiation_both_outcomes_are_covered():
    winners = set()
    for seed in range(8):
        _net, left, _right = both_initiate(seed)
        duplicates = sorted(left.sas.values(), key=lambda sa: min(sa.nonce_i, sa.nonce_r))
        winners.add(duplicates[1].initiator)  # did left initiate the IKE SA that stays?
    assert winners == {True, False}


class PassivePeer(Engine):
    """A peer that never resolves duplicate IKE SAs itself (strongSwan 5.9 with unique = no)."""

    def _note_duplicate(self, sa, now):
        return None


def late_duplicate(seed, passive_right=False):
    """Left's IKE SA is up before right's IKE_SA_INIT arrives (its first one was lost, say)."""
    net, left, right = pair(seed=seed)
    if passive_right:
        passive = PassivePeer(
            right.policies, random_bytes=right.random_bytes, key_exchange_factory=right.new_ke
        )
        net.engines[RIGHT] = right = passive
    left.initiate("s2s", None, now=0.0)
    net.run(now=0.0)
    right.initiate_sa(right.policies["s2s"], right.policies["s2s"].children["net"], now=0.5)
    net.run(now=0.5)
    assert len(left.sas) == len(right.sas) == 2
    return net, left, right


@pytest.mark.parametrize("seed", range(6))
def test_a_late_duplicate_is_resolved_after_the_grace_time(seed):
    net, left, right = late_duplicate(seed)
    redundant = min(left.sas.values(), key=lambda sa: min(sa.nonce_i, sa.nonce_r))
    run_timers(net, 0.5 + DUPLICATE_GRACE - 0.01, start=0.5)
    assert len(left.sas) == 2  # a peer that reauthenticates gets time to delete the old IKE SA itself
    run_timers(net, 0.5 + DUPLICATE_GRACE + RETIRE_DRAIN + 0.01, start=0.5)
    kept = assert_one_pair(net, left, right)
    assert kept is not redundant


@pytest.mark.parametrize("seed", range(6))
def test_a_peer_that_keeps_duplicates_still_ends_with_one(seed):
    net, left, right = late_duplicate(seed, passive_right=True)
    run_timers(net, 0.5 + 2 * DUPLICATE_GRACE + RETIRE_DRAIN + 0.01, start=0.5)
    assert_one_pair(net, left, right)


# --- reauthentication (§2.8.3) -------------------------------------------------------------------------


def with_second_child(net):
    for engine, local, remote in (
        (net.engines[LEFT], "10.1.5.0/24", "10.2.5.0/24"),
        (net.engines[RIGHT], "10.2.5.0/24", "10.1.5.0/24"),
    ):
        engine.policies["s2s"].children["voice"] = ChildPolicy(
            "voice",
            [TrafficSelector.from_network(local)],
            [TrafficSelector.from_network(remote)],
            parse_proposals("aes128gcm16", ProtocolId.ESP),
        )


@pytest.mark.parametrize("who", [LEFT, RIGHT])
def test_reauthentication_is_make_before_break(who):
    net, left, right = pair()
    with_second_child(net)
    left.initiate("s2s", "net", now=0.0)
    net.run()
    left.initiate("s2s", "voice", now=1.0)
    net.run(now=1.0)
    old_left, old_right = only_sa(left), only_sa(right)
    engine = net.engines[who]
    assert engine.reauthenticate("s2s", now=10.0) == 1
    run_timers(net, 11.0, start=10.0)
    new_left, new_right = only_sa(left), only_sa(right)
    assert new_left is not old_left and new_right is not old_right
    assert (new_left.spi_i, new_left.spi_r) == (new_right.spi_i, new_right.spi_r)
    assert new_left.initiator == (who == LEFT)
    assert sorted(c.name for c in new_left.children) == ["net", "voice"]
    for ip, engine_ in ((LEFT, left), (RIGHT, right)):
        assert set(net.tables[ip].inbound) == {c.spi_in for c in only_sa(engine_).children}
        assert net.tables[ip].outbound == {c.name: c.spi_out for c in only_sa(engine_).children}
        assert not net.of(ip, Failure)
        assert [e.reason for e in net.of(ip, IkeSaDown)] in (
            ["reauthenticated as %s" % new_left.key],
            ["deleted by peer"],
        )
    # a full IKE_SA_INIT + IKE_AUTH, the second child with CREATE_CHILD_SA, then one DELETE of the old
    exchanges = [decode_message(d.data).header.exchange for d in net.wire if d.remote[0] != who]
    assert exchanges[-4:] == [
        ExchangeType.IKE_SA_INIT,
        ExchangeType.IKE_AUTH,
        ExchangeType.CREATE_CHILD_SA,
        ExchangeType.INFORMATIONAL,
    ]
    assert engine.counters["reauthentications"] == 1


def test_the_old_ike_sa_is_deleted_a_moment_after_its_traffic_moved():
    """The peer closes both directions of the old Child SAs when our DELETE arrives (§1.4.1), and may
    process it before ESP we sent on them just earlier (reordered on the way, or in the peer's queues):
    the DELETE goes RETIRE_DRAIN seconds after the outbound traffic moved to the new Child SAs."""
    net, left, right = established()
    old = only_sa(left)
    left.reauthenticate("s2s", now=10.0)

    def deletes():
        return [
            d
            for d in net.wire
            if d.local[0] == LEFT
            and decode_message(d.data).header.exchange == ExchangeType.INFORMATIONAL
            and not decode_message(d.data).header.response
        ]

    run_timers(net, 10.0 + RETIRE_DRAIN - 0.01, start=10.0)
    (new,) = [sa for sa in left.sas.values() if sa is not old]
    (child,) = new.children
    assert net.tables[LEFT].outbound == {"net": child.spi_out}  # sending on the new Child SA already
    assert old.state == ESTABLISHED and not deletes()
    run_timers(net, 10.0 + RETIRE_DRAIN + 0.01, start=10.0 + RETIRE_DRAIN - 0.01)
    assert len(deletes()) == 1
    assert only_sa(left) is new
    assert_one_pair(net, left, right)


def test_reauthentication_keeps_the_negotiated_selectors():
    net, left, right = pair()
    right.policies["s2s"].children["net"].local_ts = [TrafficSelector.from_network("10.2.0.0/16")]
    left.policies["s2s"].children["net"].remote_ts = [TrafficSelector.from_network("10.2.0.0/16")]
    right.policies["s2s"].children["net"].remote_ts = [TrafficSelector.from_network("10.1.0.0/25")]
    left.initiate("s2s", None, now=0.0)
    net.run()
    (before,) = children(left)
    assert [str(ts) for ts in before.local_ts] != [
        str(ts) for ts in left.policies["s2s"].children["net"].local_ts
    ]
    left.reauthenticate("s2s", now=5.0)
    run_timers(net, 6.0, start=5.0)
    (after,) = children(left)
    assert after.spi_in != before.spi_in
    assert after.local_ts == before.local_ts and after.remote_ts == before.remote_ts


def test_reauth_time_with_child_and_ike_rekeys_for_a_while():
    net, left, right = established()
    for engine in (left, right):
        engine.policies["s2s"].children["net"].rekey_time = 7.0
        engine.policies["s2s"].rekey_time = 13.0
        engine.policies["s2s"].reauth_time = 20.0
        for sa in engine.sas.values():
            lifetimes.schedule_ike(engine, sa, 0.0)
            lifetimes.schedule_reauth(engine, sa, 0.0)
            for child in sa.children:
                lifetimes.schedule_child(engine, child, 0.0)
    run_timers(net, 120.0)
    assert len(left.sas) == len(right.sas) == 1
    assert len(children(left)) == len(children(right)) == 1
    reauths = left.counters.get("reauthentications", 0) + right.counters.get("reauthentications", 0)
    assert reauths >= 5
    assert left.counters.get("ike_rekeys", 0) >= 1
    assert not net.of(LEFT, Failure) and not net.of(RIGHT, Failure)


def test_both_ends_reauthenticating_at_once_end_with_one_ike_sa():
    net, left, right = established()
    left.reauthenticate("s2s", now=10.0)
    right.reauthenticate("s2s", now=10.0)
    cross(net, 10.0)
    run_timers(net, 10.0 + 3 * DUPLICATE_GRACE, start=10.0)
    assert_one_pair(net, left, right)


def test_the_peer_reauthenticating_an_sa_we_initiated_is_not_a_duplicate():
    net, left, right = established()  # left initiated
    right.reauthenticate("s2s", now=10.0)
    run_timers(net, 10.0 + 3 * DUPLICATE_GRACE, start=10.0)
    assert_one_pair(net, left, right)
    # the pair looked like duplicates to left for a moment, but right deleted the old IKE SA itself
    assert (
        "duplicate_ike_sas_deleted" not in left.counters and "duplicate_ike_sas_deleted" not in right.counters
    )
    left_requests = [d for d in net.wire if d.local[0] == LEFT and not decode_message(d.data).header.response]
    assert not left_requests[2:]  # IKE_SA_INIT and IKE_AUTH of the first IKE SA only


def test_a_failed_reauthentication_keeps_the_old_ike_sa_and_tries_again():
    net, left, right = established()
    left.policies["s2s"].dpd_action = "restart"
    old = only_sa(left)
    net.drop = lambda datagram: decode_message(datagram.data).header.exchange == ExchangeType.IKE_SA_INIT
    left.reauthenticate("s2s", now=10.0)
    now = run_timers(net, 100.0, start=10.0)
    assert list(left.sas.values()) == [old] and old.state == ESTABLISHED
    failed_at = 10.0 + sum(2.0 * 1.8**n for n in range(6))  # retransmissions (§2.1), then give up
    assert old.reauth_at == pytest.approx(failed_at + REAUTH_RETRY)
    assert any("IKE_SA_INIT" in f.what for f in net.of(LEFT, Failure))
    net.drop = None
    run_timers(net, old.reauth_at + 1.0, start=now)
    new = only_sa(left)
    assert new is not old and len(new.children) == 1
    assert_one_pair(net, left, right)


def test_an_ike_rekey_keeps_the_reauthentication_time():
    net, left, _right = established()
    left.policies["s2s"].reauth_time = 100.0
    lifetimes.schedule_reauth(left, only_sa(left), 0.0)
    due = only_sa(left).reauth_at
    left.rekey_ike("s2s", now=10.0)
    net.run(now=10.0)
    assert only_sa(left).reauth_at == due


def test_child_sa_outbound_events_name_the_twin():
    """The twin of a reauthentication is announced by inbound SPI, as for a rekey."""
    net, left, _right = established()
    left.reauthenticate("s2s", now=5.0)
    run_timers(net, 6.0, start=5.0)
    (child,) = children(left)
    moved = net.of(LEFT, ChildSaOutbound)
    assert moved and moved[-1].spi_in == child.spi_in
    ups = [e for e in net.of(LEFT, ChildSaUp) if e.spi_in == child.spi_in]
    assert ups[0].rekey_of is not None and ups[0].outbound is False
