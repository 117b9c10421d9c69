"""Deleting an IKE SA (RFC 7296 §1.4.1): INFORMATIONAL with D(IKE), which closes its Child SAs too.

Ours: the SA is DELETING from the moment the request is queued (no new exchanges) and goes when the
answer arrives, or at its `delete_by` deadline should none come. The peer's: answered with an empty
INFORMATIONAL, then the SA and its Child SAs go (informational.py). An initiator that refuses the
responder's AUTH tells it with N(AUTHENTICATION_FAILED) and forgets the SA at once (§2.21.2).
"""

from __future__ import annotations

from typing import List, Optional

from ...ids import ExchangeType, NotifyType, ProtocolId
from ...wire.notify import DeletePayload, NotifyPayload
from ...wire.payload import Payload
from .base import DONE, Task


class IkeDelete(Task):
    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, engine, sa, reason: str, now: float, quiet: bool = True) -> None:
        super().__init__(engine, sa)
        self.reason, self.quiet = reason, quiet
        engine.deleting(sa, now)

    @property
    def what(self) -> str:
        return "INFORMATIONAL delete IKE_SA"

    def build_request(self, now: float) -> Optional[List[Payload]]:
        return [DeletePayload(ProtocolId.IKE, [])]

    def process_response(self, payloads: List[Payload], now: float) -> str:
        self.engine.drop_sa(self.sa, self.reason, quiet=self.quiet, now=now)
        return DONE


def delete_ike_sa(engine, sa, reason: str, now: float, quiet: bool = True) -> None:
    """Send our DELETE of `sa` next (ahead of anything queued)."""
    sa.tasks.initiate(IkeDelete(engine, sa, reason, now, quiet), now, first=True)


def notify_auth_failed(engine, sa) -> None:
    """§2.21.2: tell the responder that its AUTH is refused, without waiting for an answer."""
    data = sa.protect(
        ExchangeType.INFORMATIONAL,
        sa.tasks.next_request_id,
        False,
        [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
    )
    engine.send(sa, data)
