"""PSK authentication (RFC 7296 §2.15) checked against a composition from the standard library."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from pyike.crypto import CryptoError, PskAuthenticator, constant_time_equal, psk_auth, signed_octets
from pyike.crypto.auth import KEY_PAD
from pyike.ids import AuthMethod, PrfId


def test_signed_octets_layout():
    sk_pi = b"p" * 32
    id_body = b"\x02\x00\x00\x00vpn.example.org"
    octets = signed_octets(b"<IKE_SA_INIT request>", b"<Nr>", PrfId.HMAC_SHA2_256, sk_pi, id_body)
    maced_id = hmac.new(sk_pi, id_body, hashlib.sha256).digest()
    assert octets == b"<IKE_SA_INIT request>" + b"<Nr>" + maced_id


@pytest.mark.parametrize(
    "prf_id,digest",
    [
        (PrfId.HMAC_SHA1, hashlib.sha1),
        (PrfId.HMAC_SHA2_256, hashlib.sha256),
        (PrfId.HMAC_SHA2_512, hashlib.sha512),
    ],
)
def test_psk_auth_matches_rfc_formula(prf_id, digest):
    assert KEY_PAD == b"Key Pad for IKEv2"
    psk, octets = b"s3cret-psk", b"signed octets"
    inner = hmac.new(psk, b"Key Pad for IKEv2", digest).digest()
    assert psk_auth(prf_id, psk, octets) == hmac.new(inner, octets, digest).digest()


def test_authenticator_verifies_and_hides_the_psk():
    auth = PskAuthenticator(PrfId.HMAC_SHA2_256, b"s3cret-psk")
    assert auth.method == AuthMethod.SHARED_KEY_MIC
    data = auth.build(b"octets")
    assert auth.verify(b"octets", data)
    assert not auth.verify(b"octets!", data)
    assert not auth.verify(b"octets", data[:-1])
    assert not auth.verify(b"octets", bytes(len(data)))
    assert "s3cret" not in repr(auth)
    with pytest.raises(CryptoError):
        PskAuthenticator(PrfId.HMAC_SHA2_256, b"")
    with pytest.raises(CryptoError):
        PskAuthenticator(PrfId.HMAC_SHA2_256, "text psk")


def test_constant_time_equal():
    assert constant_time_equal(b"abc", b"abc")
    assert not constant_time_equal(b"abc", b"abd")
    assert not constant_time_equal(b"abc", b"ab")
