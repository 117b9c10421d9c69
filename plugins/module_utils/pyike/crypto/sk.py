"""Protection of the Encrypted (SK) payload body, one direction at a time.

Body layout (RFC 7296 §3.14): IV | encrypted(payloads | padding | pad length) | ICV.

* AES-CBC + HMAC (RFC 7296 §3.14): random IV of one block, padding to the block size, ICV =
  truncated HMAC over everything from the IKE header through the ciphertext.
* AES-GCM (RFC 5282) and ChaCha20-Poly1305 (RFC 7634): 8-octet explicit IV, nonce = 4-octet
  salt (end of the ENCR key material) | IV, AAD = IKE header through the SK payload header
  (RFC 5282 §5.1), no padding needed, ICV = the 16-octet tag.

The caller builds the headers: it asks :meth:`SkCipher.body_length` for the body size, writes
the lengths, then seals with those header octets as ``aad_prefix``.  For SKF (RFC 7383 §2.5)
the prefix also covers the Fragment Number and Total Fragments fields.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Tuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .auth import constant_time_equal
from .errors import CryptoError, IntegrityError
from .keys import IkeKeys
from .selection import SelectedProposal
from .transforms import MODE_CBC, MODE_GCM, encr_transform, integ_transform


class SkCipher:
    """Seals and opens SK payload bodies for one direction of one IKE SA.

    ``encr_key`` is SK_ei or SK_er (AEAD: key followed by the 4-octet salt), ``integ_key`` is
    SK_ai or SK_ar (empty, with ``integ_id`` None or 0, for AEAD). ``random_bytes`` draws the IVs (the
    engine's injected randomness, so that in-process exchanges are reproducible from their seeds).
    """

    def __init__(
        self,
        encr_id: int,
        key_length: Optional[int],
        integ_id: Optional[int],
        encr_key: bytes,
        integ_key: bytes = b"",
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._random = random_bytes
        self._encr = encr_transform(encr_id, key_length)
        encr_key = bytes(encr_key)
        integ_key = bytes(integ_key)
        if len(encr_key) != self._encr.keymat_bytes:
            raise CryptoError(f"{self._encr.name} needs {self._encr.keymat_bytes} octets of key material")
        if self._encr.aead:
            if integ_id or integ_key:
                raise CryptoError(f"{self._encr.name} is an AEAD and takes no integrity algorithm")
            self._integ = None
            self._icv_length = self._encr.icv_bytes
            self._salt = encr_key[self._encr.key_bytes :]
            cipher_key = encr_key[: self._encr.key_bytes]
            self._aead = AESGCM(cipher_key) if self._encr.mode == MODE_GCM else ChaCha20Poly1305(cipher_key)
        else:
            if not integ_id:
                raise CryptoError(f"{self._encr.name} needs an integrity algorithm")
            self._integ = integ_transform(integ_id)
            if len(integ_key) != self._integ.key_bytes:
                raise CryptoError(f"{self._integ.name} needs a {self._integ.key_bytes}-octet key")
            self._icv_length = self._integ.icv_bytes
            self._mac_hash = self._integ.hash_class
            self._cbc_key = encr_key
            self._integ_key = integ_key

    @property
    def iv_length(self) -> int:
        return self._encr.iv_bytes

    @property
    def icv_length(self) -> int:
        return self._icv_length

    def _padded_length(self, plain_len: int) -> int:
        if self._encr.mode == MODE_CBC:
            block = self._encr.block_bytes
            return (plain_len + 1 + block - 1) // block * block
        return plain_len + 1  # AEAD: only the Pad Length octet, no padding

    def body_length(self, plain_len: int) -> int:
        """Octets :meth:`seal` returns for ``plain_len`` octets of inner payloads."""
        if plain_len < 0:
            raise CryptoError("plaintext length cannot be negative")
        return self.iv_length + self._padded_length(plain_len) + self._icv_length

    def seal(self, plain: bytes, aad_prefix: bytes, iv: Optional[bytes] = None) -> bytes:
        """Encrypt and authenticate; ``iv`` is for known-answer tests (default: from ``random_bytes``)."""
        plain = bytes(plain)
        aad_prefix = bytes(aad_prefix)
        if iv is None:
            iv = self._random(self.iv_length)
        elif len(iv) != self.iv_length:
            raise CryptoError(f"{self._encr.name} uses a {self.iv_length}-octet IV")
        pad_length = self._padded_length(len(plain)) - len(plain) - 1
        padded = plain + bytes(pad_length) + bytes((pad_length,))
        if self._encr.aead:
            return bytes(iv) + self._aead.encrypt(self._salt + bytes(iv), padded, aad_prefix)
        encryptor = Cipher(algorithms.AES(self._cbc_key), modes.CBC(bytes(iv))).encryptor()
        ciphertext = encryptor.update(padded) + encryptor.finalize()
        body = bytes(iv) + ciphertext
        return body + self._icv(aad_prefix + body)

    def open(self, aad_prefix: bytes, body: bytes) -> bytes:
        """Verify and decrypt a body; :class:`IntegrityError` on any failure, without detail."""
        aad_prefix = bytes(aad_prefix)
        body = bytes(body)
        iv_length = self.iv_length
        if self._encr.aead:
            if len(body) < iv_length + 1 + self._icv_length:
                raise IntegrityError()
            iv = body[:iv_length]
            try:
                padded = self._aead.decrypt(self._salt + iv, body[iv_length:], aad_prefix)
            except InvalidTag:
                raise IntegrityError() from None
        else:
            ciphertext_length = len(body) - iv_length - self._icv_length
            if ciphertext_length <= 0 or ciphertext_length % self._encr.block_bytes:
                raise IntegrityError()
            authenticated, icv = body[: -self._icv_length], body[-self._icv_length :]
            if not constant_time_equal(self._icv(aad_prefix + authenticated), icv):
                raise IntegrityError()
            decryptor = Cipher(algorithms.AES(self._cbc_key), modes.CBC(body[:iv_length])).decryptor()
            padded = decryptor.update(body[iv_length : -self._icv_length]) + decryptor.finalize()
        pad_length = padded[-1]
        if pad_length + 1 > len(padded):
            raise IntegrityError()
        return padded[: len(padded) - pad_length - 1]

    def _icv(self, data: bytes) -> bytes:
        mac = hmac.HMAC(self._integ_key, self._mac_hash())
        mac.update(data)
        return mac.finalize()[: self._icv_length]

    def __repr__(self) -> str:
        integ = self._integ.name if self._integ else "none"
        return f"<SkCipher {self._encr.name}/{integ}>"


class IvStream:
    """IVs from a seed: the AES-256-CTR keystream under it, unpredictable to anyone without the seed (CBC
    needs unpredictable IVs, RFC 7296 §3.14) and never repeating (GCM needs unique ones, RFC 5282 §3.1).
    An IKE SA gets its own, seeded from the engine's injected randomness, so the IVs of in-process
    exchanges are reproducible and the count of IVs one SA draws changes no other random value."""

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise CryptoError("an IV stream needs a 32-octet seed")
        self._encryptor = Cipher(algorithms.AES(bytes(seed)), modes.CTR(bytes(16))).encryptor()

    def __call__(self, size: int) -> bytes:
        return self._encryptor.update(bytes(size))


def sk_ciphers(
    selected: SelectedProposal,
    keys: IkeKeys,
    initiator: bool,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> Tuple[SkCipher, SkCipher]:
    """(outbound, inbound) SK ciphers for our role in an IKE SA (RFC 7296 §2.14).

    The initiator sends with SK_ei/SK_ai and receives with SK_er/SK_ar; the responder the reverse.
    """
    i_to_r = SkCipher(
        selected.encr, selected.key_length, selected.integ, keys.sk_ei, keys.sk_ai, random_bytes
    )
    r_to_i = SkCipher(
        selected.encr, selected.key_length, selected.integ, keys.sk_er, keys.sk_ar, random_bytes
    )
    return (i_to_r, r_to_i) if initiator else (r_to_i, i_to_r)
