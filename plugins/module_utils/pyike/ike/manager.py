"""The exchanges of one IKE SA (RFC 7296 §2.1-§2.3, §2.25): message IDs, a window of one request each
way, retransmission, the queue of our tasks, the peer's requests handed to responder tasks, answers kept
for retransmitted requests, and the one place where collisions between tasks are decided (§2.8.1,
§2.25; handle_collisions).

Every request the manager accepts is answered exactly once and that answer consumes its message ID,
whatever happens in the task: one that fails gets an error notify (AUTHENTICATION_FAILED for IKE_AUTH,
INVALID_SYNTAX otherwise), and an IKE SA that is not up yet goes with it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from ..crypto.errors import CryptoError
from ..ids import IKE_HEADER_LEN, ExchangeType, NotifyType, ProtocolId
from ..wire.codec import enum_name
from ..wire.encrypted import SkfPayload
from ..wire.errors import WireError
from ..wire.message import Message, decode_payload_chain, find_notifies
from ..wire.notify import NotifyPayload
from ..wire.payload import Payload
from ..wire.rules import check_envelope, check_payloads
from .events import Address
from .fragments import COMPLETE, RESTARTED, STORED
from .sa import AUTHENTICATING, CONNECTING, DEAD, DELETING, ESTABLISHED, IkeSa
from .tasks import child_create, child_rekey, ike_auth, ike_intermediate, ike_rekey, informational
from .tasks.base import AGAIN, RETRY, Refused, Task
from .tasks.child_create import ChildCreate
from .tasks.child_rekey import ChildRekey
from .tasks.ike_rekey import IkeRekey

if TYPE_CHECKING:  # pragma: no cover
    from .engine import Engine

log = logging.getLogger("pyike.ike")


@dataclass
class Pending:
    """Our request in flight (window size 1, §2.3) and its retransmission schedule (§2.1)."""

    message_id: int
    exchange: int
    data: List[bytes] = field(repr=False)  # the datagram, or its fragments
    task: Task
    sent_at: float
    next_at: float
    tries: int = 0


@dataclass
class CachedResponse:
    """Our answer to the peer's last request (§2.1), sent again only for an exact copy of that request
    (its first fragment when fragmented, RFC 7383 §2.6.1) from the address it came from."""

    message_id: int
    datagrams: List[bytes] = field(repr=False)
    request_digest: bytes = b""  # SHA-256 of the request datagram; empty: never replayed
    request_from: Optional[Address] = None


class TaskManager:
    def __init__(self, engine: Engine, sa: IkeSa) -> None:
        self.engine, self.sa = engine, sa
        self.queue: List[Task] = []  # our tasks waiting for the window
        self.active: Optional[Task] = None  # the task whose request is in flight
        self.pending: Optional[Pending] = None
        self.next_request_id = 0
        self.next_peer_request_id = 0
        self.last_response: Optional[CachedResponse] = None
        # (message id, SHA-256 of the datagram or of its first fragment, source) of the request being answered
        self.request_seen: Optional[Tuple[int, bytes, Address]] = None
        self.first_fragment: Optional[Tuple[int, bytes]] = None  # (message id, SHA-256) of a request's SKF 1
        self.waiting: Dict[bytes, Task] = {}  # responder tasks awaiting IKE_FOLLOWUP_KE, by link data

    def __repr__(self) -> str:
        return "TaskManager(%s: active %s, %d queued)" % (self.sa.key, self.active, len(self.queue))

    @property
    def idle(self) -> bool:
        return self.active is None and not self.queue

    def tasks(self) -> List[Task]:
        return ([self.active] if self.active is not None else []) + list(self.queue)

    # --- our requests ---------------------------------------------------------------------------------
    def initiate(self, task: Task, now: float, first: bool = False) -> None:
        """Queue one of our tasks (at the front: the next exchange of the IKE SA's setup) and start it
        when the window is free."""
        if first:
            self.queue.insert(0, task)
        else:
            self.queue.append(task)
        self.next_task(now)

    def next_task(self, now: float) -> None:
        while self.active is None and self.queue and self.sa.state != DEAD:
            task = self.queue.pop(0)
            self.active = task
            self._build_and_send(task, now)

    def _build_and_send(self, task: Task, now: float, message_id: Optional[int] = None) -> None:
        try:
            payloads = task.build_request(now)
        except Exception as exc:  # the task ends; an IKE SA not up yet goes with it
            self._task_failed(task, "%s request" % task.what, exc, now)
            return
        if payloads is None:
            self.active = None
            return
        sa = self.sa
        payloads = self.engine.impair.rewrite(enum_name(ExchangeType, task.exchange), False, payloads)
        if task.exchange == ExchangeType.IKE_SA_INIT:
            message_id = 0
            data = [sa.plain(ExchangeType.IKE_SA_INIT, 0, False, payloads)]
            sa.init_request = data[0]  # what the initiator's AUTH signs (§2.15)
            self.next_request_id = 1
        else:
            if message_id is None:
                message_id = self.next_request_id
                self.next_request_id += 1
            data = sa.protect(task.exchange, message_id, False, payloads)
        delay = self.engine.retransmit.delay(0)
        self.pending = Pending(message_id, task.exchange, data, task, now, now + delay)
        task.request_sent()
        self.engine.send(sa, data)

    def on_response(self, message: Message, now: float) -> None:
        pending, sa = self.pending, self.sa
        header = message.header
        if pending is None or header.message_id != pending.message_id:
            self.engine.count("unexpected_responses")
            return
        if header.exchange != pending.exchange:
            self.engine.count("invalid_messages")
            return
        try:
            if header.exchange == ExchangeType.IKE_SA_INIT:
                payloads = message.payloads
            else:
                payloads = self.open(message, now)
                if payloads is None:
                    return  # a fragment of a message that is not complete yet
            check_payloads(header.exchange, True, payloads)
        except (WireError, CryptoError) as exc:
            self.engine.count("invalid_messages")
            log.info(
                "%s: ignoring invalid %s response: %s", sa.key, enum_name(ExchangeType, pending.exchange), exc
            )
            return
        if header.exchange == ExchangeType.IKE_SA_INIT:
            sa.init_response = message.raw  # what the responder's AUTH signs (§2.15)
            sa.spi_r = header.spi_r
        self.pending = None
        sa.last_received_at = now
        task = pending.task
        try:
            self.engine.impair.maybe_raise("response", enum_name(ExchangeType, pending.exchange), payloads)
            outcome = task.process_response(payloads, now)
        except Exception as exc:
            self._task_failed(task, "%s response" % task.what, exc, now)
            return
        if sa.state == DEAD:
            self.active = None
            return
        if outcome == AGAIN:
            self._build_and_send(task, now)
        elif outcome == RETRY:
            self._build_and_send(task, now, message_id=0)
        else:
            self.active = None
        self.next_task(now)

    def _task_failed(self, task: Task, what: str, exc: Exception, now: float) -> None:
        self.engine.handler_failed(self.sa, what, exc)
        self.active = None if self.active is task else self.active
        self.pending = None if self.pending is not None and self.pending.task is task else self.pending
        task.abort("internal error", now)
        if self.sa.state not in (ESTABLISHED, DELETING, DEAD):
            self.engine.fail(self.sa, task.what, "internal error while processing the exchange")
            self.engine.drop_sa(self.sa, "internal error", now=now)
        else:
            self.next_task(now)

    # --- time -------------------------------------------------------------------------------------------
    def next_deadline(self) -> Optional[float]:
        deadlines = [task.wait_deadline() for task in self.waiting.values()]
        if self.pending is not None:
            deadlines.append(self.pending.next_at)
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> Optional[Pending]:
        """Retransmit (§2.1, §2.4) and give up waiting responder tasks; returns the request that went
        unanswered after every retransmission (the IKE SA must go: the peer is dead), or None."""
        for link, task in list(self.waiting.items()):
            deadline = task.wait_deadline()
            if deadline is not None and now >= deadline:
                del self.waiting[link]
                self.engine.count("followup_ke_timeouts")
                log.info("%s: %s: no IKE_FOLLOWUP_KE came, the pending SA is dropped", self.sa.key, task.what)
                task.abort("no IKE_FOLLOWUP_KE request within the time allowed", now)
        pending = self.pending
        if pending is None or now < pending.next_at:
            return None
        retransmit = self.engine.retransmit
        if pending.tries >= retransmit.tries:
            return pending
        pending.tries += 1
        pending.next_at = now + retransmit.delay(pending.tries)
        self.engine.count("retransmits")
        self.engine.send(self.sa, pending.data)
        return None

    def clear(self) -> None:
        """The IKE SA goes, and every task with it (what they concern goes too)."""
        self.queue, self.active, self.pending = [], None, None
        self.waiting.clear()

    def adopt(self, old: TaskManager, now: float) -> None:
        """Our IKE SA rekeyed `old`'s (§2.18): its queued tasks that concern Child SAs go on here; those
        waiting for IKE_FOLLOWUP_KE there can no longer finish (RFC 9370 §2.2.4) and end."""
        moving = [task for task in old.queue if task.adoptable]
        old.queue = [task for task in old.queue if not task.adoptable]
        waiting = list(old.waiting.values())
        old.waiting.clear()
        for task in waiting:
            task.abort("the IKE SA was rekeyed meanwhile", now)
        for task in moving:
            task.sa = self.sa
        self.queue.extend(moving)
        self.next_task(now)

    # --- the peer's requests --------------------------------------------------------------------------
    def open(self, message: Message, now: float) -> Optional[List[Payload]]:
        """The inner payloads of an SK message, or of a fragmented one once all SKF pieces are in
        (RFC 7383 §2.6: each fragment is verified before it is kept); None while incomplete."""
        sa = self.sa
        if check_envelope(message) != "fragment":
            return sa.unprotect(message)
        if not sa.fragmentation or sa.reassembler is None:
            raise CryptoError("a fragment on an IKE SA that did not negotiate fragmentation")
        complete = sa.reassembler.add(message, now)
        if (
            not message.header.response
            and message.encrypted.fragment_number == 1
            and sa.reassembler.last_status in (STORED, RESTARTED, COMPLETE)
        ):
            self.first_fragment = (message.header.message_id, hashlib.sha256(message.raw).digest())
        if complete is None:
            return None
        first_inner, plain = complete
        sa.last_plain = (message.header, first_inner, plain)
        return decode_payload_chain(first_inner, plain, IKE_HEADER_LEN)

    def on_request(self, message: Message, local: Address, remote: Address, now: float) -> None:
        sa, engine = self.sa, self.engine
        message_id, exchange = message.header.message_id, message.header.exchange
        if self.last_response is not None and message_id == self.last_response.message_id:
            self._answer_retransmission(message, local, remote)
            return
        if message_id != self.next_peer_request_id:
            engine.count("invalid_message_ids")
            return
        if sa.initiator and sa.state in (CONNECTING, AUTHENTICATING):
            # The responder's request overtook its IKE_AUTH response (§1.2: nothing else before IKE_AUTH).
            # Left unanswered, its message ID stays free: the retransmission is processed once we are up.
            engine.count("early_requests")
            return
        try:
            payloads = self.open(message, now)
            if payloads is None:
                return
        except (WireError, CryptoError) as exc:
            engine.count("invalid_messages")
            log.info("%s: dropping request that failed integrity or syntax: %s", sa.key, exc)
            return
        self.request_seen = (message_id, self._request_digest(message), remote)
        try:
            shape = check_payloads(exchange, False, payloads)
        except WireError as exc:
            log.info("%s: invalid %s request: %s", sa.key, enum_name(ExchangeType, exchange), exc)
            self.respond(message, [NotifyPayload(exc.notify or NotifyType.INVALID_SYNTAX, exc.notify_data)])
            return
        # A request authenticated by this IKE SA tells us where the peer is now (NAT mappings change).
        sa.local, sa.remote, sa.last_received_at = local, remote, now
        failed = False
        try:
            engine.impair.maybe_raise("request", enum_name(ExchangeType, exchange), payloads)
            self._dispatch(message, payloads, shape, now)
        except Exception as exc:  # the exchange ends with an error answer; the daemon goes on
            engine.handler_failed(sa, "%s request" % enum_name(ExchangeType, exchange), exc)
            failed = True
        if self.last_response is None or self.last_response.message_id != message_id:
            # §2.1/§2.3: a request is answered exactly once, or the peer's window stalls on its retransmits.
            failed = True
            notify = self._answer_unhandled(message)
            if sa.state not in (ESTABLISHED, DELETING, DEAD):
                engine.fail(sa, enum_name(ExchangeType, exchange), "%s sent to the peer" % notify)
        if failed and sa.state not in (ESTABLISHED, DELETING, DEAD):
            engine.drop_sa(sa, "request could not be processed", quiet=True, now=now)  # never half-done

    def _dispatch(self, message: Message, payloads: List[Payload], shape: str, now: float) -> None:
        if message.header.exchange == ExchangeType.IKE_FOLLOWUP_KE and self.sa.up:
            self._followup(message, payloads, now)
            return
        task = self._responder(message.header.exchange, shape, payloads)
        if task is None:
            self.engine.count("unexpected_requests")
            log.info(
                "%s: %s request not expected in state %s",
                self.sa.key,
                enum_name(ExchangeType, message.header.exchange),
                self.sa.state,
            )
            return
        task.message_id = message.header.message_id
        refusal = self.admit(task)
        if refusal is not None:
            self.respond(message, [NotifyPayload(refusal)])
            return
        try:
            task.process_request(payloads, now)
        except Refused as refused:
            self.respond(message, [refused.payload])
            return
        self.handle_collisions(task, now)
        self.respond(message, task.build_response(now))
        task.response_sent(now)
        if task.wait_deadline() is not None:
            self.waiting[task.waiter.link] = task

    def _responder(self, exchange: int, shape: str, payloads: List[Payload]) -> Optional[Task]:
        """The task that answers a request of this exchange and shape in the IKE SA's state."""
        sa = self.sa
        if exchange == ExchangeType.IKE_INTERMEDIATE and not sa.initiator and sa.state == CONNECTING:
            return ike_intermediate.IkeIntermediate(self.engine, sa)
        if exchange == ExchangeType.IKE_AUTH and not sa.initiator and sa.state == CONNECTING:
            return ike_auth.IkeAuth(self.engine, sa)
        if exchange == ExchangeType.INFORMATIONAL and sa.up:
            return informational.Informational(self.engine, sa)
        if exchange == ExchangeType.CREATE_CHILD_SA and sa.up:
            if shape == "IKE SA rekey":
                return ike_rekey.IkeRekey(self.engine, sa)
            rekey = [n for n in find_notifies(payloads, NotifyType.REKEY_SA) if n.protocol == ProtocolId.ESP]
            if rekey:
                return child_rekey.ChildRekey(self.engine, sa, rekey_notify=rekey[0])
            return child_create.ChildCreate(self.engine, sa)
        return None

    def _followup(self, message: Message, payloads: List[Payload], now: float) -> None:
        """RFC 9370 §2.2.4: the next IKE_FOLLOWUP_KE of a CREATE_CHILD_SA we answered, found by its link."""
        if self.sa.state != ESTABLISHED:
            self.respond(message, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])  # §2.25.2
            return
        links = find_notifies(payloads, NotifyType.ADDITIONAL_KEY_EXCHANGE)
        link = links[0].data if links and links[0].data else None
        task = self.waiting.pop(link, None) if link else None
        if task is None:  # §2.2.4: never sent, timed out, or replaced by a newer exchange
            self.engine.count("followup_ke_state_not_found")
            self.respond(message, [NotifyPayload(NotifyType.STATE_NOT_FOUND)])
            return
        self.respond(message, task.followup(payloads, now))
        if task.wait_deadline() is not None:
            self.waiting[task.waiter.link] = task

    def respond(self, request: Message, payloads: List[Payload]) -> None:
        """Answer a request; the answer consumes its message ID (§2.3) and is kept for retransmissions."""
        sa = self.sa
        message_id, exchange = request.header.message_id, request.header.exchange
        payloads = self.engine.impair.rewrite(enum_name(ExchangeType, exchange), True, payloads)
        if exchange == ExchangeType.IKE_SA_INIT:
            data = [sa.plain(exchange, 0, True, payloads)]
            sa.init_response = data[0]
        else:
            data = sa.protect(exchange, message_id, True, payloads)
        seen = self.request_seen
        if seen is not None and seen[0] == message_id:
            self.last_response = CachedResponse(message_id, data, seen[1], seen[2])
        else:
            self.last_response = CachedResponse(message_id, data)
        self.next_peer_request_id = max(self.next_peer_request_id, message_id + 1)
        self.engine.send(sa, data)

    def _answer_unhandled(self, request: Message) -> str:
        """Answer a request that no task answered (not expected now, or its task failed) with an error
        notify (§2.21.2 for an IKE_AUTH); returns its name."""
        if request.header.exchange == ExchangeType.IKE_AUTH and not self.sa.up:
            notify = NotifyType.AUTHENTICATION_FAILED
        else:
            notify = NotifyType.INVALID_SYNTAX
        self.respond(request, [NotifyPayload(notify)])
        return enum_name(NotifyType, notify)

    def _request_digest(self, message: Message) -> bytes:
        """SHA-256 of the datagram that a retransmission must repeat: the request itself, or its first
        fragment (RFC 7383 §2.6.1); empty when the first fragment was not seen verified."""
        if check_envelope(message) != "fragment":
            return hashlib.sha256(message.raw).digest()
        first = self.first_fragment
        return first[1] if first is not None and first[0] == message.header.message_id else b""

    def _answer_retransmission(self, message: Message, local: Address, remote: Address) -> None:
        """§2.1: a retransmitted request gets the same answer; for fragments once, on the first one
        (RFC 7383 §2.6.1). Only an exact copy of the request from where it came is answered: the check
        runs before any integrity check, so a forged datagram with our SPIs and the last message ID
        must never make us send the (larger) response to an address of the forger's choosing."""
        cached = self.last_response
        encrypted = message.encrypted
        if isinstance(encrypted, SkfPayload) and encrypted.fragment_number != 1:
            return
        if (
            not cached.request_digest
            or remote != cached.request_from
            or hashlib.sha256(message.raw).digest() != cached.request_digest
        ):
            self.engine.count("retransmissions_refused")
            return
        self.engine.count("replayed_responses")
        self.engine.send(self.sa, cached.datagrams, local, remote)

    # --- collisions (§2.8.1, §2.25) --------------------------------------------------------------------
    def rekeying_ike(self) -> bool:
        """Our rekey of this IKE SA is under way, or the peer's waits for its IKE_FOLLOWUP_KE."""
        return any(isinstance(task, IkeRekey) for task in [self.active, *self.waiting.values()])

    def admit(self, passive: Task) -> Optional[int]:
        """§2.25: the notify that refuses the peer's request because of exchanges of ours, or None.
        No IKE SA rekey while ours, or any exchange with IKE_FOLLOWUP_KE steps, is under way (§2.25, the
        peer retries); no new or rekeyed Child SA while the IKE SA is being rekeyed (§2.25.2) or deleted
        (retiring: our DELETE follows after a drain, duplicates.py)."""
        if isinstance(passive, (IkeRekey, ChildCreate)) and self.sa.retiring is not None:
            return NotifyType.TEMPORARY_FAILURE
        if isinstance(passive, IkeRekey):
            followups = self.waiting or getattr(self.active, "in_followups", False)
            if self.sa.state != ESTABLISHED or self.rekeying_ike() or followups:
                return NotifyType.TEMPORARY_FAILURE
        elif isinstance(passive, ChildCreate):
            if self.sa.state != ESTABLISHED or self.rekeying_ike():
                return NotifyType.TEMPORARY_FAILURE
        return None

    def handle_collisions(self, passive: Task, now: float) -> None:
        """§2.8.1: the peer's rekey of a Child SA that our rekey in flight rekeys too. Both go ahead;
        our task decides once both are known which new SA is redundant (child_rekey.py). A rekey of
        ours still in the queue finds the Child SA replaced and ends without a request."""
        active = self.active
        if isinstance(passive, ChildRekey) and isinstance(active, ChildRekey) and active.old is passive.old:
            active.collide(passive, now)
        elif (
            _creates_only(passive)
            and _creates_only(active)
            and active.policy is not None
            and active.policy.name == passive.policy.name
        ):
            active.collide(passive, now)  # both ends create the same Child SA at once


def _creates_only(task: Optional[Task]) -> bool:
    """A new Child SA, not a rekey (ChildRekey is a ChildCreate too)."""
    return isinstance(task, ChildCreate) and not isinstance(task, ChildRekey)
