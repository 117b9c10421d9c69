"""Responder proposal selection (RFC 7296 §2.7) and the initiator's check of the reply."""

from __future__ import annotations

import pytest
from pyike.crypto import (
    ProposalError,
    ProposalSpec,
    accept_response,
    features,
    parse_proposal,
    parse_proposals,
    select_proposal,
    spec_from_selected,
)
from pyike.ids import DhId, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
T = TransformType


def offer(texts, protocol):
    return list(enumerate(parse_proposals(texts, protocol), start=1))


def test_our_preference_order_wins_over_the_peers():
    offered = offer("aes128-sha256-modp2048,aes256gcm16-prfsha384-x25519", IKE)
    configured = parse_proposals("aes256gcm16-prfsha384-x25519,aes128-sha256-modp2048", IKE)
    selected = select_proposal(offered, configured, IKE)
    assert selected is not None
    assert selected.number == 2
    assert (selected.encr, selected.key_length, selected.prf, selected.integ, selected.dh) == (
        EncrId.AES_GCM_16,
        256,
        PrfId.HMAC_SHA2_384,
        None,
        DhId.CURVE25519,
    )
    assert selected.aead and selected.esn is None and selected.additional_kes == ()


def test_alternatives_pick_our_first_common_algorithm_per_type():
    offered = offer("aes128-aes256-sha1-sha256-sha384-modp2048-ecp256-x25519", IKE)
    configured = [parse_proposal("aes256-aes128-sha384-sha256-prfsha512-prfsha256-x25519-ecp256", IKE)]
    selected = select_proposal(offered, configured, IKE)
    assert selected is not None
    assert selected.encr == EncrId.AES_CBC and selected.key_length == 256
    assert selected.integ == IntegId.HMAC_SHA2_384_192
    assert selected.prf == PrfId.HMAC_SHA2_256  # prfsha512 is not offered (the peer's PRFs are 1, 256, 384)
    assert selected.dh == DhId.CURVE25519
    echo = spec_from_selected(selected)
    assert str(echo) == "aes256-sha384-prfsha256-x25519"
    assert all(len(echo.get(t)) == 1 for t in echo.types())


def test_no_common_proposal_is_none():
    offered = offer("aes128-sha1-modp2048", IKE)
    assert select_proposal(offered, parse_proposals("aes256gcm16-prfsha256-x25519", IKE), IKE) is None
    # key lengths must match too
    offered = offer("aes128-sha256-x25519", IKE)
    assert select_proposal(offered, parse_proposals("aes256-sha256-x25519", IKE), IKE) is None
    # protocol mismatch
    assert select_proposal(offer("aes256-sha256", ESP), parse_proposals("aes256-sha256", ESP), IKE) is None


def test_unknown_transform_ids_are_ignored_unknown_types_reject_the_proposal():
    peer = ProposalSpec(
        IKE,
        {
            T.ENCR: [(1000, None), (EncrId.AES_GCM_16, 128)],
            T.PRF: [(1001, None), (PrfId.HMAC_SHA2_256, None)],
            T.DH: [(1002, None), (DhId.ECP_256, None)],
        },
    )
    configured = parse_proposals("aes128gcm16-prfsha256-ecp256", IKE)
    selected = select_proposal([(7, peer)], configured, IKE)
    assert selected is not None and selected.number == 7 and selected.dh == DhId.ECP_256
    odd_type = ProposalSpec(IKE, {**dict(peer.items()), 200: [(1, None)]})
    assert select_proposal([(1, odd_type), (2, peer)], configured, IKE).number == 2


