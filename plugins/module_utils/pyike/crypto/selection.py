"""Proposal selection by the responder (RFC 7296 §2.7 and §3.3.6, RFC 9370 §2.2.1).

Our configured proposals are tried in order, and for each the peer's proposals in order
(strongSwan's default, "prefer configured").  Within a transform type the first of our
algorithms that the peer also offers wins.  Transform ids we do not implement simply never
match; a transform *type* that is not valid for the protocol makes that peer proposal
unacceptable (§3.3.6).  For the key exchange of ESP and for the additional key exchanges an
absent type means the same as NONE.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from ..ids import DhId, EsnId, IntegId, ProtocolId, TransformType
from .errors import ProposalError
from .proposals import ProposalSpec, Transform
from .transforms import ADDITIONAL_KE_TYPES, EncrTransform, encr_transform, is_supported, transform_name

_ALLOWED_TYPES = {
    ProtocolId.IKE: frozenset(
        (TransformType.ENCR, TransformType.PRF, TransformType.INTEG, TransformType.DH, *ADDITIONAL_KE_TYPES)
    ),
    ProtocolId.ESP: frozenset(
        (TransformType.ENCR, TransformType.INTEG, TransformType.DH, TransformType.ESN, *ADDITIONAL_KE_TYPES)
    ),
}


@dataclass(frozen=True)
class SelectedProposal:
    """The single proposal the responder accepts.

    ``number`` is the peer's proposal number to echo.  ``dh`` is None when no key exchange
    takes place (ESP without PFS).  ``additional_kes`` lists the RFC 9370 exchanges to run,
    in order, as (transform type, method); types resolved to NONE are left out.
    ``transforms`` is the exact (type, id, key length) list to put in the reply.
    """

    number: int
    protocol: int
    encr: int
    key_length: Optional[int]
    prf: Optional[int]
    integ: Optional[int]
    dh: Optional[int]
    esn: Optional[int]
    additional_kes: Tuple[Tuple[int, int], ...]
    transforms: Tuple[Tuple[int, int, Optional[int]], ...]

    @property
    def encr_transform(self) -> EncrTransform:
        return encr_transform(self.encr, self.key_length)

    @property
    def aead(self) -> bool:
        return self.encr_transform.aead


def _first_match(
    transform_type: int, ours: Iterable[Transform], theirs: Sequence[Transform]
) -> Optional[Transform]:
    for candidate in ours:
        if candidate in theirs and is_supported(transform_type, *candidate):
            return candidate
    return None


def _match(configured: ProposalSpec, offered: ProposalSpec, number: int) -> Optional[SelectedProposal]:
    protocol = configured.protocol
    allowed = _ALLOWED_TYPES[protocol]
    if any(t not in allowed for t in offered.types()):
        return None
    chosen: Dict[int, Transform] = {}

    encr = _first_match(
        TransformType.ENCR, configured.get(TransformType.ENCR), offered.get(TransformType.ENCR)
    )
    if encr is None:
        return None
    chosen[TransformType.ENCR] = encr
    aead = encr_transform(*encr).aead

    offered_integ = offered.get(TransformType.INTEG)
    if aead:
        # RFC 7296 §3.3: with an AEAD the INTEG transform is absent or NONE.
        if (IntegId.NONE, None) in offered_integ:
            chosen[TransformType.INTEG] = (IntegId.NONE, None)
    else:
        ours = [t for t in configured.get(TransformType.INTEG) if t[0] != IntegId.NONE]
        integ = _first_match(TransformType.INTEG, ours, offered_integ)
        if integ is None:
            return None
        chosen[TransformType.INTEG] = integ

    if protocol == ProtocolId.IKE:
        prf = _first_match(
            TransformType.PRF, configured.get(TransformType.PRF), offered.get(TransformType.PRF)
        )
        if prf is None:
            return None
        chosen[TransformType.PRF] = prf
        ours_dh = [t for t in configured.get(TransformType.DH) if t[0] != DhId.NONE]
        dh = _first_match(TransformType.DH, ours_dh, offered.get(TransformType.DH))
        if dh is None:
            return None
        chosen[TransformType.DH] = dh
        optional_types: Tuple[int, ...] = ADDITIONAL_KE_TYPES
    else:
        optional_types = (TransformType.DH, *ADDITIONAL_KE_TYPES)
        esn = _first_match(
            TransformType.ESN,
            configured.get(TransformType.ESN) or ((EsnId.NO_ESN, None),),
            offered.get(TransformType.ESN) or ((EsnId.NO_ESN, None),),
        )
        if esn is None:
            return None
        chosen[TransformType.ESN] = esn

    for ttype in optional_types:
        method = _first_match(
            ttype,
            configured.get(ttype) or ((DhId.NONE, None),),
            offered.get(ttype) or ((DhId.NONE, None),),
        )
        if method is None:
            return None
        chosen[ttype] = method

    echo = tuple((ttype, chosen[ttype][0], chosen[ttype][1]) for ttype in offered.types() if ttype in chosen)

    def chosen_id(ttype: int) -> Optional[int]:
        item = chosen.get(ttype)
        if item is None or (ttype in (TransformType.INTEG, TransformType.DH) and item[0] == 0):
            return None
        return item[0]

    return SelectedProposal(
        number=number,
        protocol=protocol,
        encr=encr[0],
        key_length=encr[1],
        prf=chosen_id(TransformType.PRF),
        integ=chosen_id(TransformType.INTEG),
        dh=chosen_id(TransformType.DH),
        esn=chosen_id(TransformType.ESN),
        additional_kes=tuple(
            (ttype, chosen[ttype][0]) for ttype in ADDITIONAL_KE_TYPES if chosen[ttype][0] != DhId.NONE
        ),
        transforms=echo,
    )


def select_proposal(
    offered: Sequence[Tuple[int, ProposalSpec]],
    configured: Sequence[ProposalSpec],
    protocol: int,
) -> Optional[SelectedProposal]:
    """Pick one proposal from the peer's ``(proposal number, spec)`` list, or None.

    None means NO_PROPOSAL_CHOSEN (RFC 7296 §2.7).
    """
    if protocol not in _ALLOWED_TYPES:
        return None
    for ours in configured:
        if ours.protocol != protocol:
            continue
        for number, theirs in offered:
            if theirs.protocol != protocol:
                continue
            selected = _match(ours, theirs, number)
            if selected is not None:
                return selected
    return None


def spec_from_selected(selected: SelectedProposal) -> ProposalSpec:
    """The single-transform-per-type proposal to send back in the responder's SA payload."""
    grouped: Dict[int, List[Transform]] = {}
    for ttype, transform_id, key_length in selected.transforms:
        grouped.setdefault(ttype, []).append((transform_id, key_length))
    return ProposalSpec(selected.protocol, grouped)


