"""Two IKE SAs of one connection with one peer at the same time: twins, duplicates, and retiring one.

That happens briefly during a reauthentication (RFC 7296 §2.8.3: the new IKE SA is built before the old
one is deleted) and when both ends initiate the same connection at once (simultaneous initiation), which
RFC 7296 leaves to implementations.

Twins. A Child SA negotiated on one IKE SA whose name and traffic selectors equal those of a Child SA
on a parallel IKE SA of the same connection and peer is its twin: the runtime installs it as another
SA pair of the same dataplane child (`ChildSaUp.rekey_of` names the twin), inbound at once, outbound
later (`outbound` false), exactly as a make-before-break rekey does. Outbound traffic moves to the twin
(`ChildSaOutbound`) when the IKE SA of the Child SA that carries it goes: RETIRE_DRAIN seconds before we
send our DELETE, or when the peer's DELETE arrives. The peer can receive on the twin by then, since a
Child SA is installed on both ends before either deletes the IKE SA it replaces. The pause before our
DELETE lets the ESP we sent on the old Child SAs reach the peer before the DELETE does: the peer closes
both directions of each Child SA when it processes the DELETE (§1.4.1), and ESP and IKE can be reordered
on the way or inside the peer (strongSwan's libipsec decrypts in another thread than the one handling
IKE, and strongSwan removes a reauthenticated IKE SA's Child SAs at once). The inbound SAs of the IKE SA
we delete stay until the DELETE is answered (§1.4.1), and the runtime keeps them a moment longer. No
packet is lost.

Duplicates. Two ESTABLISHED IKE SAs of the same connection and peer, one initiated by each end, are
duplicates, unless one is our reauthentication of the other. Both ends keep the one and delete the
other by the same rule, in the spirit of the rekey collisions of §2.8.1/§2.8.2: the IKE SA that holds
the lowest of the four nonces (Ni and Nr of each) is redundant. Both ends know all four nonces, so they
agree without a message. The end that initiated the redundant IKE SA deletes it (its Child SAs with it);
immediately if the two negotiations overlapped (neither was established when the other began: a true
simultaneous initiation), else after DUPLICATE_GRACE seconds, which leaves a peer that reauthenticates
the time to delete the old IKE SA itself. Its responder deletes it after twice that time if it is still
there, for peers that do not resolve duplicates (strongSwan 5.9 keeps both with `unique = no`). Should
both ends delete it at once, the crossing DELETEs are answered as usual and one IKE SA remains.
"""

from __future__ import annotations

import logging
from typing import Iterator, List, Tuple

from .events import ChildSaOutbound, ChildSaUp
from .sa import DELETING, ESTABLISHED, INSTALLED, REKEYING, ChildSa, IkeSa
from .tasks.ike_delete import delete_ike_sa

log = logging.getLogger("pyike.ike")

DUPLICATE_GRACE = 3.0  # seconds; the responder of the redundant IKE SA waits twice as long
# Seconds between moving the outbound traffic off an IKE SA's Child SAs and sending its DELETE: ESP sent
# just before must not be overtaken by the DELETE (reordering in the network and in the peer's queues).
RETIRE_DRAIN = 1.0


# --- twins ---------------------------------------------------------------------------------------------
def parallel_sas(engine, sa: IkeSa) -> Iterator[IkeSa]:
    """Other live IKE SAs of the same connection with the same peer."""
    for other in engine.sas.values():
        if (
            other is not sa
            and other.state in (ESTABLISHED, DELETING)
            and other.policy.name == sa.policy.name
            and other.remote[0] == sa.remote[0]
            and other.peer_id == sa.peer_id
        ):
            yield other


def twins(engine, sa: IkeSa, child: ChildSa) -> Iterator[Tuple[IkeSa, ChildSa]]:
    for other in parallel_sas(engine, sa):
        for twin in other.children:
            if (
                twin.name == child.name
                and list(twin.local_ts) == list(child.local_ts)
                and list(twin.remote_ts) == list(child.remote_ts)
            ):
                yield other, twin


def has_twin(engine, sa: IkeSa, child: ChildSa) -> bool:
    return any(True for _pair in twins(engine, sa, child))


def make_active(engine, sa: IkeSa, child: ChildSa, announce: bool = True) -> None:
    """`child` carries the outbound traffic of its dataplane child from now on (one SA pair at a time):
    its rekey predecessors and successors in its IKE SA and its twins in parallel ones stop."""
    members = [c for c in sa.children if c.name == child.name]
    members += [twin for _other, twin in twins(engine, sa, child)]
    for member in members:
        member.outbound_active = member is child
    child.outbound_active = True
    if announce:
        engine.emit(ChildSaOutbound(sa.policy.name, child.name, child.spi_in))


