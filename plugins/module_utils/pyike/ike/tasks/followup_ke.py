"""IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): the additional key exchanges after a CREATE_CHILD_SA, as steps of
the task that needs them (child_create.py, child_rekey.py, ike_rekey.py).

When the proposal accepted in a CREATE_CHILD_SA exchange holds ADDKE transforms, that exchange carries
only the main key exchange, and its response adds N(ADDITIONAL_KEY_EXCHANGE) with link data only the
responder understands. The initiator then runs one IKE_FOLLOWUP_KE exchange per additional key
exchange, in transform type order: each request carries KEi(n) and echoes the last link received; every
response but the last carries KEr(n) and a fresh link. Only after the last one are the new SA's keys
derived (SK(1)..SK(n) join SK(0), §2.2.4), so an exchange that fails or is abandoned leaves the old SA
as it was. A responder forgets a pending SA that sees no next request within FOLLOWUP_TIMEOUT (§2.2.4
suggests 5-20 seconds); a request with a link it does not know gets N(STATE_NOT_FOUND) (manager.py).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

from ...crypto.errors import CryptoError
from ...ids import NotifyType, PayloadType
from ...wire.key_exchange import KePayload
from ...wire.message import find_notifies, find_payload
from ...wire.notify import NotifyPayload
from ...wire.payload import Payload
from .. import negotiate
from .base import errors_in, notify_name

FOLLOWUP_TIMEOUT = 15.0  # seconds a responder waits for the next IKE_FOLLOWUP_KE request
LINK_SIZE = 16  # octets of opaque link data (random, so a stale or forged link never matches)


class FollowupError(Exception):
    """An IKE_FOLLOWUP_KE step failed; the message is the reason."""


def link_of(payloads: Sequence[Payload]) -> Optional[bytes]:
    notifies = find_notifies(payloads, NotifyType.ADDITIONAL_KEY_EXCHANGE)
    return notifies[0].data if notifies and notifies[0].data else None


class FollowupInitiator:
    """Our IKE_FOLLOWUP_KE requests for the CREATE_CHILD_SA whose response is `response`."""

    def __init__(self, engine, additional_kes: Sequence[Tuple[int, int]], response: List[Payload]) -> None:
        self.engine = engine
        self.methods = [method for _ttype, method in additional_kes]
        self.link = link_of(response)
        if self.link is None:
            raise FollowupError(
                "peer accepted additional key exchanges without an ADDITIONAL_KEY_EXCHANGE notify"
            )
        self.secrets: List[bytes] = []
        self.key_exchange = None

    def build(self) -> List[Payload]:
        method = self.methods[0]
        try:
            self.key_exchange = self.engine.new_ke(method)
        except CryptoError as exc:
            raise FollowupError("cannot run additional key exchange: %s" % exc) from None
        return [
            KePayload(method, self.key_exchange.public_bytes()),
            NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, self.link),
        ]

    def process(self, payloads: List[Payload]) -> bool:
        """One response; True once the last additional key exchange is done (secrets complete)."""
        errors = errors_in(payloads)
        if errors:
            raise FollowupError("peer answered %s" % notify_name(errors[0]))
        method = self.methods[0]
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            secret = negotiate.additional_secret(self.key_exchange, ke_payload, method)
        except CryptoError as exc:
            raise FollowupError("invalid IKE_FOLLOWUP_KE response: %s" % exc) from None
        self.key_exchange = None
        self.secrets.append(secret)
        self.methods.pop(0)
        if not self.methods:
            self.engine.count("followup_ke_completed")
            return True
        self.link = link_of(payloads)
        if self.link is None:
            raise FollowupError("IKE_FOLLOWUP_KE response without the next link")
        return False


def answer_followup(task, payloads: List[Payload], now: float, complete) -> List[Payload]:
    """The responder's half for any task: answer the next IKE_FOLLOWUP_KE of `task` (its `waiter`); after
    the last one `complete(secrets, now)` creates the SA, or returns the error notify type that says why
    it cannot any more."""
    try:
        response, done = task.waiter.answer(payloads, now)
    except CryptoError as exc:
        task.engine.fail(task.sa, task.what, "invalid IKE_FOLLOWUP_KE request: %s" % exc)
        task.abort("invalid IKE_FOLLOWUP_KE request", now)
        return [NotifyPayload(NotifyType.INVALID_SYNTAX)]
    if not done:
        return response
    error = complete(task.waiter.secrets, now)
    if error is not None:
        task.abort("cannot complete", now)
        return [NotifyPayload(error)]
    task.waiter = None
    task.engine.count("followup_ke_completed")
    return response


class FollowupResponder:
    """A CREATE_CHILD_SA we answered with N(ADDITIONAL_KEY_EXCHANGE): the peer's next requests."""

    def __init__(self, engine, additional_kes: Sequence[Tuple[int, int]], now: float) -> None:
        self.engine = engine
        self.methods = [method for _ttype, method in additional_kes]
        self.secrets: List[bytes] = []
        self.link = engine.random_bytes(LINK_SIZE)
        self.deadline = now + FOLLOWUP_TIMEOUT

    def link_notify(self) -> NotifyPayload:
        return NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, self.link)

    def answer(self, payloads: List[Payload], now: float) -> Tuple[List[Payload], bool]:
        """(response payloads, whether that was the last step); CryptoError for a KE payload of the
        wrong method or a bad public value."""
        method = self.methods[0]
        ke_payload = find_payload(payloads, PayloadType.KE)
        if ke_payload.group != method:
            raise CryptoError("KE payload of method %d, not the negotiated %d" % (ke_payload.group, method))
        public, secret = self.engine.new_ke(method).respond(ke_payload.data)
        self.secrets.append(secret)
        self.methods.pop(0)
        if not self.methods:
            return [KePayload(method, public)], True
        self.link = self.engine.random_bytes(LINK_SIZE)
        self.deadline = now + FOLLOWUP_TIMEOUT
        return [KePayload(method, public), self.link_notify()], False
