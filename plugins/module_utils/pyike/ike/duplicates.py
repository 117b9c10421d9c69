"""Two IKE SAs of one connection with one peer at the same time. A mixin of the Engine.

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

from ..ids import ExchangeType, ProtocolId
from ..wire.notify import DeletePayload
from .events import ChildSaOutbound, ChildSaUp
from .sa import DELETING, ESTABLISHED, INSTALLED, REKEYED, REKEYING, ChildSa, IkeSa

log = logging.getLogger("pyike.ike")

DUPLICATE_GRACE = 3.0  # seconds; the responder of the redundant IKE SA waits twice as long
# Seconds between moving the outbound traffic off an IKE SA's Child SAs and sending its DELETE: ESP sent
# just before must not be overtaken by the DELETE (reordering in the network and in the peer's queues).
RETIRE_DRAIN = 1.0


class DuplicatesMixin:
    # --- twins -------------------------------------------------------------------------------
    def _parallel_sas(self, sa: IkeSa) -> Iterator[IkeSa]:
        """Other live IKE SAs of the same connection with the same peer."""
        for other in self.sas.values():
            if (
                other is not sa
                and other.state in (ESTABLISHED, DELETING)
                and other.policy.name == sa.policy.name
                and other.remote[0] == sa.remote[0]
                and other.peer_id == sa.peer_id
            ):
                yield other

    def _twins(self, sa: IkeSa, child: ChildSa) -> Iterator[Tuple[IkeSa, ChildSa]]:
        for other in self._parallel_sas(sa):
            for twin in other.children:
                if (
                    twin.name == child.name
                    and list(twin.local_ts) == list(child.local_ts)
                    and list(twin.remote_ts) == list(child.remote_ts)
                ):
                    yield other, twin

    def _has_twin(self, sa: IkeSa, child: ChildSa) -> bool:
        return any(True for _pair in self._twins(sa, child))

    def _group(self, sa: IkeSa, child: ChildSa) -> List[ChildSa]:
        """Every SA pair that shares `child`'s dataplane child: its rekey predecessors and successors in
        its IKE SA, and its twins in parallel IKE SAs."""
        members = [c for c in sa.children if c.name == child.name]
        members += [twin for _other, twin in self._twins(sa, child)]
        return members

    def _make_active(self, sa: IkeSa, child: ChildSa, announce: bool = True) -> None:
        """`child` carries the outbound traffic of its group from now on (one SA pair at a time)."""
        for member in self._group(sa, child):
            member.outbound_active = member is child
        child.outbound_active = True
        if announce:
            self.events.append(ChildSaOutbound(sa.policy.name, child.name, child.spi_in))

    def _link_twin(self, sa: IkeSa, child: ChildSa, event: ChildSaUp) -> None:
        """A new Child SA: join its twin's dataplane child, and wait to send until the twin goes."""
        if event.rekey_of is not None:  # a rekey within this IKE SA
            if event.outbound:
                self._make_active(sa, child, announce=False)
            return
        twins = [twin for _other, twin in self._twins(sa, child) if twin.state != REKEYED]
        if not twins:
            return
        active = [twin for twin in twins if twin.outbound_active]
        event.rekey_of = (active or twins)[0].spi_in
        if active:
            event.outbound = child.outbound_active = False
        else:
            self._make_active(sa, child, announce=False)
        log.info(
            "%s: CHILD_SA %s %08x_i has a twin %08x_i in a parallel IKE SA; it sends %s",
            sa.key,
            child.name,
            child.spi_in,
            event.rekey_of,
            "once that one goes" if active else "now",
        )

    def _hand_over_outbound(self, sa: IkeSa, child: ChildSa) -> None:
        """`child` (or its IKE SA) is going: a twin on an established IKE SA, not one that is going itself,
        takes its outbound traffic."""
        if not child.outbound_active:
            return
        for other, twin in self._twins(sa, child):
            if (
                other.state == ESTABLISHED
                and other.retiring is None
                and twin.state in (INSTALLED, REKEYING)
                and not twin.delete_sent
            ):
                self._make_active(other, twin)
                return

    # --- deleting one of two parallel IKE SAs -----------------------------------------------
    def _retire_ike_sa(self, sa: IkeSa, now: float, reason: str) -> None:
        """Delete an IKE SA whose Child SAs have twins elsewhere: outbound traffic moves to the twins now,
        the DELETE follows RETIRE_DRAIN seconds later, its inbound SAs stay until the peer answers it
        (§1.4.1)."""
        if sa.state != ESTABLISHED or sa.retiring is not None:
            return
        for child in list(sa.children):
            self._hand_over_outbound(sa, child)
            child.rekey_at = None
        sa.rekey_at = sa.reauth_at = sa.duplicate_at = None
        sa.retiring = (now + RETIRE_DRAIN, reason)
        log.info(
            "%s: traffic moved to the twins; deleting the IKE SA in %.1fs: %s", sa.key, RETIRE_DRAIN, reason
        )

    def _delete_retired(self, sa: IkeSa, now: float) -> None:
        _at, reason = sa.retiring
        sa.retiring = None
        self._deleting(sa, now)
        log.info("%s: deleting the IKE SA: %s", sa.key, reason)
        self._request(
            sa,
            ExchangeType.INFORMATIONAL,
            [DeletePayload(ProtocolId.IKE, [])],
            lambda message, inner, at: self._drop_sa(sa, reason, quiet=True),
            now,
        )

    # --- duplicates ----------------------------------------------------------------------------
    def _duplicates_of(self, sa: IkeSa) -> List[IkeSa]:
        if sa.state != ESTABLISHED or sa.retiring is not None:
            return []
        out = []
        for other in self._parallel_sas(sa):
            if other.state != ESTABLISHED or other.retiring is not None or other.initiator == sa.initiator:
                continue
            if (sa.reauth is not None and sa.reauth.old is other) or (
                other.reauth is not None and other.reauth.old is sa
            ):
                continue
            out.append(other)
        return out

    @staticmethod
    def _redundant(one: IkeSa, two: IkeSa) -> IkeSa:
        """Of two duplicates, the one holding the lowest of the four nonces (cf. §2.8.1)."""
        return one if min(one.nonce_i, one.nonce_r) < min(two.nonce_i, two.nonce_r) else two

    def _note_duplicate(self, sa: IkeSa, now: float) -> None:
        """Hook when `sa` is established: is it, or an older IKE SA, now redundant?"""
        for other in self._duplicates_of(sa):
            redundant = self._redundant(sa, other)
            kept = other if redundant is sa else sa
            overlapped = sa.created_at <= other.established_at and other.created_at <= sa.established_at
            if redundant.initiator:
                at = now if overlapped else now + DUPLICATE_GRACE
            else:
                at = now + 2 * DUPLICATE_GRACE
            if redundant.duplicate_at is None or at < redundant.duplicate_at:
                redundant.duplicate_at = at
            log.info(
                "%s and %s: duplicate IKE SAs of %s (both ends initiated?); %s holds the lowest nonce",
                redundant.key,
                kept.key,
                sa.policy.name,
                redundant.key,
            )

    def _duplicate_deadlines(self, sa: IkeSa) -> List[float]:
        deadlines = [sa.duplicate_at] if sa.duplicate_at is not None else []
        if sa.retiring is not None:
            deadlines.append(sa.retiring[0])
        return deadlines

    def _duplicate_timers(self, sa: IkeSa, now: float) -> None:
        if sa.retiring is not None and now >= sa.retiring[0] and sa.state == ESTABLISHED:
            self._delete_retired(sa, now)
        if sa.duplicate_at is None or now < sa.duplicate_at:
            return
        sa.duplicate_at = None
        kept = [other for other in self._duplicates_of(sa) if self._redundant(sa, other) is sa]
        if kept:  # else the peer deleted one of them meanwhile
            self._count("duplicate_ike_sas_deleted")
            self._retire_ike_sa(sa, now, "duplicate of %s" % kept[0].key)
