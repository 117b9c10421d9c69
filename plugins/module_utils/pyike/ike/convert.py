"""ProposalSpec (crypto) <-> SA payload proposals (wire), RFC 7296 §3.3."""

from __future__ import annotations

from typing import List, Sequence, Tuple

from ..crypto.proposals import ProposalSpec
from ..ids import TransformType
from ..wire.sa import Proposal, Transform


def to_wire(specs: Sequence[ProposalSpec], spi: bytes = b"", strip_ke: bool = False) -> List[Proposal]:
    """Proposals numbered from 1. `strip_ke` drops key exchange transforms (the first Child SA in
    IKE_AUTH has no KE payload, so its proposals must not ask for one; RFC 7296 §1.2)."""
    proposals = []
    for number, spec in enumerate(specs, start=1):
        transforms = [
            Transform.make(ttype, transform_id, key_length)
            for ttype, entries in spec.items()
            if not (strip_ke and ttype == TransformType.DH)
            for transform_id, key_length in entries
        ]
        proposals.append(Proposal(number, spec.protocol, transforms, spi))
    return proposals


def from_wire(proposals: Sequence[Proposal]) -> List[Tuple[int, ProposalSpec]]:
    """(number, spec) pairs for crypto's selection functions; unknown ids are kept, they just never match."""
    offered = []
    for proposal in proposals:
        grouped = {}
        for transform in proposal.transforms:
            grouped.setdefault(transform.transform_type, []).append(
                (transform.transform_id, transform.key_length)
            )
        offered.append((proposal.number, ProposalSpec(proposal.protocol, grouped)))
    return offered


def strip_ke(specs: Sequence[ProposalSpec]) -> List[ProposalSpec]:
    """The proposals without any key exchange method, main or RFC 9370 additional, duplicates dropped: the
    Child SA created in IKE_AUTH takes its keys from SK_d alone (RFC 7296 §1.2, §2.17)."""
    key_exchanges = set(range(TransformType.ADDKE1, TransformType.ADDKE7 + 1)) | {TransformType.DH}
    out = []
    for spec in specs:
        grouped = {ttype: list(entries) for ttype, entries in spec.items() if ttype not in key_exchanges}
        candidate = ProposalSpec(spec.protocol, grouped)
        if candidate not in out:
            out.append(candidate)
    return out


def strip_additional_kes(specs: Sequence[ProposalSpec]) -> List[ProposalSpec]:
    """The proposals without RFC 9370 additional key exchanges (where no IKE_INTERMEDIATE or
    IKE_FOLLOWUP_KE exchange can carry them)."""
    additional = set(range(TransformType.ADDKE1, TransformType.ADDKE7 + 1))
    out = []
    for spec in specs:
        grouped = {ttype: list(entries) for ttype, entries in spec.items() if ttype not in additional}
        candidate = ProposalSpec(spec.protocol, grouped)
        if candidate not in out:
            out.append(candidate)
    return out


def has_additional_kes(specs: Sequence[ProposalSpec]) -> bool:
    return any(ttype >= TransformType.ADDKE1 for spec in specs for ttype, _entries in spec.items())
