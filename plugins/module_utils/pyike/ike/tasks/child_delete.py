"""Deleting Child SAs (RFC 7296 §1.4.1, §3.11): INFORMATIONAL with D(ESP, SPIs), both roles.

Our DELETE names our inbound SPI; the Child SA goes when the answer arrives, or at its expiry should the
exchange wedge (lifetimes.py). The peer's DELETE names its inbound SPIs, our outbound ones: the answer
names the inbound SPIs of the same Child SAs, except for those whose DELETE of ours crossed it (§1.4.1:
those are answered without a Delete payload). A Child SA whose rekey replaced it hands its traffic to
its successor as it goes.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from ...ids import ExchangeType, ProtocolId
from ...wire.notify import DeletePayload
from ...wire.payload import Payload
from .. import duplicates, restarts
from ..events import ChildSaDown
from ..sa import CHILD_DELETING, ChildSa
from .base import DONE, Task


def remove_child(engine, sa, child: ChildSa, reason: str) -> None:
    """Forget one Child SA. ChildSaDown says whether others of the same dataplane child remain (its
    successor after a rekey, or a twin in a parallel IKE SA), so that only this SA's keys go."""
    duplicates.hand_over_outbound(engine, sa, child)  # a twin in a parallel IKE SA takes the traffic
    sa.children.remove(child)
    engine.child_owners.pop(child.spi_in, None)
    siblings = [c for c in sa.children if c.name == child.name]
    if siblings and not any(c.outbound_active for c in siblings):
        # a sibling that waited for this one to go (the other of two Child SAs both ends created at once)
        live = [c for c in siblings if not c.going]
        if live:
            duplicates.make_active(engine, sa, live[-1])
    replaced = any(other.name == child.name for other in sa.children) or duplicates.has_twin(
        engine, sa, child
    )
    engine.emit(ChildSaDown(sa.policy.name, child.name, child.spi_in, child.spi_out, reason, replaced))


def peer_deleted(engine, sa, payload: DeletePayload, now: float) -> List[bytes]:
    """The peer's D(ESP): remove the Child SAs it names; returns our SPIs for the answer (§1.4.1). A Child
    SA that no rekey replaced gets its close_action (restarts.py)."""
    ours = []
    by_spi_out = {child.spi_out: child for child in sa.children}  # one look-up per SPI
    for spi in payload.spis:
        child = by_spi_out.pop(struct.unpack("!I", spi)[0], None) if len(spi) == 4 else None
        if child is None:
            continue
        if not child.delete_sent:  # §1.4.1: crossing deletes are answered without a Delete
            ours.append(struct.pack("!I", child.spi_in))
        replacement = _replacement(sa, child)
        if replacement is not None and not replacement.outbound_active:
            duplicates.make_active(engine, sa, replacement)
        if replacement is None:
            restarts.peer_closed(engine, sa, child, now)
        remove_child(engine, sa, child, "rekeyed" if replacement is not None else "deleted by peer")
    return ours


def _replacement(sa, child: ChildSa) -> Optional[ChildSa]:
    """The Child SA that rekeyed `child` here: ours, or the peer's that won a collision (§2.8.1)."""
    spi = child.replaced_by
    if not spi:
        rekey = sa.tasks.active
        collision = getattr(rekey, "collision", None) if getattr(rekey, "old", None) is child else None
        spi = collision.new_spi_in if collision is not None else 0  # a collision not resolved yet
    return next((c for c in sa.children if c.spi_in == spi), None) if spi else None


class ChildDelete(Task):
    """Our DELETE of one Child SA (or, with only `spi_in`, of one the peer made that we never installed)."""

    exchange = ExchangeType.INFORMATIONAL
    adoptable = True

    def __init__(
        self, engine, sa, child: Optional[ChildSa], reason: str, now: float, spi_in: int = 0
    ) -> None:
        super().__init__(engine, sa)
        self.child, self.reason = child, reason
        self.spi_in = child.spi_in if child is not None else spi_in
        if child is not None:
            child.move_to(CHILD_DELETING)
            child.expire_at = now + engine.retransmit.span()  # goes then, answered or not
            child.rekey_at = None

    @property
    def what(self) -> str:
        return "INFORMATIONAL delete %s" % (
            self.child.name if self.child is not None else "%08x" % self.spi_in
        )

    def build_request(self, now: float) -> Optional[List[Payload]]:
        if self.child is not None and self.child not in self.sa.children:
            return None  # gone meanwhile (the peer deleted it too)
        return [DeletePayload(ProtocolId.ESP, [struct.pack("!I", self.spi_in)])]

    def process_response(self, payloads: List[Payload], now: float) -> str:
        if self.child is not None and self.child in self.sa.children:
            remove_child(self.engine, self.sa, self.child, self.reason)
        return DONE


def delete_child(engine, sa, child: ChildSa, reason: str, now: float) -> None:
    """Delete one of our Child SAs (its hard lifetime, a failed install, the operator)."""
    if child.delete_sent:
        return
    sa.tasks.initiate(ChildDelete(engine, sa, child, reason, now), now)
