"""Proposal negotiation (RFC 7296 §2.7, §3.3): what we offer, what a responder picks, what an initiator
accepts; one function per role for every SA payload the engine handles (IKE_SA_INIT, the Child SA in
IKE_AUTH, CREATE_CHILD_SA for a Child SA or an IKE SA rekey), and the key exchange checks that go with
it (§1.3, §1.3.1). ProposalSpec is crypto's model of a proposal; the SA payload is the wire's."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..crypto.errors import CryptoError
from ..crypto.proposals import ProposalSpec
from ..crypto.selection import SelectedProposal, accept_response, select_proposal, spec_from_selected
from ..ids import DhId, NotifyType, TransformType
from ..wire.key_exchange import KePayload
from ..wire.notify import NotifyPayload
from ..wire.sa import Proposal, SaPayload, Transform

KEY_EXCHANGE_TYPES = frozenset({TransformType.DH, *range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)})
ADDITIONAL_KE_TYPES = frozenset(range(TransformType.ADDKE1, TransformType.ADDKE7 + 1))

Offer = List[Tuple[int, ProposalSpec]]  # (proposal number, spec) as sent


# --- what we send ------------------------------------------------------------------------------


def to_wire(specs: Sequence[ProposalSpec], spi: bytes = b"") -> List[Proposal]:
    """Proposals numbered from 1, each with our SPI."""
    proposals = []
    for number, spec in enumerate(specs, start=1):
        transforms = [
            Transform.make(ttype, transform_id, key_length)
            for ttype, entries in spec.items()
            for transform_id, key_length in entries
        ]
        proposals.append(Proposal(number, spec.protocol, transforms, spi))
    return proposals


def offer(specs: Sequence[ProposalSpec], spi: bytes = b"") -> Tuple[SaPayload, Offer]:
    """The SA payload of a request, and the offer to check the answer against."""
    return SaPayload(to_wire(specs, spi)), list(enumerate(specs, start=1))


def without(specs: Sequence[ProposalSpec], types: frozenset) -> List[ProposalSpec]:
    """The proposals without transforms of `types`, duplicates dropped: KEY_EXCHANGE_TYPES for the
    Child SA of IKE_AUTH, whose keys come from SK_d alone (§1.2, §2.17); ADDITIONAL_KE_TYPES where no
    IKE_INTERMEDIATE or IKE_FOLLOWUP_KE exchange can carry RFC 9370 key exchanges."""
    out = []
    for spec in specs:
        candidate = ProposalSpec(
            spec.protocol, {ttype: list(entries) for ttype, entries in spec.items() if ttype not in types}
        )
        if candidate not in out:
            out.append(candidate)
    return out


def has_additional_kes(specs: Sequence[ProposalSpec]) -> bool:
    return any(ttype in ADDITIONAL_KE_TYPES for spec in specs for ttype, _entries in spec.items())


def first_group(specs: Sequence[ProposalSpec]) -> Optional[int]:
    """The key exchange method of our first proposal that has one (None: no PFS in these proposals)."""
    for spec in specs:
        for group, _length in spec.get(TransformType.DH):
            if group:
                return group
    return None


def offers_group(specs: Sequence[ProposalSpec], group: Optional[int]) -> bool:
    return group is not None and any(
        group == offered for spec in specs for offered, _length in spec.get(TransformType.DH)
    )


def prefer_group(specs: Sequence[ProposalSpec], group: int) -> List[ProposalSpec]:
    """The proposals with those offering `group` first (after INVALID_KE_PAYLOAD, §1.3.1)."""
    return sorted(specs, key=lambda spec: 0 if (group, None) in spec.get(TransformType.DH) else 1)


# --- the responder ---------------------------------------------------------------------------------


@dataclass
class Choice:
    """The responder's pick: the proposal and the peer's SPI in it."""

    selected: SelectedProposal
    peer_spi: bytes

    def reply(self, spi: bytes = b"") -> SaPayload:
        """The SA payload of the answer: the chosen transforms under the peer's proposal number."""
        (proposal,) = to_wire([spec_from_selected(self.selected)], spi)
        proposal.number = self.selected.number
        return SaPayload([proposal])


