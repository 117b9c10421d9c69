"""The AUTH payload computation of IKE_AUTH (RFC 7296 §2.15).

Both peers sign (or MAC) the same "signed octets"; what differs per method is how the AUTH
data is produced from them.  :class:`Authenticator` is that seam: :class:`PskAuthenticator`
implements Shared Key Message Integrity Code, and certificate signatures (RFC 7427 Digital
Signature, method 14) implement the same two methods over the same signed octets.
"""

from __future__ import annotations

import hmac as _constant_time

from ..ids import AuthMethod
from .errors import CryptoError
from .keys import prf

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15, 17 ASCII octets without terminator


def signed_octets(
    real_message: bytes, peer_nonce: bytes, prf_id: int, sk_p: bytes, id_payload_body: bytes
) -> bytes:
    """InitiatorSignedOctets / ResponderSignedOctets of RFC 7296 §2.15.

    ``real_message`` is our whole first message (IKE_SA_INIT request or response) as sent,
    ``peer_nonce`` the peer's Nonce data, ``sk_p`` our SK_pi (initiator) or SK_pr (responder)
    and ``id_payload_body`` our ID payload without its 4-octet generic header (ID Type,
    RESERVED, identification data).  For the peer's AUTH pass the peer's message, our nonce,
    the peer's SK_p and the peer's ID payload body.
    """
    return bytes(real_message) + bytes(peer_nonce) + prf(prf_id, sk_p, id_payload_body)


def psk_auth(prf_id: int, psk: bytes, signed: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <signed octets>)."""
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), signed)


def constant_time_equal(a: bytes, b: bytes) -> bool:
    """Compare secrets without an early exit that would leak the matching prefix length."""
    return _constant_time.compare_digest(bytes(a), bytes(b))


class Authenticator:
    """Produces and checks AUTH payload data over signed octets for one method."""

    method: AuthMethod

    def build(self, signed: bytes) -> bytes:
        """AUTH data for our own AUTH payload."""
        raise NotImplementedError

    def verify(self, signed: bytes, auth_data: bytes) -> bool:
        """True if the peer's AUTH data is valid for ``signed``."""
        raise NotImplementedError


class PskAuthenticator(Authenticator):
    """Shared Key Message Integrity Code (method 2).  The PSK never appears in its repr."""

    method = AuthMethod.SHARED_KEY_MIC

    def __init__(self, prf_id: int, psk: bytes) -> None:
        if not isinstance(psk, (bytes, bytearray)):
            raise CryptoError("the pre-shared key must be bytes")
        if not psk:
            raise CryptoError("the pre-shared key must not be empty")
        self._prf_id = prf_id
        self._psk = bytes(psk)

    def build(self, signed: bytes) -> bytes:
        return psk_auth(self._prf_id, self._psk, signed)

    def verify(self, signed: bytes, auth_data: bytes) -> bool:
        return constant_time_equal(self.build(signed), auth_data)

    def __repr__(self) -> str:
        return f"PskAuthenticator(prf={self._prf_id}, psk=<hidden>)"