def accept_response(
    proposals: Sequence[Tuple[int, ProposalSpec]], number: int, chosen: ProposalSpec
) -> SelectedProposal:
    """Check the responder's reply against what we offered (RFC 7296 §2.7) and decode it.

    ``proposals`` is our offer as ``(proposal number, spec)``; ``number`` and ``chosen`` come
    from the reply, which must hold one transform per type, each taken from that proposal.
    """
    ours = dict(proposals).get(number)
    if ours is None or ours.protocol != chosen.protocol or chosen.protocol not in _ALLOWED_TYPES:
        raise ProposalError(
            f"peer accepted proposal number {number}, which we did not offer", proposal=str(chosen)
        )
    for ttype, entries in chosen.items():
        token = transform_name(ttype, *entries[0])
        if len(entries) != 1:
            raise ProposalError("peer accepted more than one transform of a type", token, str(chosen))
        may_be_none = (
            ttype in (TransformType.INTEG, TransformType.DH, *ADDITIONAL_KE_TYPES) and entries[0][0] == 0
        )
        if entries[0] not in ours.get(ttype) and not may_be_none:
            raise ProposalError("peer accepted a transform we did not offer", token, str(chosen))
    selected = _match(chosen, ours, number)
    if selected is None:
        raise ProposalError("peer's accepted proposal does not match our offer", proposal=str(chosen))
    echo = tuple((ttype, entries[0][0], entries[0][1]) for ttype, entries in chosen.items())
    return replace(selected, transforms=echo)
