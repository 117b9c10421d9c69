"""IKE_AUTH (RFC 7296 §1.2, §2.15): identities, the AUTH payloads that prove them (a PSK or certificates:
authenticate.py; RFC 7427, RFC 4945 §3.1), the choice of connection by the peer's identity, and the
first Child SA (child_create.py). A failed authentication is answered with AUTHENTICATION_FAILED, or,
when the initiator refuses the responder, notified in an INFORMATIONAL (§2.21.2). INITIAL_CONTACT
(§2.4, §3.10.1): an initiator with no other IKE SA for the connection says so, and the responder forgets
the IKE SAs the peer lost (a restarted peer is back at once, not after the stale SAs' DPD gives up).
"""

from __future__ import annotations

import logging
from typing import List, Optional

from ...crypto.certs import subject_text
from ...ids import ExchangeType, NotifyType, PayloadType
from ...wire.identity import IdiPayload, IdrPayload
from ...wire.message import find_notifies, find_payload
from ...wire.notify import NotifyPayload
from ...wire.payload import Payload
from .. import authenticate
from ..authenticate import PUBKEY, AuthFailed
from ..policy import ChildPolicy
from ..sa import DEAD
from .base import DONE, Refused, Task, errors_in
from .child_create import ChildCreate
from .ike_delete import notify_auth_failed

log = logging.getLogger("pyike.ike")


