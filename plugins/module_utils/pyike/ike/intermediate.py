"""Additional key exchanges (RFC 9370) in IKE_INTERMEDIATE exchanges (RFC 9242). A mixin of the Engine.

After IKE_SA_INIT each negotiated additional key exchange (e.g. ML-KEM-768 as ADDKE1) runs in its own
IKE_INTERMEDIATE exchange, protected by the keys of the previous step; then every IKE SA key is
derived again (RFC 9370 §2.2.2). IKE_AUTH signs IntAuth, a PRF chain over the plaintext of every
IKE_INTERMEDIATE message (RFC 9242 §3.3.2), so that those exchanges are authenticated too.
"""

from __future__ import annotations

import struct
from typing import Any, List

from ..crypto.errors import CryptoError
from ..crypto.keys import prf, update_after_additional_ke
from ..crypto.sk import sk_ciphers
from ..ids import ExchangeType, NotifyType, PayloadType
from ..wire.key_exchange import KePayload
from ..wire.message import encode_sk_prefix, find_payload
from ..wire.notify import NotifyPayload
from .sa import IkeSa


class IntermediateMixin:
    def _int_auth_add(self, sa: IkeSa, from_initiator: bool) -> None:
        """Extend IntAuth_i or IntAuth_r with the message just built or opened (sa.last_plain):
        IntAuth_xN = prf(SK_px(N), IntAuth_x(N-1) | A | P), where A is the header and SK payload
        header with lengths counting only the plaintext, and P the plaintext inner payloads."""
        header, first_inner, plain = sa.last_plain
        aad = encode_sk_prefix(header, first_inner, len(plain))
        key = sa.keys.sk_pi if from_initiator else sa.keys.sk_pr
        if from_initiator:
            sa.int_auth_i = prf(sa.selected.prf, key, sa.int_auth_i + aad + plain)
        else:
            sa.int_auth_r = prf(sa.selected.prf, key, sa.int_auth_r + aad + plain)

    def _int_auth(self, sa: IkeSa, ike_auth_mid: int) -> bytes:
        """IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID; empty without IKE_INTERMEDIATE (RFC 9242 §3.3.2)."""
        if not sa.intermediate_done:
            return b""
        return sa.int_auth_i + sa.int_auth_r + struct.pack("!I", ike_auth_mid)

    def _update_keys_after_ke(self, sa: IkeSa, secret: bytes) -> None:
        sa.keys = update_after_additional_ke(
            sa.selected, sa.keys, secret, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r
        )
        sa.cipher_out, sa.cipher_in = sk_ciphers(sa.selected, sa.keys, sa.initiator)
        self._new_reassembler(sa)
        sa.intermediate_done += 1

    # --- initiator -------------------------------------------------------------------------
    def _send_intermediate(self, sa: IkeSa, now: float) -> None:
        method = sa.additional_kes[0][1]
        try:
            sa.key_exchange = self.new_ke(method)
        except CryptoError as exc:
            self._fail(sa, "IKE_INTERMEDIATE", "cannot run additional key exchange: %s" % exc)
            self._drop_sa(sa, "additional key exchange unavailable")
            return
        payloads: List[Any] = [KePayload(method, sa.key_exchange.public_bytes())]
        self._request(sa, ExchangeType.IKE_INTERMEDIATE, payloads,
                      lambda message, inner, at: self._on_intermediate_response(sa, inner, at), now)  # fmt: skip
        self._int_auth_add(sa, from_initiator=True)

    def _on_intermediate_response(self, sa: IkeSa, payloads: List[Any], now: float) -> None:
        self._int_auth_add(sa, from_initiator=False)
        method = sa.additional_kes.pop(0)[1]
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            if ke_payload is None or ke_payload.group != method:
                raise CryptoError("the response must carry a KE payload of the negotiated method")
            secret = sa.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            self._fail(sa, "IKE_INTERMEDIATE", "invalid response: %s" % exc)
            self._drop_sa(sa, "additional key exchange failed")
            return
        sa.key_exchange = None
        self._update_keys_after_ke(sa, secret)
        if sa.additional_kes:
            self._send_intermediate(sa, now)
        else:
            self._send_auth_request(sa, now)

    # --- responder -------------------------------------------------------------------------
    def _on_intermediate_request(self, sa: IkeSa, request: Any, payloads: List[Any], now: float) -> None:
        self._int_auth_add(sa, from_initiator=True)
        ke_payload = find_payload(payloads, PayloadType.KE)
        if not sa.additional_kes or ke_payload is None or ke_payload.group != sa.additional_kes[0][1]:
            self._fail(sa, "IKE_INTERMEDIATE", "unexpected or mismatched additional key exchange")
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            self._drop_sa(sa, "invalid IKE_INTERMEDIATE", quiet=True)
            return
        method = sa.additional_kes.pop(0)[1]
        try:
            public, secret = self.new_ke(method).respond(ke_payload.data)
        except CryptoError as exc:
            self._fail(sa, "IKE_INTERMEDIATE", "invalid KE payload: %s" % exc)
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            self._drop_sa(sa, "invalid IKE_INTERMEDIATE", quiet=True)
            return
        self._respond(sa, request, [KePayload(method, public)])
        self._int_auth_add(sa, from_initiator=False)
        self._update_keys_after_ke(sa, secret)
