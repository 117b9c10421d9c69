"""SK payload protection: round trips and tamper detection for every ENCR/INTEG combination."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.crypto import CryptoError, IntegrityError, SkCipher, features
from pyike.crypto.transforms import ENCR_TRANSFORMS, INTEG_TRANSFORMS
from pyike.ids import EncrId, IntegId

COMBINATIONS = [
    (encr, None if encr.aead else integ)
    for encr in ENCR_TRANSFORMS.values()
    if encr.transform_id != EncrId.CHACHA20_POLY1305 or features.has_chacha20_poly1305()
    for integ in (INTEG_TRANSFORMS.values() if not encr.aead else [None])
]
NAMES = [f"{e.name}-{i.name if i else 'aead'}" for e, i in COMBINATIONS]


def make_pair(encr, integ):
    """Sender and receiver for one direction, sharing fresh keys."""
    encr_key = os.urandom(encr.keymat_bytes)
    integ_id = integ.transform_id if integ else None
    integ_key = os.urandom(integ.key_bytes) if integ else b""
    sender = SkCipher(encr.transform_id, encr.key_length, integ_id, encr_key, integ_key)
    receiver = SkCipher(encr.transform_id, encr.key_length, integ_id, encr_key, integ_key)
    return sender, receiver


@pytest.mark.parametrize("encr,integ", COMBINATIONS, ids=NAMES)
@settings(max_examples=25, deadline=None)
@given(plain=st.binary(max_size=300), aad=st.binary(min_size=1, max_size=40), data=st.data())
def test_round_trip_and_tamper(encr, integ, plain, aad, data):
    sender, receiver = make_pair(encr, integ)
    body = sender.seal(plain, aad)
    assert len(body) == sender.body_length(len(plain))
    if not encr.aead:
        assert (len(body) - sender.iv_length - sender.icv_length) % encr.block_bytes == 0
    assert receiver.open(aad, body) == plain

    position = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    tampered = bytearray(body)
    tampered[position] ^= flip
    with pytest.raises(IntegrityError):
        receiver.open(aad, bytes(tampered))
    aad_position = data.draw(st.integers(0, len(aad) - 1))
    tampered_aad = bytearray(aad)
    tampered_aad[aad_position] ^= flip
    with pytest.raises(IntegrityError):
        receiver.open(bytes(tampered_aad), body)
    cut = data.draw(st.integers(0, len(body) - 1))
    with pytest.raises(IntegrityError):
        receiver.open(aad, body[:cut])


@pytest.mark.parametrize("encr,integ", COMBINATIONS, ids=NAMES)
def test_wrong_key_fails(encr, integ):
    sender, _receiver = make_pair(encr, integ)
    _sender, stranger = make_pair(encr, integ)
    with pytest.raises(IntegrityError):
        stranger.open(b"hdr", sender.seal(b"payloads", b"hdr"))


@pytest.mark.parametrize("encr,integ", COMBINATIONS, ids=NAMES)
@settings(max_examples=30, deadline=None)
@given(body=st.binary(max_size=120))
def test_arbitrary_bodies_raise_only_integrity_error(encr, integ, body):
    _sender, receiver = make_pair(encr, integ)
    with pytest.raises(IntegrityError):
        receiver.open(b"hdr", body)


def test_cbc_layout_and_fixed_iv():
    encr = ENCR_TRANSFORMS[(EncrId.AES_CBC, 128)]
    integ = INTEG_TRANSFORMS[IntegId.HMAC_SHA2_256_128]
    sender, receiver = make_pair(encr, integ)
    iv = bytes(range(16))
    body = sender.seal(b"x" * 15, b"hdr", iv=iv)
    assert body[:16] == iv and len(body) == 16 + 16 + 16  # 15 + pad length octet = one block
    assert len(sender.seal(b"x" * 16, b"hdr")) == 16 + 32 + 16  # a full block needs another block
    assert receiver.open(b"hdr", body) == b"x" * 15


def test_pad_length_beyond_plaintext_is_rejected():
    # Build a CBC body whose authenticated plaintext claims more padding than it holds.
    from cryptography.hazmat.primitives import hashes, hmac
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key, mac_key, iv = os.urandom(16), os.urandom(32), os.urandom(16)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(b"\x00" * 15 + b"\x20") + encryptor.finalize()
    mac = hmac.HMAC(mac_key, hashes.SHA256())
    mac.update(b"hdr" + iv + ciphertext)
    body = iv + ciphertext + mac.finalize()[:16]
    receiver = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, key, mac_key)
    with pytest.raises(IntegrityError):
        receiver.open(b"hdr", body)


def test_aead_uses_the_salt_from_the_key_material():
    encr = ENCR_TRANSFORMS[(EncrId.AES_GCM_16, 256)]
    key = os.urandom(32)
    sender = SkCipher(EncrId.AES_GCM_16, 256, None, key + b"salt")
    other_salt = SkCipher(EncrId.AES_GCM_16, 256, None, key + b"SALT")
    body = sender.seal(b"payload", b"hdr", iv=bytes(8))
    assert len(body) == 8 + len(b"payload") + 1 + encr.icv_bytes
    with pytest.raises(IntegrityError):
        other_salt.open(b"hdr", body)


def test_construction_errors_and_repr():
    with pytest.raises(CryptoError):
        SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, b"short", bytes(32))
    with pytest.raises(CryptoError):
        SkCipher(EncrId.AES_CBC, 128, None, bytes(16))
    with pytest.raises(CryptoError):
        SkCipher(EncrId.AES_GCM_16, 128, IntegId.HMAC_SHA2_256_128, bytes(20), bytes(32))
    with pytest.raises(CryptoError):
        SkCipher(EncrId.AES_CBC, 100, IntegId.HMAC_SHA2_256_128, bytes(16), bytes(32))
    key = bytes(range(16))
    cipher = SkCipher(EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128, key, bytes(range(32)))
    assert key.hex() not in repr(cipher) and "aes128" in repr(cipher)
    with pytest.raises(CryptoError):
        cipher.seal(b"x", b"hdr", iv=b"short")
