"""The timers of an established IKE SA, and what starts when they are due: Child SA rekeys and deletes
(RFC 7296 §2.8, §1.4.1), an IKE SA rekey (§2.18), reauthentication (§2.8.3), dead peer detection (§1.4,
§2.4) and volume limits reported by the runtime (RFC 4301 §4.4.2.1). lifetimes.py says when; this module
starts the tasks (restarts.py: what the engine initiates again by itself)."""

from __future__ import annotations

import logging

from . import lifetimes
from .sa import ESTABLISHED, INSTALLED, REKEYED, REKEYING, ChildSa, IkeSa
from .tasks.child_delete import ChildDelete, delete_child, remove_child
from .tasks.child_rekey import ChildRekey
from .tasks.dpd import Dpd
from .tasks.ike_reauth import start_reauth
from .tasks.ike_rekey import IkeRekey

log = logging.getLogger("pyike.ike")

HARD_LIMIT_GRACE = 2.0  # seconds a rekey in flight may take after the hard limit was reached


def run(engine, sa: IkeSa, now: float) -> None:
    """Start what is due on an established IKE SA: Child SA rekeys and deletes, reauthentication, an IKE
    SA rekey, DPD (the duplicates' and retiring timers are in duplicates.py)."""
    for child in list(sa.children):
        if child.expire_at is not None and now >= child.expire_at:
            if child.delete_sent:  # our DELETE was never answered: the SA goes all the same
                remove_child(engine, sa, child, "its DELETE was not answered in time")
            elif child.state == REKEYED:  # replaced, but the peer never deleted it (§2.8)
                sa.tasks.initiate(
                    ChildDelete(engine, sa, child, "the peer did not delete it after a rekey", now), now
                )
            else:
                delete_child(engine, sa, child, "hard lifetime expired", now)
        elif child.state == INSTALLED and child.rekey_at is not None and now >= child.rekey_at:
            child.rekey_at = None
            sa.tasks.initiate(ChildRekey(engine, sa, child), now)
    if sa.state != ESTABLISHED:
        return
    if sa.reauth_at is not None and now >= sa.reauth_at and sa.reauth_by is None:
        sa.reauth_at = None
        start_reauth(engine, sa, now)
    if sa.rekey_at is not None and now >= sa.rekey_at:
        if sa.reauth_by is not None:
            sa.rekey_at = (
                now + lifetimes.RETRY_DELAY
            )  # no IKE rekey while a reauthentication replaces this SA
        else:
            sa.rekey_at = None
            sa.tasks.initiate(IkeRekey(engine, sa), now)
    elif sa.policy.dpd_delay > 0 and sa.tasks.idle and now >= sa.last_received_at + sa.policy.dpd_delay:
        # §1.4/§2.4: an empty INFORMATIONAL request; retransmissions that go unanswered mean the peer is
        # dead (the manager's retransmission limit).
        engine.count("dpd_requests")
        sa.tasks.initiate(Dpd(engine, sa), now)


def volume_reached(engine, sa: IkeSa, child: ChildSa, hard: bool, now: float, what: str) -> bool:
    """An ESP SA of `child` crossed its soft (rekey) or hard (delete) `what` limit; returns whether a
    rekey or delete was started."""
    if hard:
        if child.going or sa.state != ESTABLISHED:
            return False  # already being replaced or deleted
        if child.state == REKEYING:
            # Our rekey is under way and replaces the SA within a round trip: give it that time (the time
            # hard lifetime then deletes the SA, should the rekey fail or hang).
            if child.expire_at is None or child.expire_at > now + HARD_LIMIT_GRACE:
                child.expire_at = now + HARD_LIMIT_GRACE
            return False
        engine.count("volume_expiries")
        log.info("%s: CHILD_SA %s %08x_i reached its hard %s limit", sa.key, child.name, child.spi_in, what)
        delete_child(engine, sa, child, "hard %s limit reached" % what, now)
        return True
    if child.state != INSTALLED or sa.state != ESTABLISHED or child.policy is None:
        return False  # a rekey is already running, or the SA is on its way out
    engine.count("volume_rekeys")
    log.info(
        "%s: CHILD_SA %s %08x_i reached its %s soft limit, rekeying", sa.key, child.name, child.spi_in, what
    )
    sa.tasks.initiate(ChildRekey(engine, sa, child), now)
    return True
