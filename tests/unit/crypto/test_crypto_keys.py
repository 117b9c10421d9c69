"""Key derivation: a full IKE_SA_INIT/IKE_AUTH/CREATE_CHILD_SA key schedule run by both peers."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyike.crypto import (
    CryptoError,
    PskAuthenticator,
    child_key_lengths,
    child_keymat,
    derive_ike_keys,
    features,
    ike_key_lengths,
    new_key_exchange,
    parse_proposals,
    prf,
    rekey_skeyseed,
    select_proposal,
    signed_octets,
    sk_ciphers,
    skeyseed,
    spec_from_selected,
    update_after_additional_ke,
)
from pyike.crypto.selection import accept_response
from pyike.ids import DhId, ProtocolId, TransformType

IKE, ESP = ProtocolId.IKE, ProtocolId.ESP

NI, NR = bytes(range(32)), bytes(range(100, 132))
SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("a1a2a3a4a5a6a7a8")

# Fixed private values per group (32 octets fit the scalar/exponent of every DH group used here).
FIXED_I = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
FIXED_R = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")

PROPOSALS = [
    "aes256gcm16-prfsha256-x25519",
    "aes128-sha256-modp2048",
    "aes256-sha512-prfsha384-ecp256",
    "chacha20poly1305-prfsha512-ecp384",
    "aes192gcm16-prfsha1-ecp521",
]


class Peer:
    """The key-related half of an IKE endpoint, as the ike layer will drive this package."""

    def __init__(self, initiator, private_key, proposal):
        self.initiator = initiator
        self.private_key = private_key
        self.proposals = parse_proposals(proposal, IKE)
        self.offer = list(enumerate(self.proposals, start=1))

    def install(self, selected, shared_secret):
        self.selected = selected
        seed = skeyseed(selected.prf, NI, NR, shared_secret)
        self.keys = derive_ike_keys(selected, seed, NI, NR, SPI_I, SPI_R)
        self.outbound, self.inbound = sk_ciphers(selected, self.keys, self.initiator)


def run_ike_sa_init(proposal):
    initiator, responder = Peer(True, FIXED_I, proposal), Peer(False, FIXED_R, proposal)
    # initiator: SA + KE
    group = initiator.proposals[0].get(TransformType.DH)[0][0]
    ke_i = new_key_exchange(group, initiator.private_key)
    request_ke = ke_i.public_bytes()
    # responder: select, KE, derive
    selected_r = select_proposal(initiator.offer, responder.proposals, IKE)
    ke_data_r, secret_r = new_key_exchange(selected_r.dh, responder.private_key).respond(request_ke)
    responder.install(selected_r, secret_r)
    # initiator: check the reply, derive
    selected_i = accept_response(initiator.offer, selected_r.number, spec_from_selected(selected_r))
    initiator.install(selected_i, ke_i.shared_secret(ke_data_r))
    return initiator, responder


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_initiator_and_responder_derive_identical_keys(proposal):
    initiator, responder = run_ike_sa_init(proposal)
    assert initiator.keys == responder.keys
    prf_len, integ_len, encr_len = ike_key_lengths(initiator.selected)
    keys = initiator.keys
    assert [len(k) for k in (keys.sk_d, keys.sk_pi, keys.sk_pr)] == [prf_len] * 3
    assert [len(k) for k in (keys.sk_ai, keys.sk_ar)] == [integ_len] * 2
    assert [len(k) for k in (keys.sk_ei, keys.sk_er)] == [encr_len] * 2
    assert len({keys.sk_d, keys.sk_pi, keys.sk_pr, keys.sk_ei, keys.sk_er}) == 5

    # IKE_AUTH both ways through the SK payload, with PSK AUTH
    header = b"H" * 28 + b"\x27\x00\x00\x00"
    for sender, receiver in ((initiator, responder), (responder, initiator)):
        body = sender.outbound.seal(b"IDi|AUTH|SA|TSi|TSr", header)
        assert receiver.inbound.open(header, body) == b"IDi|AUTH|SA|TSi|TSr"
    prf_id = initiator.selected.prf
    octets_i = signed_octets(b"IKE_SA_INIT request", NR, prf_id, keys.sk_pi, b"\x02\x00\x00\x00gw-a")
    auth = PskAuthenticator(prf_id, b"correct horse").build(octets_i)
    responder_view = signed_octets(
        b"IKE_SA_INIT request", NR, prf_id, responder.keys.sk_pi, b"\x02\x00\x00\x00gw-a"
    )
    assert PskAuthenticator(prf_id, b"correct horse").verify(responder_view, auth)
    assert not PskAuthenticator(prf_id, b"wrong horse").verify(responder_view, auth)

    # first Child SA (no PFS): KEYMAT from SK_d and the IKE_SA_INIT nonces
    child_proposal = parse_proposals("aes256gcm16,aes128-sha256", ESP)
    child = select_proposal(list(enumerate(child_proposal, 1)), child_proposal, ESP)
    lengths = child_key_lengths(child.encr, child.key_length, child.integ)
    keymat_i = child_keymat(prf_id, keys.sk_d, NI, NR, *lengths)
    keymat_r = child_keymat(prf_id, responder.keys.sk_d, NI, NR, *lengths)
    assert keymat_i == keymat_r
    assert len(keymat_i.encr_i) == 36 and keymat_i.integ_i == b"" and keymat_i.encr_i != keymat_i.encr_r


def test_keys_against_independent_composition():
    # RFC 7296 §2.14 recomputed with hashlib/hmac for HMAC-SHA-256, AES-128-CBC, HMAC-SHA-256-128.
    initiator, _responder = run_ike_sa_init("aes128-sha256-modp2048")
    secret = new_key_exchange(DhId.MODP_2048, FIXED_I).shared_secret(
        new_key_exchange(DhId.MODP_2048, FIXED_R).public_bytes()
    )
    seed = hmac.new(NI + NR, secret, hashlib.sha256).digest()
    stream, t, counter = b"", b"", 1
    while len(stream) < 32 + 2 * 32 + 2 * 16 + 2 * 32:
        t = hmac.new(seed, t + NI + NR + SPI_I + SPI_R + bytes([counter]), hashlib.sha256).digest()
        stream += t
        counter += 1
    keys = initiator.keys
    assert keys.sk_d == stream[:32]
    assert keys.sk_ai == stream[32:64] and keys.sk_ar == stream[64:96]
    assert keys.sk_ei == stream[96:112] and keys.sk_er == stream[112:128]
    assert keys.sk_pi == stream[128:160] and keys.sk_pr == stream[160:192]


def test_child_keymat_with_pfs_and_additional_secrets():
    sk_d = b"d" * 32
    plain = child_keymat(5, sk_d, NI, NR, 20, 32)
    pfs = child_keymat(5, sk_d, NI, NR, 20, 32, dh_secret=b"g" * 32)
    hybrid = child_keymat(5, sk_d, NI, NR, 20, 32, dh_secret=b"g" * 32, additional_secrets=[b"k" * 32])
    assert len({plain, pfs, hybrid}) == 3
    # RFC 9370 §2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    expected = hmac.new(sk_d, b"g" * 32 + NI + NR + b"k" * 32 + b"\x01", hashlib.sha256).digest()
    assert hybrid.encr_i == expected[:20] and hybrid.integ_i[:12] == expected[20:32]
    with pytest.raises(CryptoError):
        child_keymat(5, sk_d, NI, NR, 20, 32, additional_secrets=[b"k"])


def test_rekey_and_additional_ke_update():
    initiator, responder = run_ike_sa_init("aes256gcm16-prfsha256-x25519")
    prf_id = initiator.selected.prf
    new_seed = rekey_skeyseed(prf_id, initiator.keys.sk_d, b"s" * 32, b"n" * 32, b"m" * 32)
    assert new_seed == prf(prf_id, initiator.keys.sk_d, b"s" * 32 + b"n" * 32 + b"m" * 32)
    hybrid_seed = rekey_skeyseed(prf_id, initiator.keys.sk_d, b"s" * 32, b"n" * 32, b"m" * 32, [b"k" * 32])
    # RFC 9370 §2.2.4: SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    assert hybrid_seed == prf(prf_id, initiator.keys.sk_d, b"s" * 32 + b"n" * 32 + b"m" * 32 + b"k" * 32)

    updated_i = update_after_additional_ke(
        initiator.selected, initiator.keys, b"k" * 32, NI, NR, SPI_I, SPI_R
    )
    updated_r = update_after_additional_ke(
        responder.selected, responder.keys, b"k" * 32, NI, NR, SPI_I, SPI_R
    )
    assert updated_i == updated_r != initiator.keys
    expected_seed = prf(prf_id, initiator.keys.sk_d, b"k" * 32 + NI + NR)
    assert updated_i == derive_ike_keys(initiator.selected, expected_seed, NI, NR, SPI_I, SPI_R)


@pytest.mark.skipif(not features.has_mlkem(768), reason="installed cryptography has no ML-KEM")
def test_hybrid_ike_sa_with_mlkem_additional_exchange():
    proposal = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
    initiator, responder = run_ike_sa_init(proposal)
    assert initiator.selected.additional_kes == responder.selected.additional_kes == ((6, DhId.ML_KEM_768),)
    ke_i = new_key_exchange(DhId.ML_KEM_768)
    reply, secret_r = new_key_exchange(DhId.ML_KEM_768).respond(ke_i.public_bytes())
    keys_i = update_after_additional_ke(
        initiator.selected, initiator.keys, ke_i.shared_secret(reply), NI, NR, SPI_I, SPI_R
    )
    keys_r = update_after_additional_ke(responder.selected, responder.keys, secret_r, NI, NR, SPI_I, SPI_R)
    assert keys_i == keys_r


def test_reprs_hide_key_material():
    initiator, _responder = run_ike_sa_init("aes128-sha256-modp2048")
    text = repr(initiator.keys)
    assert "sk_d=<32 bytes>" in text
    for value in vars(initiator.keys).values():
        assert value.hex() not in text and repr(value) not in text
    child = child_keymat(5, initiator.keys.sk_d, NI, NR, 36, 0)
    assert child.encr_i.hex() not in repr(child) and "encr_i=<36 bytes>" in repr(child)


def test_bad_spi_length():
    initiator, _responder = run_ike_sa_init("aes128-sha256-modp2048")
    with pytest.raises(CryptoError):
        derive_ike_keys(initiator.selected, b"s" * 32, NI, NR, b"short", SPI_R)
