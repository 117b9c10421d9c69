"""What every task is: one exchange concern of one IKE SA, with an initiator half (build_request,
process_response) and a responder half (process_request, build_response), run by the SA's TaskManager
(manager.py), which owns message IDs, the window, retransmissions and the collisions between tasks.

A task holds the state of its exchange (nonces, the offer, a key exchange's private value) and goes
when the exchange is over; what outlives it goes into the IkeSa or its ChildSas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional

from ...ids import ExchangeType, NotifyType
from ...wire.codec import enum_name
from ...wire.notify import NotifyPayload
from ...wire.payload import Payload

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine
    from ..sa import IkeSa

# What process_response says about the task.
DONE = "done"  # finished (successfully or not): the next queued task may go
AGAIN = "again"  # another request of this task follows (build_request again, with the next message ID)
RETRY = "retry"  # IKE_SA_INIT again with message ID 0 (after a COOKIE or INVALID_KE_PAYLOAD answer)


class Refused(Exception):
    """A request answered with an error notify and nothing else (process_request raises it)."""

    def __init__(self, notify: int, data: bytes = b"", protocol: int = 0, spi: bytes = b"") -> None:
        super().__init__(enum_name(NotifyType, notify))
        self.payload = NotifyPayload(notify, data, protocol, spi)


class Task:
    """Base of every task. ``exchange`` is the exchange type of its next request; ``adoptable`` says
    whether it moves to the new IKE SA when ours is rekeyed while it waits in the queue (§2.18)."""

    exchange: int = 0
    adoptable = False
    waiter = None  # a responder's followup_ke.FollowupResponder while it awaits IKE_FOLLOWUP_KE requests

    def __init__(self, engine: Engine, sa: IkeSa) -> None:
        self.engine = engine
        self.sa = sa

    @property
    def what(self) -> str:
        """The task in failures and logs."""
        return enum_name(ExchangeType, self.exchange)

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        """The payloads of our next request; None when there is nothing (left) to send, so the task
        ends without an exchange (what it was for went meanwhile, or it only acts on others' results)."""
        raise NotImplementedError

    def request_sent(self) -> None:
        """Our request was just protected and sent (sa.last_plain holds its plaintext)."""

    def process_response(self, payloads: List[Payload], now: float) -> str:
        """The peer's answer (integrity and payload rules checked): DONE, AGAIN or RETRY."""
        raise NotImplementedError

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        """The peer's request; raises Refused to answer with an error notify alone."""
        raise NotImplementedError

    def build_response(self, now: float) -> List[Payload]:
        raise NotImplementedError

    def response_sent(self, now: float) -> None:
        """Our answer was just protected and sent (sa.last_plain holds its plaintext)."""

    # --- both -------------------------------------------------------------------------------------
    def abort(self, reason: str, now: float) -> None:
        """The task ends unfinished: no answer, its IKE SA went, or the IKE SA was rekeyed under it."""

    def wait_deadline(self) -> Optional[float]:
        """A responder task that waits for the peer's next request (IKE_FOLLOWUP_KE): until when."""
        return self.waiter.deadline if self.waiter is not None else None


def errors_in(payloads: List[Payload]) -> List[NotifyPayload]:
    """The error notifies (types below 16384, §3.10.1) of a message."""
    return [p for p in payloads if isinstance(p, NotifyPayload) and p.is_error]


def notify_name(notify: NotifyPayload) -> str:
    return enum_name(NotifyType, notify.notify_type)
