"""INITIAL_CONTACT (RFC 7296 §2.4): a peer that restarted gets its tunnel back at once, because the
responder forgets the IKE SAs the peer lost instead of keeping them until DPD gives up."""

from __future__ import annotations

import random

from ike_harness import LEFT, RIGHT, SaTable, _engine, pair
from pyike.ike.events import ChildSaDown, ChildSaUp, IkeSaDown

RESTART = 100.0


def _established():
    net, left, right = pair()
    left.initiate("s2s", None, now=0.0)
    net.run(now=0.0)
    (old,) = right.sas.values()
    return net, left, right, old


def _restart_left(net, left):
    """The left daemon starts over: same configuration, no state, fresh randomness."""
    fresh = _engine(left.policies["s2s"], random.Random(7))
    net.engines[LEFT] = fresh
    net.tables[LEFT] = SaTable()  # its dataplane started empty too
    return fresh


def test_a_restarted_initiator_replaces_its_lost_ike_sa_at_once(caplog):
    net, left, right, old = _established()
    (old_child,) = old.children
    fresh = _restart_left(net, left)
    caplog.set_level("INFO", logger="pyike.ike")
    fresh.initiate("s2s", None, now=RESTART)
    net.run(now=RESTART)
    (new,) = right.sas.values()
    assert new is not old and new.up
    down = [e for e in net.of(RIGHT, IkeSaDown) if e.ike_sa == old.key]
    assert len(down) == 1 and "INITIAL_CONTACT" in down[0].reason
    assert [e.spi_in for e in net.of(RIGHT, ChildSaDown)] == [old_child.spi_in]
    (new_child,) = new.children
    assert net.tables[RIGHT].inbound == {new_child.spi_in: ("net", new_child.spi_out)}
    assert net.tables[RIGHT].outbound == {"net": new_child.spi_out}
    assert "INITIAL_CONTACT from %s" % LEFT in caplog.text


def test_the_stale_ike_sa_is_forgotten_without_a_delete_the_peer_cannot_read():
    net, left, right, old = _established()
    fresh = _restart_left(net, left)
    sent_before = len(net.wire)
    fresh.initiate("s2s", None, now=RESTART)
    net.run(now=RESTART)
    from_right = [d for d in net.wire[sent_before:] if d.local[0] == RIGHT]
    assert len(from_right) == 2  # the IKE_SA_INIT and IKE_AUTH responses, no INFORMATIONAL
    assert old.key not in {sa.key for sa in right.sas.values()}


def test_no_initial_contact_while_another_ike_sa_of_the_connection_lives():
    """A reauthentication (§2.8.3) makes a second IKE SA on purpose: the peer must keep the first one
    until its DELETE, so the new IKE_AUTH carries no INITIAL_CONTACT."""
    net, left, right, old = _established()
    assert left.reauthenticate("s2s", now=50.0) == 1
    net.run(now=50.0)
    assert not net.of(RIGHT, IkeSaDown)
    assert old.key in {sa.key for sa in right.sas.values()} and len(right.sas) == 2
    assert len(net.of(LEFT, ChildSaUp)) == 2


def test_an_ike_sa_the_peer_spoke_on_since_is_kept():
    """Both ends initiate at once: the peer's own IKE SA answered us after our new one began, so it is
    alive over there; duplicates.py, not INITIAL_CONTACT, settles which one stays."""
    net, left, right = pair()
    left.initiate("s2s", None, now=0.0)
    right.initiate("s2s", None, now=0.0)
    net.run(now=0.0)
    for ip in (LEFT, RIGHT):
        assert not any("INITIAL_CONTACT" in e.reason for e in net.of(ip, IkeSaDown))
    assert len(left.sas) == len(right.sas) >= 1
