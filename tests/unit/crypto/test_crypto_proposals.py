"""Parsing strongSwan proposal strings: accepted strings, canonical form, rejected strings."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.crypto import ProposalError, ProposalSpec, parse_proposal, parse_proposals
from pyike.ids import DhId, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP
T = TransformType

GOOD = [
    (
        IKE,
        "aes256gcm16-prfsha256-x25519",
        "aes256gcm16-prfsha256-x25519",
        {
            T.ENCR: [(EncrId.AES_GCM_16, 256)],
            T.PRF: [(PrfId.HMAC_SHA2_256, None)],
            T.DH: [(DhId.CURVE25519, None)],
        },
    ),
    (
        IKE,
        "aes256-sha256-modp2048",
        "aes256-sha256-prfsha256-modp2048",
        {
            T.ENCR: [(EncrId.AES_CBC, 256)],
            T.INTEG: [(IntegId.HMAC_SHA2_256_128, None)],
            T.PRF: [(PrfId.HMAC_SHA2_256, None)],
            T.DH: [(DhId.MODP_2048, None)],
        },
    ),
    (
        IKE,
        "aes128-sha256-sha384-ecp256-x25519",
        "aes128-sha256-sha384-prfsha256-prfsha384-ecp256-x25519",
        {
            T.ENCR: [(EncrId.AES_CBC, 128)],
            T.INTEG: [(IntegId.HMAC_SHA2_256_128, None), (IntegId.HMAC_SHA2_384_192, None)],
            T.PRF: [(PrfId.HMAC_SHA2_256, None), (PrfId.HMAC_SHA2_384, None)],
            T.DH: [(DhId.ECP_256, None), (DhId.CURVE25519, None)],
        },
    ),
    (
        IKE,
        "chacha20poly1305-prfsha384-ecp384",
        "chacha20poly1305-prfsha384-ecp384",
        {
            T.ENCR: [(EncrId.CHACHA20_POLY1305, None)],
            T.PRF: [(PrfId.HMAC_SHA2_384, None)],
            T.DH: [(DhId.ECP_384, None)],
        },
    ),
    (
        IKE,
        "aes256-sha512-prfsha384-curve25519",  # explicit PRF wins over the integrity-derived one
        "aes256-sha512-prfsha384-x25519",
        {
            T.ENCR: [(EncrId.AES_CBC, 256)],
            T.INTEG: [(IntegId.HMAC_SHA2_512_256, None)],
            T.PRF: [(PrfId.HMAC_SHA2_384, None)],
            T.DH: [(DhId.CURVE25519, None)],
        },
    ),
    (
        IKE,
        "aes256gcm16-aes128gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024",
        "aes256gcm16-aes128gcm16-prfsha256-x25519-ke1_mlkem768-ke1_none-ke2_mlkem1024",
        {
            T.ENCR: [(EncrId.AES_GCM_16, 256), (EncrId.AES_GCM_16, 128)],
            T.PRF: [(PrfId.HMAC_SHA2_256, None)],
            T.DH: [(DhId.CURVE25519, None)],
            T.ADDKE1: [(DhId.ML_KEM_768, None), (DhId.NONE, None)],
            T.ADDKE2: [(DhId.ML_KEM_1024, None)],
        },
    ),
    (
        IKE,
        " AES-SHA-MODP3072 ",  # strongSwan aliases, case and blanks
        "aes128-sha1-prfsha1-modp3072",
        {
            T.ENCR: [(EncrId.AES_CBC, 128)],
            T.INTEG: [(IntegId.HMAC_SHA1_96, None)],
            T.PRF: [(PrfId.HMAC_SHA1, None)],
            T.DH: [(DhId.MODP_3072, None)],
        },
    ),
    (
        ESP,
        "aes256gcm16-x25519",
        "aes256gcm16-x25519-noesn",
        {T.ENCR: [(EncrId.AES_GCM_16, 256)], T.DH: [(DhId.CURVE25519, None)], T.ESN: [(EsnId.NO_ESN, None)]},
    ),
    (
        ESP,
        "aes256-sha256",
        "aes256-sha256-noesn",
        {
            T.ENCR: [(EncrId.AES_CBC, 256)],
            T.INTEG: [(IntegId.HMAC_SHA2_256_128, None)],
            T.ESN: [(EsnId.NO_ESN, None)],
        },
    ),
    (
        ESP,
        "aes128gcm128-esn-noesn",
        "aes128gcm16-esn-noesn",
        {T.ENCR: [(EncrId.AES_GCM_16, 128)], T.ESN: [(EsnId.ESN, None), (EsnId.NO_ESN, None)]},
    ),
    (
        ESP,
        "aes192-sha2_384-ecp521-modpnone",
        "aes192-sha384-ecp521-modpnone-noesn",
        {
            T.ENCR: [(EncrId.AES_CBC, 192)],
            T.INTEG: [(IntegId.HMAC_SHA2_384_192, None)],
            T.DH: [(DhId.ECP_521, None), (DhId.NONE, None)],
            T.ESN: [(EsnId.NO_ESN, None)],
        },
    ),
    (
        ESP,
        "chacha20poly1305-x448-ke1_mlkem768-esn",
        "chacha20poly1305-x448-ke1_mlkem768-esn",
        {
            T.ENCR: [(EncrId.CHACHA20_POLY1305, None)],
            T.DH: [(DhId.CURVE448, None)],
            T.ADDKE1: [(DhId.ML_KEM_768, None)],
            T.ESN: [(EsnId.ESN, None)],
        },
    ),
]


@pytest.mark.parametrize("protocol,text,canonical,transforms", GOOD)
def test_good_strings(protocol, text, canonical, transforms):
    spec = parse_proposal(text, protocol)
    assert spec == ProposalSpec(protocol, transforms)
    assert str(spec) == canonical
    assert parse_proposal(str(spec), protocol) == spec


BAD = [
    (IKE, "aes999-sha256-modp2048", "aes999", "unknown"),
    (IKE, "aes256-sha256-modp1024", "modp1024", "unknown"),
    (IKE, "aes256--sha256-modp2048", "", "empty"),
    (IKE, "", None, "empty proposal"),
    (IKE, "aes256-modp2048", None, "integrity"),
    (IKE, "aes256gcm16-x25519", None, "PRF"),
    (IKE, "aes256gcm16-prfsha256", None, "key exchange method"),
    (IKE, "sha256-prfsha256-x25519", None, "encryption algorithm"),
    (IKE, "aes256gcm16-aes256-sha256-x25519", "aes256", "AEAD and non-AEAD"),
    (IKE, "aes256-aes256gcm16-sha256-x25519", "aes256gcm16", "AEAD and non-AEAD"),
    (IKE, "aes256-sha256-x25519-esn", "esn", "ESN"),
    (IKE, "aes256-sha256-x25519-modpnone", "modpnone", "optional"),
    (IKE, "aes256-sha256-x25519-ke8_mlkem768", "ke8_mlkem768", "ke1_ to ke7_"),
    (IKE, "aes256-sha256-x25519-ke1_aes256", "ke1_aes256", "unknown key exchange"),
    (ESP, "aes256", None, "integrity"),
    (ESP, "aes256-sha256-prfsha256", "prfsha256", "PRF"),
    (ESP, "aes256gcm16-ke1_mlkem768", None, "additional key exchanges need"),
    (ESP, "aes256gcm16-modpnone-ke1_mlkem768", None, "additional key exchanges need"),
    (ProtocolId.AH, "sha256", None, "unsupported protocol"),
]


@pytest.mark.parametrize("protocol,text,token,reason", BAD)
def test_bad_strings(protocol, text, token, reason):
    with pytest.raises(ProposalError, match=reason) as caught:
        parse_proposal(text, protocol)
    assert caught.value.token == token
    assert caught.value.proposal == text
    assert repr(text) in str(caught.value)
    if token:
        assert repr(token) in str(caught.value)


def test_comma_separated_list_keeps_order():
    specs = parse_proposals("aes256gcm16-prfsha256-x25519, aes256-sha256-modp2048", IKE)
    assert [str(s) for s in specs] == ["aes256gcm16-prfsha256-x25519", "aes256-sha256-prfsha256-modp2048"]
    assert parse_proposals(["aes256-sha256"], ESP) == [parse_proposal("aes256-sha256", ESP)]
    with pytest.raises(ProposalError, match="x99"):
        parse_proposals("aes256-sha256,aes256-x99", ESP)
    with pytest.raises(ProposalError):
        parse_proposals([], ESP)


def test_duplicates_collapse():
    assert parse_proposal("aes256-aes256-sha256-sha2_256", ESP) == parse_proposal("aes256-sha256", ESP)


def test_validate_rejects_structures_from_elsewhere():
    aead_with_integ = ProposalSpec(
        ESP,
        {
            T.ENCR: [(EncrId.AES_GCM_16, 256)],
            T.INTEG: [(IntegId.HMAC_SHA2_256_128, None)],
            T.ESN: [(0, None)],
        },
    )
    with pytest.raises(ProposalError, match="AEAD"):
        aead_with_integ.validate()
    unknown_type = ProposalSpec(IKE, {T.ENCR: [(EncrId.AES_CBC, 128)], 13: [(1, None)]})
    with pytest.raises(ProposalError, match="UNKNOWN_13_1"):
        unknown_type.validate()


@settings(max_examples=200, deadline=None)
@given(
    text=st.one_of(
        st.text(max_size=60),
        st.lists(
            st.sampled_from(
                [
                    "aes256",
                    "aes128gcm16",
                    "sha256",
                    "prfsha384",
                    "x25519",
                    "modpnone",
                    "esn",
                    "ke1_mlkem768",
                    "ke0_x",
                ]
            ),
            max_size=6,
        ).map("-".join),
    ),
    protocol=st.sampled_from([IKE, ESP]),
)
def test_arbitrary_strings_raise_only_proposal_error(text, protocol):
    try:
        spec = parse_proposal(text, protocol)
    except ProposalError:
        return
    spec.validate()
    assert parse_proposal(str(spec), protocol) == spec


def test_an_integrity_keyword_beside_an_aead_cipher_only_names_the_prf_as_in_strongswan():
    ike = parse_proposal("aes256gcm16-sha384-ecp384", IKE)
    assert ike == parse_proposal("aes256gcm16-prfsha384-ecp384", IKE)
    assert parse_proposal("aes256gcm16-sha256", ESP) == parse_proposal("aes256gcm16", ESP)
