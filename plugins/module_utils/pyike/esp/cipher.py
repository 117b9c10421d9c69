"""Per-SA ESP transforms, built once from their key material.

Supported (all in tunnel and transport framing alike, the cipher only sees the ESP packet):

* ENCR_AES_GCM_16 (RFC 4106): key material = AES key | 4-octet salt, 8-octet explicit IV,
  nonce = salt | IV, 16-octet ICV.
* ENCR_CHACHA20_POLY1305 (RFC 7634): key material = 32-octet key | 4-octet salt, same layout.
* ENCR_AES_CBC (RFC 3602) with AUTH_HMAC_SHA2_256_128 / 384_192 / 512_256 (RFC 4868) or
  AUTH_HMAC_SHA1_96 (RFC 2404): random 16-octet IV, ICV over SPI | seq | IV | ciphertext.

Every cipher turns a ready payload (inner packet, padding, pad length, next header) into the
whole ESP packet ``SPI | Sequence Number | IV | ciphertext | ICV`` and back. With extended
sequence numbers the high 32 bits are never sent: they go into the AAD between SPI and the low
half (RFC 4106 §5, RFC 7634 §2.1) or are appended to the ICV input (RFC 4303 §3.3.2.1).
"""

from __future__ import annotations

import os
import struct
from typing import Optional, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from ..ids import EncrId, IntegId

ESP_HEADER_LEN = 8  # SPI + sequence number (RFC 4303 §2)
SALT_LEN = 4  # RFC 4106 §8.1, RFC 7634 §2
AEAD_IV_LEN = 8
AEAD_ICV_LEN = 16
AES_BLOCK = 16

_U64 = struct.Struct("!Q")

# name, hash, key octets, ICV octets (RFC 4868 §2.6, RFC 2404 §2)
_INTEG = {
    IntegId.HMAC_SHA1_96: ("HMAC_SHA1_96", hashes.SHA1, 20, 12),
    IntegId.HMAC_SHA2_256_128: ("HMAC_SHA2_256_128", hashes.SHA256, 32, 16),
    IntegId.HMAC_SHA2_384_192: ("HMAC_SHA2_384_192", hashes.SHA384, 48, 24),
    IntegId.HMAC_SHA2_512_256: ("HMAC_SHA2_512_256", hashes.SHA512, 64, 32),
}
_AES_KEY_OCTETS = (16, 24, 32)


class AeadCipher:
    """AES-GCM-16 or ChaCha20-Poly1305 for ESP.

    The IV is the 64-bit sequence number: unique per SA key, which is all RFC 4106 §3.1 and
    RFC 7634 §2 ask of it.
    """

    __slots__ = ("_aead", "_salt", "key_bits", "name")

    iv_len = AEAD_IV_LEN
    icv_len = AEAD_ICV_LEN
    # RFC 4106 §3.2 and RFC 7634 §2: the payload is padded to a 4-octet boundary only.
    align = 4
    # a stream cipher: any ciphertext length is well formed
    block = 1

    def __init__(self, name: str, aead: Union[AESGCM, ChaCha20Poly1305], salt: bytes, key_bits: int):
        self.name = name
        self.key_bits = key_bits
        self._aead = aead
        self._salt = salt

    def __repr__(self) -> str:
        return f"<AeadCipher {self.name} key_bits={self.key_bits}>"

    def seal(self, header: bytes, seq_hi: bytes, seq: int, payload: bytes) -> bytes:
        """Encrypt ``payload`` into a whole ESP packet; ``seq_hi`` is b"" without ESN."""
        iv = _U64.pack(seq)
        aad = header[:4] + seq_hi + header[4:] if seq_hi else header
        return header + iv + self._aead.encrypt(self._salt + iv, payload, aad)

    def open(self, packet: bytes, seq_hi: bytes) -> Optional[bytes]:
        """The decrypted payload of a whole ESP packet, or None when the ICV does not verify.

        The caller guarantees the packet holds at least header, IV and ICV.
        """
        aad = packet[:4] + seq_hi + packet[4:8] if seq_hi else packet[:8]
        try:
            return self._aead.decrypt(self._salt + packet[8:16], packet[16:], aad)
        except InvalidTag:
            return None


