"""Rekeying an IKE SA (RFC 7296 §1.3.2, §2.18): CREATE_CHILD_SA with an IKE proposal, a new SPI, nonces
and a key exchange (and RFC 9370 additional ones in IKE_FOLLOWUP_KE exchanges, followup_ke.py).

SKEYSEED of the new IKE SA comes from SK_d of the old one (§2.18). The new IKE SA inherits every Child
SA, the authentication, and the queued exchanges that concern Child SAs (manager.adopt); the initiator of
the rekey then deletes the old IKE SA, whose responder treats it as DELETING until that DELETE comes.
Simultaneous IKE SA rekeys (and an IKE SA rekey while IKE_FOLLOWUP_KE exchanges are pending) are
refused with TEMPORARY_FAILURE (§2.25, manager.admit) and tried again after a random delay, so one wins.
"""

from __future__ import annotations

import logging
from typing import List, Optional, Sequence

from ...crypto.errors import CryptoError
from ...crypto.keys import derive_ike_keys, rekey_skeyseed
from ...crypto.sk import sk_ciphers
from ...ids import ExchangeType, NotifyType, PayloadType, ProtocolId
from ...wire.key_exchange import KePayload, NoncePayload
from ...wire.message import find_payload
from ...wire.payload import Payload
from .. import lifetimes, negotiate
from ..events import IkeSaUp
from ..sa import ESTABLISHED
from .base import AGAIN, DONE, Refused, Task, errors_in, notify_name
from .followup_ke import FollowupError, FollowupInitiator, FollowupResponder, answer_followup
from .ike_delete import delete_ike_sa
from .ike_init import NONCE_SIZE

log = logging.getLogger("pyike.ike")


def rekeyed_sa(engine, old, initiator: bool, spi_i: bytes, spi_r: bytes, selected, nonce_i: bytes,
               nonce_r: bytes, secret: bytes, now: float, additional: Sequence[bytes] = ()):  # fmt: skip
    """The IKE SA that replaces `old` (§2.18): keys from old's SK_d, and everything old carried."""
    new = engine.new_sa(old.policy, initiator, spi_i, spi_r, old.local, old.remote, now)
    new.selected = selected
    new.nonce_i, new.nonce_r = nonce_i, nonce_r
    seed = rekey_skeyseed(old.selected.prf, old.keys.sk_d, secret, nonce_i, nonce_r, additional)
    new.keys = derive_ike_keys(selected, seed, nonce_i, nonce_r, spi_i, spi_r)
    new.cipher_out, new.cipher_in = sk_ciphers(selected, new.keys, initiator, engine.iv_source())
    # RFC 7383 support was negotiated for this peer; the successor keeps it (strongSwan inherits it too),
    # else ML-KEM's IKE_FOLLOWUP_KE messages (~1.3 kB) would go out as IP fragments after a rekey.
    new.fragmentation, new.max_datagram = old.fragmentation, old.max_datagram
    engine.new_reassembler(new)
    new.local_behind_nat, new.remote_behind_nat = old.local_behind_nat, old.remote_behind_nat
    new.peer_id = old.peer_id
    new.peer_cert, new.peer_auth = old.peer_cert, old.peer_auth  # the authentication carries over
    new.children, old.children = old.children, []
    for child in new.children:
        engine.child_owners[child.spi_in] = new
    new.move_to(ESTABLISHED)
    new.established_at = now
    new.next_keepalive_at, old.next_keepalive_at = old.next_keepalive_at, None
    lifetimes.schedule_ike(engine, new, now)
    new.reauth_at = old.reauth_at  # as strongSwan, an IKE SA rekey keeps the reauthentication time
    for attribute, back in (("reauth_by", "reauth_of"), ("reauth_of", "reauth_by")):
        linked = getattr(old, attribute)  # a reauthentication under way goes on with the new IKE SA
        if linked is not None:
            setattr(new, attribute, linked)
            setattr(linked, back, new)
            setattr(old, attribute, None)
    engine.register(new)
    engine.count("ike_rekeys")
    engine.emit(IkeSaUp(new.policy.name, new.key, new.local, new.remote))
    new.tasks.adopt(old.tasks, now)
    return new