def test_esp_pfs_and_esn():
    # PFS offered, we require it
    selected = select_proposal(
        offer("aes256gcm16-ecp256-esn-noesn", ESP), parse_proposals("aes256gcm16-ecp256-esn", ESP), ESP
    )
    assert selected is not None and selected.dh == DhId.ECP_256 and selected.esn == EsnId.ESN
    # peer offers no PFS but we require it
    assert select_proposal(offer("aes256gcm16", ESP), parse_proposals("aes256gcm16-ecp256", ESP), ESP) is None
    # PFS optional on our side
    selected = select_proposal(
        offer("aes256gcm16", ESP), parse_proposals("aes256gcm16-ecp256-modpnone", ESP), ESP
    )
    assert selected is not None and selected.dh is None
    # peer offers PFS optionally, we do not want it: NONE is chosen and echoed
    selected = select_proposal(
        offer("aes256-sha256-x25519-modpnone", ESP), parse_proposals("aes256-sha256", ESP), ESP
    )
    assert selected is not None and selected.dh is None and selected.integ == IntegId.HMAC_SHA2_256_128
    assert spec_from_selected(selected).get(T.DH) == ((DhId.NONE, None),)
    assert selected.esn == EsnId.NO_ESN


def test_aead_with_integ_none_from_peer():
    peer = ProposalSpec(
        ESP,
        {T.ENCR: [(EncrId.AES_GCM_16, 256)], T.INTEG: [(IntegId.NONE, None)], T.ESN: [(EsnId.NO_ESN, None)]},
    )
    selected = select_proposal([(1, peer)], parse_proposals("aes256gcm16", ESP), ESP)
    assert selected is not None and selected.integ is None
    assert spec_from_selected(selected) == peer


@pytest.mark.skipif(not features.has_mlkem(768), reason="installed cryptography has no ML-KEM")
def test_additional_key_exchanges():
    offered = offer("aes256gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024-ke2_none", IKE)
    configured = parse_proposals("aes256gcm16-prfsha256-x25519-ke1_mlkem768", IKE)
    selected = select_proposal(offered, configured, IKE)
    assert selected is not None
    assert selected.additional_kes == ((T.ADDKE1, DhId.ML_KEM_768),)
    echo = spec_from_selected(selected)
    assert echo.get(T.ADDKE2) == ((DhId.NONE, None),)
    # a peer that cannot do the additional exchange fails a configuration that requires it
    assert select_proposal(offer("aes256gcm16-prfsha256-x25519", IKE), configured, IKE) is None


def test_accept_response_checks_the_reply():
    ours = offer("aes256gcm16-prfsha256-x25519-ecp256,aes256-sha256-modp2048", IKE)
    reply = parse_proposal("aes256gcm16-prfsha256-ecp256", IKE)
    selected = accept_response(ours, 1, reply)
    assert selected.dh == DhId.ECP_256 and selected.number == 1
    with pytest.raises(ProposalError, match="did not offer"):
        accept_response(ours, 3, reply)
    with pytest.raises(ProposalError, match="did not offer"):
        accept_response(ours, 1, parse_proposal("aes128gcm16-prfsha256-ecp256", IKE))
    with pytest.raises(ProposalError, match="more than one"):
        accept_response(ours, 1, parse_proposal("aes256gcm16-prfsha256-ecp256-x25519", IKE))
    missing_dh = ProposalSpec(IKE, {T.ENCR: [(EncrId.AES_GCM_16, 256)], T.PRF: [(PrfId.HMAC_SHA2_256, None)]})
    with pytest.raises(ProposalError, match="does not match"):
        accept_response(ours, 1, missing_dh)


def test_round_trip_select_then_accept():
    ours = offer("aes128-sha256-sha512-ecp384-modp3072,chacha20poly1305-prfsha256-x25519", IKE)
    configured = parse_proposals("chacha20poly1305-prfsha256-x25519,aes128-sha512-modp3072", IKE)
    selected = select_proposal(ours, configured, IKE)
    accepted = accept_response(ours, selected.number, spec_from_selected(selected))
    fields = ("number", "encr", "key_length", "prf", "integ", "dh", "esn", "additional_kes")
    assert [getattr(accepted, f) for f in fields] == [getattr(selected, f) for f in fields]