def link_twin(engine, sa: IkeSa, child: ChildSa, event: ChildSaUp) -> None:
    """A new Child SA: join its twin's dataplane child, and wait to send until the twin goes."""
    if event.rekey_of is not None:  # a rekey within this IKE SA
        if event.outbound:
            make_active(engine, sa, child, announce=False)
        return
    found = [twin for _other, twin in twins(engine, sa, child) if not twin.going]
    if not found:
        return
    active = [twin for twin in found if twin.outbound_active]
    event.rekey_of = (active or found)[0].spi_in
    if active:
        event.outbound = child.outbound_active = False
    else:
        make_active(engine, sa, child, announce=False)
    log.info(
        "%s: CHILD_SA %s %08x_i has a twin %08x_i in a parallel IKE SA; it sends %s",
        sa.key,
        child.name,
        child.spi_in,
        event.rekey_of,
        "once that one goes" if active else "now",
    )


def hand_over_outbound(engine, sa: IkeSa, child: ChildSa) -> None:
    """`child` (or its IKE SA) is going: a twin on an established IKE SA, not one that is going itself,
    takes its outbound traffic."""
    if not child.outbound_active:
        return
    for other, twin in twins(engine, sa, child):
        if (
            other.state == ESTABLISHED
            and other.retiring is None
            and twin.state in (INSTALLED, REKEYING)
            and not twin.delete_sent
        ):
            make_active(engine, other, twin)
            return


# --- retiring one of two parallel IKE SAs ----------------------------------------------------------------
def retire(engine, sa: IkeSa, now: float, reason: str) -> None:
    """Delete an IKE SA whose Child SAs have twins elsewhere: outbound traffic moves to the twins now,
    the DELETE follows RETIRE_DRAIN seconds later, its inbound SAs stay until the peer answers it
    (§1.4.1)."""
    if sa.state != ESTABLISHED or sa.retiring is not None:
        return
    for child in list(sa.children):
        hand_over_outbound(engine, sa, child)
        child.rekey_at = None
    sa.rekey_at = sa.reauth_at = sa.duplicate_at = None
    sa.retiring = (now + RETIRE_DRAIN, reason)
    log.info("%s: traffic moved to the twins; deleting the IKE SA in %.1fs: %s", sa.key, RETIRE_DRAIN, reason)


# --- duplicates ----------------------------------------------------------------------------------------
def duplicates_of(engine, sa: IkeSa) -> List[IkeSa]:
    if sa.state != ESTABLISHED or sa.retiring is not None:
        return []
    out = []
    for other in parallel_sas(engine, sa):
        if other.state != ESTABLISHED or other.retiring is not None or other.initiator == sa.initiator:
            continue
        if sa.reauth_of is other or other.reauth_of is sa:
            continue
        out.append(other)
    return out


def redundant(one: IkeSa, two: IkeSa) -> IkeSa:
    """Of two duplicates, the one holding the lowest of the four nonces (cf. §2.8.1)."""
    return one if min(one.nonce_i, one.nonce_r) < min(two.nonce_i, two.nonce_r) else two


def note_duplicate(engine, sa: IkeSa, now: float) -> None:
    """Hook when `sa` is established: is it, or an older IKE SA, now redundant?"""
    for other in duplicates_of(engine, sa):
        loser = redundant(sa, other)
        kept = other if loser is sa else sa
        overlapped = sa.created_at <= other.established_at and other.created_at <= sa.established_at
        if loser.initiator:
            at = now if overlapped else now + DUPLICATE_GRACE
        else:
            at = now + 2 * DUPLICATE_GRACE
        if loser.duplicate_at is None or at < loser.duplicate_at:
            loser.duplicate_at = at
        log.info(
            "%s and %s: duplicate IKE SAs of %s (both ends initiated?); %s holds the lowest nonce",
            loser.key,
            kept.key,
            sa.policy.name,
            loser.key,
        )


def deadlines(sa: IkeSa) -> List[float]:
    out = [sa.duplicate_at] if sa.duplicate_at is not None else []
    if sa.retiring is not None:
        out.append(sa.retiring[0])
    return out


def run_timers(engine, sa: IkeSa, now: float) -> None:
    if sa.retiring is not None and now >= sa.retiring[0] and sa.state == ESTABLISHED:
        reason = sa.retiring[1]
        sa.retiring = None
        log.info("%s: deleting the IKE SA: %s", sa.key, reason)
        delete_ike_sa(engine, sa, reason, now)
    if sa.duplicate_at is None or now < sa.duplicate_at:
        return
    sa.duplicate_at = None
    kept = [other for other in duplicates_of(engine, sa) if redundant(sa, other) is sa]
    if kept:  # else the peer deleted one of them meanwhile
        engine.count("duplicate_ike_sas_deleted")
        retire(engine, sa, now, "duplicate of %s" % kept[0].key)
