"""The peer's INFORMATIONAL requests (RFC 7296 §1.4): D(IKE) and D(ESP) (§1.4.1; ike_delete.py,
child_delete.py), N(AUTHENTICATION_FAILED) after IKE_AUTH (§2.21.2), and empty ones (liveness, §2.4)."""

from __future__ import annotations

from typing import List

from ...ids import ExchangeType, NotifyType, ProtocolId
from ...wire.notify import DeletePayload, NotifyPayload
from ...wire.payload import Payload
from .. import restarts
from . import child_delete
from .base import Task


class Informational(Task):
    exchange = ExchangeType.INFORMATIONAL

    def process_request(self, payloads: List[Payload], now: float) -> None:
        self.delete_ike = self.auth_failed = False
        self.ours: List[bytes] = []
        for payload in payloads:
            if isinstance(payload, DeletePayload) and payload.protocol == ProtocolId.IKE:
                self.delete_ike = True
            elif isinstance(payload, DeletePayload) and payload.protocol == ProtocolId.ESP:
                self.ours += child_delete.peer_deleted(self.engine, self.sa, payload, now)
            elif (
                isinstance(payload, NotifyPayload) and payload.notify_type == NotifyType.AUTHENTICATION_FAILED
            ):
                self.engine.fail(
                    self.sa, "IKE_AUTH", "AUTHENTICATION_FAILED: peer rejected our authentication"
                )
                self.delete_ike = self.auth_failed = True

    def build_response(self, now: float) -> List[Payload]:
        if self.delete_ike or not self.ours:
            return []
        return [DeletePayload(ProtocolId.ESP, self.ours)]

    def response_sent(self, now: float) -> None:
        if self.delete_ike:
            for child in list(self.sa.children):
                if not self.auth_failed:
                    restarts.peer_closed(self.engine, self.sa, child, now)
                child_delete.remove_child(self.engine, self.sa, child, "IKE SA deleted by peer")
            self.engine.drop_sa(self.sa, "deleted by peer", now=now)
