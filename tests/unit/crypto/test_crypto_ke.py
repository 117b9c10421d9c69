"""Key exchange: agreement for every group, validation of peer values, one API for DH and KEM."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.crypto import (
    KeyExchangeError,
    UnsupportedTransformError,
    available_ke_groups,
    features,
    ke,
    new_key_exchange,
)
from pyike.crypto.modp_groups import MODP_2048_PRIME
from pyike.ids import DhId

NEEDS_MLKEM = pytest.mark.skipif(
    not features.has_mlkem(768), reason="installed cryptography has no ML-KEM (added in cryptography 47)"
)
MLKEM_GROUPS = [
    pytest.param(DhId.ML_KEM_768, marks=NEEDS_MLKEM),
    pytest.param(
        DhId.ML_KEM_1024,
        marks=pytest.mark.skipif(
            not features.has_mlkem(1024), reason="installed cryptography has no ML-KEM-1024"
        ),
    ),
]

DH_GROUPS = [g for g in available_ke_groups() if g not in (DhId.ML_KEM_768, DhId.ML_KEM_1024)]
# (initiator KE data, responder KE data) lengths: RFC 7296 §3.4 / RFC 5903 §7 / RFC 8031 §2 / FIPS 203
KE_DATA_LENGTHS = {
    DhId.MODP_2048: (256, 256),
    DhId.MODP_3072: (384, 384),
    DhId.MODP_4096: (512, 512),
    DhId.ECP_256: (64, 64),
    DhId.ECP_384: (96, 96),
    DhId.ECP_521: (132, 132),
    DhId.CURVE25519: (32, 32),
    DhId.CURVE448: (56, 56),
    DhId.ML_KEM_768: (1184, 1088),
    DhId.ML_KEM_1024: (1568, 1568),
}


def _drive(group):
    """The exchange as an IKE state machine runs it, without knowing the kind of method."""
    initiator = new_key_exchange(group)
    request = initiator.public_bytes()
    reply, responder_secret = new_key_exchange(group).respond(request)
    return request, reply, initiator.shared_secret(reply), responder_secret


@pytest.mark.parametrize("group", DH_GROUPS)
def test_dh_groups_agree(group):
    request, reply, secret_i, secret_r = _drive(group)
    assert (len(request), len(reply)) == KE_DATA_LENGTHS[group]
    assert secret_i == secret_r
    assert any(secret_i)


@pytest.mark.parametrize("group", MLKEM_GROUPS)
def test_mlkem_agrees_through_the_same_api(group):
    assert group in available_ke_groups()
    request, reply, secret_i, secret_r = _drive(group)
    assert (len(request), len(reply)) == KE_DATA_LENGTHS[group]
    assert secret_i == secret_r and len(secret_i) == 32
    assert new_key_exchange(group).is_kem


@NEEDS_MLKEM
def test_mlkem_seed_makes_initiator_deterministic():
    seed = bytes(range(64))
    one = new_key_exchange(DhId.ML_KEM_768, seed)
    two = new_key_exchange(DhId.ML_KEM_768, seed)
    assert one.public_bytes() == two.public_bytes()
    reply, secret = new_key_exchange(DhId.ML_KEM_768).respond(one.public_bytes())
    assert two.shared_secret(reply) == secret


@pytest.mark.parametrize("group", MLKEM_GROUPS)
def test_mlkem_rejects_bad_peer_values(group):
    ek_len, ct_len = KE_DATA_LENGTHS[group]
    initiator = new_key_exchange(group)
    initiator.public_bytes()
    with pytest.raises(KeyExchangeError):
        new_key_exchange(group).respond(b"\x00" * (ek_len - 1))
    # every coefficient 0xfff > q: fails the FIPS 203 §7.2 modulus check
    with pytest.raises(KeyExchangeError):
        new_key_exchange(group).respond(b"\xff" * ek_len)
    with pytest.raises(KeyExchangeError):
        initiator.shared_secret(b"\x00" * (ct_len + 1))


@pytest.mark.skipif(features.has_mlkem(768), reason="only meaningful where cryptography lacks ML-KEM")
def test_mlkem_reported_unavailable_without_support():
    assert DhId.ML_KEM_768 not in available_ke_groups()
    with pytest.raises(UnsupportedTransformError):
        new_key_exchange(DhId.ML_KEM_768)


@pytest.mark.parametrize("group", DH_GROUPS)
def test_wrong_length_rejected(group):
    ke = new_key_exchange(group)
    good = new_key_exchange(group).public_bytes()
    for bad in (good[:-1], good + b"\x00", b""):
        with pytest.raises(KeyExchangeError, match="RFC 7296"):
            ke.shared_secret(bad)
        with pytest.raises(KeyExchangeError):
            ke.respond(bad)


@pytest.mark.parametrize("y", [0, 1, MODP_2048_PRIME - 1, MODP_2048_PRIME, 2**2048 - 1])
def test_modp_range_check(y):
    ke = new_key_exchange(DhId.MODP_2048)
    with pytest.raises(KeyExchangeError, match="out of range"):
        ke.shared_secret(y.to_bytes(256, "big"))


@pytest.mark.parametrize("group", [DhId.ECP_256, DhId.ECP_384, DhId.ECP_521])
def test_ecp_point_not_on_curve_rejected(group):
    ke = new_key_exchange(group)
    good = bytearray(new_key_exchange(group).public_bytes())
    good[-1] ^= 1  # y no longer matches x
    with pytest.raises(KeyExchangeError, match="not a point"):
        ke.shared_secret(bytes(good))
    with pytest.raises(KeyExchangeError):
        ke.shared_secret(bytes(len(good)))


# Small-order u-coordinates (RFC 7748 §5 / libsodium's blocklist): each yields an all-zero X25519.
X25519_SMALL_ORDER = [
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("peer", X25519_SMALL_ORDER)
def test_x25519_all_zero_secret_rejected(peer):
    with pytest.raises(KeyExchangeError):
        new_key_exchange(DhId.CURVE25519).shared_secret(peer)


@pytest.mark.skipif(not features.has_x448(), reason="this OpenSSL build has no X448")
def test_x448_all_zero_secret_rejected():
    with pytest.raises(KeyExchangeError):
        new_key_exchange(DhId.CURVE448).shared_secret(bytes(56))


@settings(max_examples=80, deadline=None)
@given(draw=st.data())
def test_arbitrary_peer_data_raises_only_key_exchange_error(draw):
    group = draw.draw(st.sampled_from(DH_GROUPS))
    length = KE_DATA_LENGTHS[group][1]
    data = draw.draw(st.one_of(st.binary(max_size=600), st.binary(min_size=length, max_size=length)))
    ke = new_key_exchange(group)
    try:
        secret = ke.shared_secret(data)
    except KeyExchangeError:
        return
    assert len(data) == KE_DATA_LENGTHS[group][1] and any(secret)


def test_fixed_private_key_is_deterministic_and_hidden_from_repr():
    key = bytes(range(1, 33))
    one, two = new_key_exchange(DhId.ECP_256, key), new_key_exchange(DhId.ECP_256, key)
    assert one.public_bytes() == two.public_bytes()
    assert key.hex() not in repr(one) and "ECP_256" in repr(one)
    modp = new_key_exchange(DhId.MODP_2048, key)
    assert modp.public_bytes() == new_key_exchange(DhId.MODP_2048, key).public_bytes()


def test_unknown_or_bad_injection():
    with pytest.raises(UnsupportedTransformError):
        new_key_exchange(DhId.NONE)
    with pytest.raises(UnsupportedTransformError):
        new_key_exchange(999)
    with pytest.raises(KeyExchangeError):
        new_key_exchange(DhId.CURVE25519, b"short")
    with pytest.raises(KeyExchangeError):
        new_key_exchange(DhId.MODP_2048, b"\x01")  # exponent 1 is out of range
    with pytest.raises(KeyExchangeError):
        new_key_exchange(DhId.ECP_256, bytes(32))  # scalar 0


@pytest.mark.parametrize("slow_public_key", [True, False])
def test_ecx_public_values_either_way_match_rfc_7748(monkeypatch, slow_public_key):
    """The public value by the base-point multiplication (taken with cryptography < 42) and by public_key()
    are the same: the RFC 7748 §6.1 vectors for X25519, and public_key() itself for random X448 keys."""
    monkeypatch.setattr(ke, "_SLOW_PUBLIC_KEY", slow_public_key)
    alice = new_key_exchange(
        DhId.CURVE25519, bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    assert alice.public_bytes().hex() == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
    bob = new_key_exchange(
        DhId.CURVE25519, bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    )
    assert bob.public_bytes().hex() == "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
    assert alice.shared_secret(bob.public_bytes()).hex() == (
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
    )
    for _round in range(20):
        key = new_key_exchange(DhId.CURVE448, None)
        assert key.public_bytes() == key._key.public_key().public_bytes(*ke._RAW)
