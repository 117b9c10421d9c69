"""Known-answer and layout tests of the per-SA ESP ciphers."""

from __future__ import annotations

import struct

import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from esp_packets import CIPHER_CASES, CIPHER_IDS, cipher_for
from pyike.esp import AeadCipher, CbcHmacCipher, encr_key_length, integ_key_length, make_cipher
from pyike.ids import EncrId, IntegId

# draft-mcgrew-gcm-test-01 (McGrew & Viega, "GCM Test Vectors for ESP"): the AAD is the ESP
# SPI | [ESN high] | sequence number, the nonce salt | IV, so each case is a whole ESP packet.
# (case number, key, salt, IV, AAD, plaintext, ciphertext, tag)
GCM_ESP_VECTORS = [
    (
        1,
        "4c80cdefbb5d10da906ac73c3613a634",
        "2e443b68",
        "4956ed7e3b244cfe",
        "000043218765432100000000",
        "45000048699a000080114db7c0a80102c0a801010a9bf15638d3010000010000"
        "00000000045f736970045f756470037369700963796265726369747902646b00"
        "0021000101020201",
        "fecf537e729d5b07dc30df528dd22b768d1b98736696a6fd348509fa13ceac34"
        "cfa2436f14a3f3cf65925bf1f4a13c5d15b21e1884f5ff6247aeabb786b93bce"
        "61bc17d768fd9732",
        "459018148f6cbe722fd04796562dfdb4",
    ),
    (
        3,
        "abbccddef00112233445566778899aababbccddef00112233445566778899aab",
        "11223344",
        "0102030405060708",
        "4a2cbfe300000002",
        "4500003069a6400080062690c0a801029389155e0a9e008b2dc57ee000000000"
        "7002400020bf0000020405b40101040201020201",
        "ff425c9b724599df7a3bcd510194e00d6a78107f1b0b1cbf06efae9d65a5d763"
        "748a637985771d347f0545659f14e99def842d8e",
        "b335f4eecfdbf831824b4c4915956c96",
    ),
    (
        7,
        "feffe9928665731c6d6a8f9467308308feffe9928665731c",
        "cafebabe",
        "facedbaddecaf888",
        "0000a5f80000000a",
        "45000028a4ad4000400678800a01038f0a010612802306b8cb712602dd6bb03e501016d075680001",
        "a5b1f8066029aea40e598b8122de02420938b3ab33f828e687b8858b5bfbdbd0315b27452144cc77",
        "95457b9652037f5318027b5b4cd7a636",
    ),
    (
        12,
        "7d773d00c144c525ac619d18c84a3f47",
        "d9664267",
        "43457e9182443bc6",
        "335467aeffffffff",
        "01020201",
        "437f866b",
        "cb3f699fe9b0822bac961c4504bef270",
    ),
    (
        14,
        "6c6567616c697a656d6172696a75616e61616e64646f69746265666f72656961",
        "7475726e",
        "333021696765746d",
        "796b6963ffffffffffffffff",
        "45000030da3a00008001df3bc0a80005c0a800010800c6cd0200070061626364"
        "65666768696a6b6c6d6e6f707172737401020201",
        "f97ab2aa356d8edce17644ac8c78e25dd24dedbb29ebf1b64a274b39b49c3a86"
        "4cd3d78ca4ae68a32b42458fb57dbe821dcc63b9",
        "d0937ba2945f669368661a329fb4c053",
    ),
]


def _esp_frame(aad: bytes) -> tuple:
    """(ESP header, ESN high octets) for an AAD of SPI | [seq_hi] | seq_lo."""
    if len(aad) == 12:
        return aad[:4] + aad[8:], aad[4:8]
    return aad, b""


@pytest.mark.parametrize("vector", GCM_ESP_VECTORS, ids=lambda v: f"case{v[0]}")
def test_aes_gcm_esp_framing_matches_mcgrew_viega_vectors(vector):
    _case_no, key, salt, iv, aad, plaintext, ciphertext, tag = (
        bytes.fromhex(x) if isinstance(x, str) else x for x in vector
    )
    cipher = make_cipher(EncrId.AES_GCM_16, key + salt)
    header, seq_hi = _esp_frame(aad)
    packet = header + iv + ciphertext + tag
    assert cipher.open(packet, seq_hi) == plaintext
    # seal takes the IV from the 64-bit counter it is given
    assert cipher.seal(header, seq_hi, int.from_bytes(iv, "big"), plaintext) == packet