class IkeAuth(Task):
    exchange = ExchangeType.IKE_AUTH

    def __init__(self, engine, sa, child: Optional[ChildPolicy] = None) -> None:
        super().__init__(engine, sa)
        self.child = ChildCreate(engine, sa, child) if child is not None else None
        self.response: List[Payload] = []

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        sa, policy = self.sa, self.sa.policy
        sa.ike_auth_mid = sa.tasks.next_request_id
        idi = IdiPayload(*policy.local_id)
        try:
            certs, auth = authenticate.our_auth(sa, idi.encode_body())
        except AuthFailed as exc:
            self.engine.fail(sa, "IKE_AUTH", str(exc))
            self.engine.drop_sa(sa, "cannot authenticate", now=now)
            return None
        # §1.2: IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr
        payloads: List[Payload] = [idi, *certs]
        if _only_sa_of_connection(self.engine, sa):
            payloads.append(NotifyPayload(NotifyType.INITIAL_CONTACT))
        if policy.auth == PUBKEY:
            payloads += authenticate.certreq_payloads([policy])
        if policy.remote_id is not None:
            payloads.append(IdrPayload(*policy.remote_id))
        payloads.append(auth)
        if self.child is not None:
            payloads += self.child.offer_payloads(in_ike_auth=True)
        return payloads

    def process_response(self, payloads: List[Payload], now: float) -> str:
        sa, engine = self.sa, self.engine
        refused = any(n.notify_type == NotifyType.AUTHENTICATION_FAILED for n in errors_in(payloads))
        if refused or find_payload(payloads, PayloadType.AUTH) is None:
            ours = ""
            if sa.policy.auth == PUBKEY and sa.policy.credential is not None:
                ours = " (our certificate %s)" % subject_text(sa.policy.credential.certificate)
            engine.fail(sa, "IKE_AUTH", "AUTHENTICATION_FAILED: peer %s did not accept our authentication%s"
                        % (sa.remote[0], ours))  # fmt: skip
            engine.drop_sa(sa, "authentication failed", now=now)
            return DONE
        idr = find_payload(payloads, PayloadType.IDr)
        if idr is None:
            reason = "AUTHENTICATION_FAILED: peer %s sent AUTH without IDr" % sa.remote[0]
        elif sa.policy.remote_id is not None and (idr.id_type, idr.data) != tuple(sa.policy.remote_id):
            reason = (
                "AUTHENTICATION_FAILED: peer identified as %s, expected another identity" % idr.value_text()
            )
        else:
            reason = authenticate.check_peer_auth(sa, sa.policy, idr, payloads, engine.wall_clock())
        if reason:
            engine.fail(sa, "IKE_AUTH", reason)
            notify_auth_failed(engine, sa)  # §2.21.2: tell the responder, then forget the SA
            engine.drop_sa(sa, "authentication failed", now=now)
            return DONE
        sa.peer_id = (idr.id_type, idr.data)
        engine.established(sa, now)
        if self.child is not None:
            self.child.accept_in_ike_auth(payloads, now)
        return DONE

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        sa, engine = self.sa, self.engine
        engine.close_half_open(sa)
        sa.ike_auth_mid = self.message_id
        if sa.additional_kes:
            self._refuse(
                "IKE_AUTH before the negotiated additional key exchanges", now, NotifyType.INVALID_SYNTAX
            )
        idi = find_payload(payloads, PayloadType.IDi)
        auth = find_payload(payloads, PayloadType.AUTH)
        if idi is None:  # an EAP-only first request (§2.16): we do not offer EAP
            self._refuse("AUTHENTICATION_FAILED: peer %s sent no IDi" % sa.remote[0], now)
        candidates = engine.responder_candidates(sa.local[0], sa.remote[0])
        policy = authenticate.policy_for_peer(
            candidates, (idi.id_type, idi.data), auth.method if auth is not None else None
        )
        if policy is None:
            self._refuse("AUTHENTICATION_FAILED: no connection accepts peer id %s" % idi.value_text(), now)
        sa.policy = policy
        authenticate.record_certreq(sa, payloads)
        reason = authenticate.check_peer_auth(sa, policy, idi, payloads, engine.wall_clock())
        idr = IdrPayload(*policy.local_id)
        if not reason:
            try:
                certs, our_auth = authenticate.our_auth(sa, idr.encode_body())
            except AuthFailed as exc:
                reason = str(exc)
        if reason:  # §2.21.2: an IKE_AUTH that fails authentication is answered with AUTHENTICATION_FAILED
            self._refuse(reason, now)
        sa.peer_id = (idi.id_type, idi.data)
        if find_notifies(payloads, NotifyType.INITIAL_CONTACT):
            _forget_lost_sas(engine, sa, now)
        self.response = [idr, *certs, our_auth]  # §1.2: IDr, [CERT,] AUTH, SAr2, TSi, TSr
        if find_payload(payloads, PayloadType.SA) is not None:
            child = ChildCreate(engine, sa)
            try:
                child.answer(payloads, now, in_ike_auth=True)
                self.child = child
            except Refused as refused:
                self.response.append(refused.payload)  # the IKE SA comes up without a Child SA

    def _refuse(self, reason: str, now: float, notify: int = NotifyType.AUTHENTICATION_FAILED) -> None:
        self.engine.fail(self.sa, "IKE_AUTH", reason)
        self.engine.drop_sa(self.sa, "authentication failed", quiet=True, now=now)
        raise Refused(notify)

    def build_response(self, now: float) -> List[Payload]:
        self.engine.established(self.sa, now)
        if self.child is None:
            return self.response
        return self.response + self.child.build_response(now)


def _only_sa_of_connection(engine, sa) -> bool:
    """§2.4: INITIAL_CONTACT asserts that this is the only IKE SA between the two identities. Not so
    while another IKE SA of the connection lives (a reauthentication, a second initiate, a twin)."""
    return not any(other is not sa and other.policy.name == sa.policy.name for other in engine.sas.values())


def _forget_lost_sas(engine, sa, now: float) -> None:
    """The peer started over (§2.4): its other IKE SAs with the same identities are gone on its side, so
    they go here without a DELETE the peer could not decrypt. One the peer has spoken on since this IKE
    SA began is alive over there (both ends initiating at once): duplicates.py settles that one."""
    for other in list(engine.sas.values()):
        if (
            other is not sa
            and other.state != DEAD
            and other.peer_id == sa.peer_id
            and other.policy.local_id == sa.policy.local_id
            and other.last_received_at < sa.created_at
        ):
            log.info(
                "%s: INITIAL_CONTACT from %s: %s is gone on the peer's side", sa.key, sa.remote[0], other.key
            )
            engine.drop_sa(other, "the peer started over (INITIAL_CONTACT)", now=now)