def select(
    sa_payload: SaPayload, ours: Sequence[ProposalSpec], protocol: int, spi_size: int
) -> Optional[Choice]:
    """The first of our proposals that one of the peer's accepts (§2.7); None: NO_PROPOSAL_CHOSEN.
    CryptoError when the peer's chosen proposal carries an SPI of the wrong size."""
    selected = select_proposal(from_wire(sa_payload.proposals), ours, protocol)
    if selected is None:
        return None
    peer = next(p for p in sa_payload.proposals if p.number == selected.number)
    if len(peer.spi) != spi_size:
        raise CryptoError("the proposal's SPI has %d octets, not %d" % (len(peer.spi), spi_size))
    return Choice(selected, peer.spi)


def ke_mismatch(selected: SelectedProposal, ke_payload: Optional[KePayload]) -> Optional[NotifyPayload]:
    """N(INVALID_KE_PAYLOAD) naming the group we want when the request's KE payload is of another
    one (§1.3, §1.3.1); None when it fits (or no key exchange was chosen)."""
    if not selected.dh:
        return None
    if ke_payload is None or ke_payload.group != selected.dh:
        return NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", selected.dh))
    return None


# --- the initiator ----------------------------------------------------------------------------------


def accept(offered: Offer, sa_payload: Optional[SaPayload], spi_size: int) -> Tuple[SelectedProposal, bytes]:
    """The responder's one proposal, which must be one we offered (§2.7), and its SPI; CryptoError
    (a ProposalError) otherwise."""
    if sa_payload is None:
        raise CryptoError("the response has no SA payload")
    chosen = from_wire(sa_payload.proposals)
    if len(chosen) != 1:
        raise CryptoError("the response must hold exactly one proposal")
    selected = accept_response(offered, chosen[0][0], chosen[0][1])
    spi = sa_payload.proposals[0].spi
    if len(spi) != spi_size:
        raise CryptoError("the accepted proposal's SPI has %d octets, not %d" % (len(spi), spi_size))
    return selected, spi


def check_ke(selected: SelectedProposal, ke_payload: Optional[KePayload], ours: Optional[int]) -> None:
    """The response's KE payload must be of the group we sent, and the one the accepted proposal names."""
    if selected.dh is None or selected.dh == 0:
        if ke_payload is not None and ours is None:
            raise CryptoError("a KE payload although no key exchange was accepted")
        return
    if ke_payload is None or ours is None or ke_payload.group != ours or selected.dh != ours:
        raise CryptoError("the response's KE payload does not use the accepted group")


def additional_secret(key_exchange, ke_payload: Optional[KePayload], method: int) -> bytes:
    """The shared secret of one additional key exchange (RFC 9370 §2.2.2, §2.2.4) from the peer's
    KE payload, which must be of the negotiated `method`; CryptoError otherwise."""
    if ke_payload is None or ke_payload.group != method:
        raise CryptoError("the response must carry a KE payload of the negotiated method")
    return key_exchange.shared_secret(ke_payload.data)


def dh_name(group: Optional[int]) -> str:
    try:
        return DhId(group).name
    except (ValueError, TypeError):
        return "group %s" % group


def wanted_group(notify: NotifyPayload) -> Optional[int]:
    """The group an N(INVALID_KE_PAYLOAD) asks for (§3.10.1: two octets), or None."""
    return struct.unpack("!H", notify.data[:2])[0] if len(notify.data) >= 2 else None


def from_wire(proposals: Sequence[Proposal]) -> Offer:
    """(number, spec) pairs for crypto's selection functions; unknown ids are kept, they never match."""
    offered = []
    for proposal in proposals:
        grouped: dict = {}
        for transform in proposal.transforms:
            grouped.setdefault(transform.transform_type, []).append(
                (transform.transform_id, transform.key_length)
            )
        offered.append((proposal.number, ProposalSpec(proposal.protocol, grouped)))
    return offered