class CbcHmacCipher:
    """AES-CBC (RFC 3602) with a truncated HMAC (RFC 4868, RFC 2404), encrypt-then-MAC."""

    __slots__ = ("_aes", "_mac", "icv_len", "integ_name", "key_bits", "name")

    iv_len = AES_BLOCK
    align = AES_BLOCK
    block = AES_BLOCK

    def __init__(self, aes_key: bytes, integ: IntegId, integ_key: bytes):
        integ_name, hash_cls, _key_len, icv_len = _INTEG[integ]
        self.name = "AES_CBC"
        self.integ_name = integ_name
        self.key_bits = len(aes_key) * 8
        self.icv_len = icv_len
        self._aes = algorithms.AES(aes_key)
        # keyed once; every packet works on a copy of this state (RFC 2104 inner/outer pads)
        self._mac = hmac.HMAC(integ_key, hash_cls())

    def __repr__(self) -> str:
        return f"<CbcHmacCipher {self.name} key_bits={self.key_bits} {self.integ_name}>"

    def icv(self, *parts: bytes) -> bytes:
        """The truncated HMAC of the concatenated ``parts`` (RFC 4868 §2.3: leftmost bits)."""
        mac = self._mac.copy()
        for part in parts:
            mac.update(part)
        return mac.finalize()[: self.icv_len]

    def seal(self, header: bytes, seq_hi: bytes, seq: int, payload: bytes) -> bytes:
        """Encrypt a block-aligned ``payload`` into a whole ESP packet (``seq`` is unused)."""
        iv = os.urandom(AES_BLOCK)  # RFC 3602 §2.4: unpredictable
        encryptor = Cipher(self._aes, modes.CBC(iv)).encryptor()
        ciphertext = encryptor.update(payload) + encryptor.finalize()
        # RFC 4303 §3.3.2.1: ESN high bits are appended for the ICV only, never sent
        icv = self.icv(header, iv, ciphertext, seq_hi)
        return b"".join((header, iv, ciphertext, icv))

    def open(self, packet: bytes, seq_hi: bytes) -> Optional[bytes]:
        """Verify the ICV first (RFC 4303 §3.4.4), then decrypt; None when it does not verify.

        The caller guarantees the ciphertext is a non-empty multiple of the block size.
        """
        end = len(packet) - self.icv_len
        view = memoryview(packet)
        expected = self.icv(view[:end], seq_hi)
        if not constant_time.bytes_eq(expected, packet[end:]):
            return None
        decryptor = Cipher(self._aes, modes.CBC(packet[8:24])).decryptor()
        return decryptor.update(view[24:end]) + decryptor.finalize()


EspCipher = Union[AeadCipher, CbcHmacCipher]


def encr_key_length(encr: EncrId, key_bits: Optional[int] = None) -> int:
    """Octets of KEYMAT the ENCR transform takes (RFC 7296 §2.17), salt included.

    ``key_bits`` is the Key Length attribute: required for AES, absent for ChaCha20 (RFC 7634 §2).
    """
    if encr == EncrId.CHACHA20_POLY1305:
        if key_bits not in (None, 256):
            raise ValueError(f"ESP {encr.name}: takes no key length attribute, got {key_bits}")
        return 32 + SALT_LEN
    if encr in (EncrId.AES_GCM_16, EncrId.AES_CBC):
        if key_bits not in (128, 192, 256):
            raise ValueError(f"ESP {EncrId(encr).name}: key length must be 128, 192 or 256, got {key_bits}")
        salt = SALT_LEN if encr == EncrId.AES_GCM_16 else 0
        return key_bits // 8 + salt
    raise ValueError(f"ESP: encryption transform {_describe(encr, EncrId)} is not supported")


def integ_key_length(integ: IntegId) -> int:
    """Octets of KEYMAT the INTEG transform takes (0 for NONE, used with AEAD)."""
    if integ == IntegId.NONE:
        return 0
    if integ not in _INTEG:
        raise ValueError(f"ESP: integrity transform {_describe(integ, IntegId)} is not supported")
    return _INTEG[integ][2]


def make_cipher(
    encr: EncrId,
    encr_key: bytes,
    integ: IntegId = IntegId.NONE,
    integ_key: bytes = b"",
) -> EspCipher:
    """Build the cipher object of one SA direction; the key length follows from ``encr_key``.

    Raises ValueError (naming the transform, never the key) for unsupported transforms or key
    material of the wrong length.
    """
    encr_key = bytes(encr_key)
    integ_key = bytes(integ_key)
    if encr in (EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305):
        name = EncrId(encr).name
        if integ != IntegId.NONE:
            raise ValueError(f"ESP {name}: an AEAD transform takes no integrity transform (RFC 4303 §3.2)")
        key, salt = encr_key[:-SALT_LEN], encr_key[-SALT_LEN:]
        if encr == EncrId.CHACHA20_POLY1305:
            if len(encr_key) != 32 + SALT_LEN:
                raise ValueError(
                    f"ESP {name}: key material must be 36 octets (key + salt), got {len(encr_key)}"
                )
            return AeadCipher(name, ChaCha20Poly1305(key), salt, 256)
        if len(key) not in _AES_KEY_OCTETS or len(encr_key) <= SALT_LEN:
            raise ValueError(
                f"ESP {name}: key material must be 20, 28 or 36 octets (key + salt), got {len(encr_key)}"
            )
        return AeadCipher(name, AESGCM(key), salt, len(key) * 8)
    if encr == EncrId.AES_CBC:
        if len(encr_key) not in _AES_KEY_OCTETS:
            raise ValueError(f"ESP AES_CBC: key must be 16, 24 or 32 octets, got {len(encr_key)}")
        if integ not in _INTEG:
            raise ValueError(
                f"ESP AES_CBC: needs a supported integrity transform, got {_describe(integ, IntegId)}"
            )
        want = _INTEG[integ][2]
        if len(integ_key) != want:
            raise ValueError(
                f"ESP AES_CBC: {_INTEG[integ][0]} key must be {want} octets, got {len(integ_key)}"
            )
        return CbcHmacCipher(encr_key, integ, integ_key)
    raise ValueError(f"ESP: encryption transform {_describe(encr, EncrId)} is not supported")


def _describe(value: int, enum: type) -> str:
    try:
        return f"{enum(value).name} ({int(value)})"
    except ValueError:
        return str(int(value))
