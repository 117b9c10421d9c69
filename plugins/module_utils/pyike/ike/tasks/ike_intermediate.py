"""IKE_INTERMEDIATE (RFC 9242) carrying the additional key exchanges of RFC 9370 §2.2.2.

After IKE_SA_INIT each negotiated additional key exchange (e.g. ML-KEM-768 as ADDKE1) runs in its own
IKE_INTERMEDIATE exchange, protected by the keys of the step before; then every IKE SA key is derived
again (RFC 9370 §2.2.2). IKE_AUTH signs IntAuth, a PRF chain over the plaintext of every
IKE_INTERMEDIATE message (RFC 9242 §3.3.2), so those exchanges are authenticated too.
"""

from __future__ import annotations

import struct
from typing import List, Optional

from ...crypto.errors import CryptoError
from ...crypto.keys import prf, update_after_additional_ke
from ...crypto.sk import sk_ciphers
from ...ids import ExchangeType, NotifyType, PayloadType
from ...wire.key_exchange import KePayload
from ...wire.message import encode_sk_prefix, find_payload
from ...wire.payload import Payload
from .. import negotiate
from .base import DONE, Refused, Task


def int_auth_add(sa, from_initiator: bool, corrupt: bool = False) -> None:
    """Extend IntAuth_i or IntAuth_r with the message just built or opened (sa.last_plain):
    IntAuth_xN = prf(SK_px(N), IntAuth_x(N-1) | A | P), where A is the header and SK payload header
    with lengths counting only the plaintext, and P the plaintext inner payloads (RFC 9242 §3.3.2)."""
    header, first_inner, plain = sa.last_plain
    aad = encode_sk_prefix(header, first_inner, len(plain))
    key = sa.keys.sk_pi if from_initiator else sa.keys.sk_pr
    if corrupt:  # the `corrupt name=int_auth` impairment: as if another message had been seen
        plain = bytes(len(plain))
    if from_initiator:
        sa.int_auth_i = prf(sa.selected.prf, key, sa.int_auth_i + aad + plain)
    else:
        sa.int_auth_r = prf(sa.selected.prf, key, sa.int_auth_r + aad + plain)


def int_auth(sa) -> bytes:
    """IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID, appended to the octets AUTH signs; empty
    without IKE_INTERMEDIATE (RFC 9242 §3.3.2)."""
    if not sa.intermediate_done:
        return b""
    return sa.int_auth_i + sa.int_auth_r + struct.pack("!I", sa.ike_auth_mid)


def update_keys(engine, sa, secret: bytes) -> None:
    """RFC 9370 §2.2.2: every IKE SA key again, from SK_d and the new shared secret."""
    sa.keys = update_after_additional_ke(
        sa.selected, sa.keys, secret, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r
    )
    sa.cipher_out, sa.cipher_in = sk_ciphers(sa.selected, sa.keys, sa.initiator, engine.iv_source())
    engine.new_reassembler(sa)
    sa.intermediate_done += 1


class IkeIntermediate(Task):
    """One additional key exchange of the IKE SA's setup, the first of those still to run."""

    exchange = ExchangeType.IKE_INTERMEDIATE

    def __init__(self, engine, sa) -> None:
        super().__init__(engine, sa)
        self.key_exchange = None
        self.public = b""
        self.secret = b""

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        method = self.sa.additional_kes[0][1]
        try:
            self.key_exchange = self.engine.new_ke(method)
        except CryptoError as exc:
            self.engine.fail(self.sa, "IKE_INTERMEDIATE", "cannot run additional key exchange: %s" % exc)
            self.engine.drop_sa(self.sa, "additional key exchange unavailable", now=now)
            return None
        return [KePayload(method, self.key_exchange.public_bytes())]

    def request_sent(self) -> None:
        int_auth_add(self.sa, from_initiator=True, corrupt=self.engine.impair.corrupts("int_auth"))

    def process_response(self, payloads: List[Payload], now: float) -> str:
        sa = self.sa
        int_auth_add(sa, from_initiator=False)
        method = sa.additional_kes.pop(0)[1]
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            secret = negotiate.additional_secret(self.key_exchange, ke_payload, method)
        except CryptoError as exc:
            self.engine.fail(sa, "IKE_INTERMEDIATE", "invalid response: %s" % exc)
            self.engine.drop_sa(sa, "additional key exchange failed", now=now)
            return DONE
        self.key_exchange = None
        update_keys(self.engine, sa, secret)
        return DONE

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        sa = self.sa
        int_auth_add(sa, from_initiator=True, corrupt=self.engine.impair.corrupts("int_auth"))
        ke_payload = find_payload(payloads, PayloadType.KE)
        if not sa.additional_kes or ke_payload is None or ke_payload.group != sa.additional_kes[0][1]:
            self._refuse("unexpected or mismatched additional key exchange", now)
        method = sa.additional_kes.pop(0)[1]
        try:
            self.public, self.secret = self.engine.new_ke(method).respond(ke_payload.data)
        except CryptoError as exc:
            self._refuse("invalid KE payload: %s" % exc, now)
        self.method = method

    def _refuse(self, reason: str, now: float) -> None:
        self.engine.fail(self.sa, "IKE_INTERMEDIATE", reason)
        self.engine.drop_sa(self.sa, "invalid IKE_INTERMEDIATE", quiet=True, now=now)
        raise Refused(NotifyType.INVALID_SYNTAX)

    def build_response(self, now: float) -> List[Payload]:
        return [KePayload(self.method, self.public)]

    def response_sent(self, now: float) -> None:
        int_auth_add(self.sa, from_initiator=False)
        update_keys(self.engine, self.sa, self.secret)
        self.secret = b""