def test_aes_gcm_esn_vector_needs_the_high_half():
    key, salt, iv, aad, _plaintext, ciphertext, tag = (bytes.fromhex(x) for x in GCM_ESP_VECTORS[0][1:])
    cipher = make_cipher(EncrId.AES_GCM_16, key + salt)
    header, seq_hi = _esp_frame(aad)
    packet = header + iv + ciphertext + tag
    assert seq_hi == b"\x87\x65\x43\x21" and cipher.open(packet, seq_hi) is not None
    assert cipher.open(packet, b"") is None
    assert cipher.open(packet, b"\x87\x65\x43\x20") is None


# RFC 8439 §2.8.2 AEAD vector. Its 12-octet AAD and 12-octet nonce read as an RFC 7634 ESP
# packet with ESN: SPI 0x50515253, seq_hi 0xc0c1c2c3, seq_lo 0xc4c5c6c7, salt 07000000, IV 4041..47.
CHACHA_KEY = bytes(range(0x80, 0xA0))
CHACHA_SALT = bytes.fromhex("07000000")
CHACHA_IV = bytes.fromhex("4041424344454647")
CHACHA_PLAINTEXT = (
    b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future,"
    b" sunscreen would be it."
)
CHACHA_CIPHERTEXT = bytes.fromhex(
    "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
    "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
    "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
    "3ff4def08e4b7a9de576d26586cec64b6116"
)
CHACHA_TAG = bytes.fromhex("1ae10b594f09e26a7e902ecbd0600691")


def test_chacha20_poly1305_esp_framing_matches_rfc8439_vector():
    cipher = make_cipher(EncrId.CHACHA20_POLY1305, CHACHA_KEY + CHACHA_SALT)
    header = bytes.fromhex("50515253c4c5c6c7")
    seq_hi = bytes.fromhex("c0c1c2c3")
    packet = header + CHACHA_IV + CHACHA_CIPHERTEXT + CHACHA_TAG
    assert cipher.seal(header, seq_hi, int.from_bytes(CHACHA_IV, "big"), CHACHA_PLAINTEXT) == packet
    assert cipher.open(packet, seq_hi) == CHACHA_PLAINTEXT
    tampered = packet[:20] + bytes([packet[20] ^ 1]) + packet[21:]
    assert cipher.open(tampered, seq_hi) is None


# RFC 4868 §2.7.2 authenticator vectors (AUTH256-1, AUTH256-2, AUTH384-1, AUTH512-1) and
# RFC 2202 test case 1 truncated to 96 bits (RFC 2404).
HMAC_VECTORS = [
    (IntegId.HMAC_SHA2_256_128, b"\x0b" * 32, b"Hi There", "198a607eb44bfbc69903a0f1cf2bbdc5"),
    (
        IntegId.HMAC_SHA2_256_128,
        b"JefeJefeJefeJefeJefeJefeJefeJefe",
        b"what do ya want for nothing?",
        "167f928588c5cc2eef8e3093caa0e87c",
    ),
    (
        IntegId.HMAC_SHA2_384_192,
        b"\x0b" * 48,
        b"Hi There",
        "b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973",
    ),
    (
        IntegId.HMAC_SHA2_512_256,
        b"\x0b" * 64,
        b"Hi There",
        "637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8",
    ),
    (IntegId.HMAC_SHA1_96, b"\x0b" * 20, b"Hi There", "b617318655057264e28bc0b6"),
]


@pytest.mark.parametrize("integ, key, data, expected", HMAC_VECTORS, ids=lambda v: getattr(v, "name", None))
def test_hmac_truncation_matches_published_vectors(integ, key, data, expected):
    cipher = make_cipher(EncrId.AES_CBC, b"\x00" * 16, integ, key)
    assert cipher.icv(data) == bytes.fromhex(expected)
    assert cipher.icv(data[:3], data[3:]) == bytes.fromhex(expected)


