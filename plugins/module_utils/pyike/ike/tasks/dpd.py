"""Dead peer detection (RFC 7296 §1.4, §2.4): an empty INFORMATIONAL request after `dpd_delay` seconds
without a message from the peer. Its retransmissions going unanswered mean the peer is dead (the
manager gives the IKE SA up; dpd_action restart initiates it again, lifetimes.py)."""

from __future__ import annotations

from typing import List, Optional

from ...ids import ExchangeType
from ...wire.payload import Payload
from .base import DONE, Task


class Dpd(Task):
    exchange = ExchangeType.INFORMATIONAL

    @property
    def what(self) -> str:
        return "INFORMATIONAL (DPD)"

    def build_request(self, now: float) -> Optional[List[Payload]]:
        return []

    def process_response(self, payloads: List[Payload], now: float) -> str:
        return DONE