class IkeRekey(Task):
    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, engine, sa) -> None:
        super().__init__(engine, sa)
        self.spi = b""  # ours in the new IKE SA
        self.nonce = b""
        self.peer_nonce = b""
        self.key_exchange = None
        self.offer: negotiate.Offer = []
        self.selected = None
        self.peer_spi = b""
        self.secret = b""
        self.public = b""
        self.followups: Optional[FollowupInitiator] = None

    @property
    def what(self) -> str:
        return "IKE SA rekey"

    @property
    def in_followups(self) -> bool:
        return self.followups is not None

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        sa, engine = self.sa, self.engine
        if self.followups is not None:
            try:
                return self.followups.build()
            except FollowupError as exc:
                self._retry_later(str(exc), now)
                return None
        if sa.state != ESTABLISHED or sa.reauth_by is not None or sa.retiring is not None:
            return None
        self.spi, self.nonce = engine.random_bytes(8), engine.random_bytes(NONCE_SIZE)
        self.key_exchange = engine.new_ke(sa.selected.dh)
        sa_payload, self.offer = negotiate.offer(sa.policy.ike_proposals, self.spi)
        return [
            sa_payload,
            NoncePayload(self.nonce),
            KePayload(self.key_exchange.group, self.key_exchange.public_bytes()),
        ]

    def process_response(self, payloads: List[Payload], now: float) -> str:
        if self.followups is not None:
            try:
                if not self.followups.process(payloads):
                    return AGAIN
            except FollowupError as exc:
                self.engine.count("followup_ke_failed")
                self._retry_later(str(exc), now)
                return DONE
            self._finish(self.followups.secrets, now)
            return DONE
        sa, engine = self.sa, self.engine
        errors = errors_in(payloads)
        if errors and errors[0].notify_type == NotifyType.TEMPORARY_FAILURE:
            sa.rekey_at = lifetimes.retry_at(engine, now, spread=lifetimes.FAILURE_DELAY)  # §2.25
            return DONE
        if errors:
            engine.fail(sa, self.what, "peer answered %s" % notify_name(errors[0]))
            sa.rekey_at = now + lifetimes.FAILURE_DELAY
            return DONE
        try:
            self.selected, self.peer_spi = negotiate.accept(
                self.offer, find_payload(payloads, PayloadType.SA), 8
            )
            ke_payload = find_payload(payloads, PayloadType.KE)
            if ke_payload is None:
                raise CryptoError("the response needs a KE payload of our group")
            negotiate.check_ke(self.selected, ke_payload, self.key_exchange.group)
            self.secret = self.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            engine.fail(sa, self.what, "invalid response: %s" % exc)
            sa.rekey_at = now + lifetimes.FAILURE_DELAY
            return DONE
        self.key_exchange = None
        self.peer_nonce = find_payload(payloads, PayloadType.NONCE).data
        if self.selected.additional_kes:  # RFC 9370 §2.2.4: the new IKE SA comes after IKE_FOLLOWUP_KE
            try:
                self.followups = FollowupInitiator(engine, self.selected.additional_kes, payloads)
            except FollowupError as exc:
                self._retry_later(str(exc), now)
                return DONE
            self.exchange = ExchangeType.IKE_FOLLOWUP_KE
            return AGAIN
        self._finish((), now)
        return DONE

    def _finish(self, additional: Sequence[bytes], now: float) -> None:
        sa = self.sa
        new = rekeyed_sa(self.engine, sa, True, self.spi, self.peer_spi, self.selected, self.nonce,
                         self.peer_nonce, self.secret, now, additional)  # fmt: skip
        delete_ike_sa(self.engine, sa, "rekeyed into %s" % new.key, now)  # §2.18: the initiator deletes it

    def _retry_later(self, reason: str, now: float) -> None:
        self.engine.fail(self.sa, self.what, reason)
        if self.sa.state == ESTABLISHED:
            self.sa.rekey_at = lifetimes.retry_at(self.engine, now, spread=lifetimes.FAILURE_DELAY)

    def abort(self, reason: str, now: float) -> None:
        if self.followups is not None:
            self._retry_later(reason, now)
        elif self.waiter is not None:
            log.info("%s: IKE SA rekey by the peer abandoned: %s", self.sa.key, reason)

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        sa, engine = self.sa, self.engine
        try:
            choice = negotiate.select(find_payload(payloads, PayloadType.SA), sa.policy.ike_proposals,
                                      ProtocolId.IKE, 8)  # fmt: skip
        except CryptoError as exc:
            engine.fail(sa, self.what, "invalid request: %s" % exc)
            raise Refused(NotifyType.INVALID_SYNTAX) from None
        if choice is None:
            engine.fail(sa, self.what, "NO_PROPOSAL_CHOSEN: no common IKE proposal")
            raise Refused(NotifyType.NO_PROPOSAL_CHOSEN)
        mismatch = negotiate.ke_mismatch(choice.selected, find_payload(payloads, PayloadType.KE))
        if mismatch is not None:
            raise Refused(NotifyType.INVALID_KE_PAYLOAD, mismatch.data)
        try:
            self.public, self.secret = engine.new_ke(choice.selected.dh).respond(
                find_payload(payloads, PayloadType.KE).data
            )
        except CryptoError as exc:
            engine.fail(sa, self.what, "invalid request: %s" % exc)
            raise Refused(NotifyType.INVALID_SYNTAX) from None
        self.choice, self.selected, self.peer_spi = choice, choice.selected, choice.peer_spi
        self.peer_nonce = find_payload(payloads, PayloadType.NONCE).data
        self.nonce = engine.random_bytes(NONCE_SIZE)
        self.spi = engine.random_bytes(8)
        if choice.selected.additional_kes:
            self.waiter = FollowupResponder(engine, choice.selected.additional_kes, now)

    def build_response(self, now: float) -> List[Payload]:
        response: List[Payload] = [
            self.choice.reply(self.spi),
            NoncePayload(self.nonce),
            KePayload(self.selected.dh, self.public),
        ]
        if self.waiter is not None:
            response.append(self.waiter.link_notify())
        return response

    def response_sent(self, now: float) -> None:
        if self.waiter is None:
            self._answered((), now)

    def _answered(self, additional: Sequence[bytes], now: float) -> Optional[int]:
        rekeyed_sa(self.engine, self.sa, False, self.peer_spi, self.spi, self.selected, self.peer_nonce,
                   self.nonce, self.secret, now, additional)  # fmt: skip
        self.engine.deleting(self.sa, now)  # the peer deletes the old IKE SA next; no new requests on it
        return None

    def followup(self, payloads: List[Payload], now: float) -> List[Payload]:
        return answer_followup(self, payloads, now, self._answered)