@pytest.mark.parametrize("seq_hi", [b"", b"\x00\x00\x00\x07"], ids=["no-esn", "esn"])
def test_cbc_hmac_packet_layout_checked_with_independent_primitives(seq_hi):
    aes_key, mac_key = bytes(range(32)), bytes(range(100, 132))
    cipher = make_cipher(EncrId.AES_CBC, aes_key, IntegId.HMAC_SHA2_256_128, mac_key)
    header = struct.pack("!II", 0xCAFE0001, 42)
    payload = bytes(range(64))
    packet = cipher.seal(header, seq_hi, 42, payload)

    assert packet[:8] == header
    iv, ciphertext, icv = packet[8:24], packet[24:-16], packet[-16:]
    mac = hmac.HMAC(mac_key, hashes.SHA256())
    mac.update(header + iv + ciphertext + seq_hi)  # RFC 4303 §3.3.2.1: seq_hi only in the ICV
    assert icv == mac.finalize()[:16]
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    assert decryptor.update(ciphertext) + decryptor.finalize() == payload
    assert cipher.open(packet, seq_hi) == payload
    assert cipher.open(packet, b"\x00\x00\x00\x08") is None
    assert cipher.open(packet[:-1] + bytes([packet[-1] ^ 0x80]), seq_hi) is None


def test_cbc_ivs_are_fresh_per_packet():
    cipher = cipher_for(CIPHER_CASES[3])
    header = struct.pack("!II", 1, 1)
    ivs = {cipher.seal(header, b"", 1, bytes(16))[8:24] for _attempt in range(64)}
    assert len(ivs) == 64


@pytest.mark.parametrize("case", CIPHER_CASES, ids=CIPHER_IDS)
def test_repr_never_shows_key_material(case):
    cipher = cipher_for(case, seed=0xA5)
    text = repr(cipher)
    _name, _encr, key_len, _integ, integ_len = case
    for secret_len in (key_len, integ_len):
        secret = bytes((0xA5 + i) & 0xFF for i in range(secret_len))
        if secret_len:
            assert secret.hex()[:8] not in text
            assert repr(secret)[2:10] not in text
    assert cipher.name in text


def test_key_lengths():
    assert encr_key_length(EncrId.AES_GCM_16, 128) == 20
    assert encr_key_length(EncrId.AES_GCM_16, 256) == 36
    assert encr_key_length(EncrId.CHACHA20_POLY1305) == 36
    assert encr_key_length(EncrId.AES_CBC, 192) == 24
    assert integ_key_length(IntegId.NONE) == 0
    assert integ_key_length(IntegId.HMAC_SHA2_384_192) == 48
    with pytest.raises(ValueError, match="key length"):
        encr_key_length(EncrId.AES_GCM_16)
    with pytest.raises(ValueError, match="AES_CTR"):
        encr_key_length(EncrId.AES_CTR, 128)


@pytest.mark.parametrize(
    "encr, key, integ, integ_key, message",
    [
        (EncrId.AES_GCM_16, b"k" * 17, IntegId.NONE, b"", "20, 28 or 36"),
        (EncrId.AES_GCM_16, b"k" * 4, IntegId.NONE, b"", "20, 28 or 36"),
        (EncrId.AES_GCM_16, b"k" * 20, IntegId.HMAC_SHA2_256_128, b"m" * 32, "no integrity"),
        (EncrId.CHACHA20_POLY1305, b"k" * 32, IntegId.NONE, b"", "36 octets"),
        (EncrId.AES_CBC, b"k" * 20, IntegId.HMAC_SHA2_256_128, b"m" * 32, "16, 24 or 32"),
        (EncrId.AES_CBC, b"k" * 16, IntegId.NONE, b"", "integrity"),
        (EncrId.AES_CBC, b"k" * 16, IntegId.HMAC_SHA2_256_128, b"m" * 31, "32 octets"),
        (EncrId.AES_GCM_8, b"k" * 20, IntegId.NONE, b"", "AES_GCM_8"),
        (99, b"k" * 16, IntegId.NONE, b"", "99"),
    ],
)
def test_make_cipher_rejects_bad_configuration_without_echoing_keys(encr, key, integ, integ_key, message):
    with pytest.raises(ValueError, match=message) as info:
        make_cipher(encr, key, integ, integ_key)
    assert "kkkk" not in str(info.value)
    assert "mmmm" not in str(info.value)


def test_cipher_classes_and_alignment():
    gcm = cipher_for(CIPHER_CASES[0])
    cbc = cipher_for(CIPHER_CASES[3])
    assert isinstance(gcm, AeadCipher)
    assert (gcm.iv_len, gcm.icv_len, gcm.align, gcm.key_bits) == (8, 16, 4, 128)
    assert isinstance(cbc, CbcHmacCipher)
    assert (cbc.iv_len, cbc.icv_len, cbc.align, cbc.key_bits) == (16, 16, 16, 128)
