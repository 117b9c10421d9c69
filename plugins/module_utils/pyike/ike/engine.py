"""The IKEv2 engine: every IKE SA of the daemon, driven by datagrams, commands and time.

Sans-I/O (DESIGN.md): `receive`, `initiate`, `terminate` and `tick` take the current time and
queue output events (`pop_events`): datagrams to send, Child SAs to install or remove, and
failures to report. Randomness and key exchange objects are injected, so two engines in one
process negotiate deterministically.

Exchanges: IKE_SA_INIT (§1.2, with INVALID_KE_PAYLOAD retry §1.3/§2.7 and COOKIE §2.6), IKE_AUTH
with PSK or certificates (§2.15, RFC 7427; see authenticate.py) and the first Child SA,
INFORMATIONAL (§1.4: DELETE and liveness), request retransmission and replay of cached responses
(§2.1), NAT detection (§2.23).

Time: ``now`` is monotonic and drives every timer.  Certificate validity needs wall-clock time,
which comes from the injected ``wall_clock`` (epoch seconds; ``time.time`` by default), so tests
pin it as they pin ``now``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import struct
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import selectors as tsmod
from ..crypto.certs import subject_text
from ..crypto.errors import CryptoError
from ..crypto.ke import new_key_exchange
from ..crypto.keys import child_key_lengths, child_keymat, derive_ike_keys, skeyseed
from ..crypto.proposals import ProposalSpec
from ..crypto.selection import SelectedProposal, accept_response, select_proposal, spec_from_selected
from ..crypto.sk import sk_ciphers
from ..crypto.transforms import transform_name
from ..ids import (
    IKE_HEADER_LEN,
    IKE_PORT,
    NATT_PORT,
    DhId,
    EsnId,
    ExchangeType,
    NotifyType,
    PayloadType,
    ProtocolId,
    TransformType,
)
from ..text import printable
from ..wire.codec import enum_name
from ..wire.encrypted import SkfPayload
from ..wire.errors import WireError
from ..wire.header import Header
from ..wire.identity import IdiPayload, IdrPayload
from ..wire.key_exchange import KePayload, NoncePayload
from ..wire.message import (
    Message,
    decode_message,
    decode_payload_chain,
    encode_message,
    find_notifies,
    find_payload,
)
from ..wire.notify import DeletePayload, NotifyPayload
from ..wire.payload import Payload
from ..wire.rules import check_envelope, check_payloads
from ..wire.sa import SaPayload
from ..wire.selectors import TsiPayload, TsrPayload
from .authenticate import PUBKEY, AuthFailed, AuthMixin
from .convert import from_wire, has_additional_kes, strip_ke, to_wire
from .cookies import COOKIE, DROP, CookieJar, HalfOpenGuard
from .create_child import MAX_KE_TRIES, CreateChildMixin
from .events import Address, ChildSaUp, Failure, IkeSaDown, IkeSaUp, SendDatagram, SendKeepalive
from .fragments import (
    COMPLETE,
    RESTARTED,
    STORED,
    FragmentBudget,
    Reassembler,
    fragmentation_notify,
    offers_fragmentation,
)
from .identity import identity_text
from .ike_lifecycle import IkeLifecycleMixin
from .intermediate import IntermediateMixin
from .natd import natd_hash
from .policy import ChildPolicy, IkePolicy, policy_signature
from .sa import (
    AUTHENTICATING,
    CONNECTING,
    DEAD,
    DELETING,
    ESTABLISHED,
    CachedResponse,
    ChildSa,
    IkeSa,
    Pending,
)

log = logging.getLogger("pyike.ike")

NONCE_SIZE = 32
HALF_OPEN_TIMEOUT = 30.0
MAX_COOKIE_TRIES = 3
MAX_CHILD_SAS = 100  # Child SAs on one IKE SA (rekeys aside); more are refused with NO_ADDITIONAL_SAS
KEEPALIVE_INTERVAL = 20.0  # RFC 3948 §4: keep the NAT mapping alive; 20 s is the usual choice
ZERO_SPI = bytes(8)


class RetransmitPolicy:
    """RFC 7296 §2.1/§2.4: exponential back-off, then give up on the peer."""

    def __init__(self, timeout: float = 2.0, base: float = 1.8, tries: int = 5):
        self.timeout, self.base, self.tries = timeout, base, tries

    def delay(self, tries: int) -> float:
        return self.timeout * (self.base**tries)

    def span(self) -> float:
        """How long a request is retransmitted before its SA is given up: the longest a peer can take
        to send (or retransmit) a message we wait for."""
        return sum(self.delay(tries) for tries in range(self.tries + 1))


class Engine(CreateChildMixin, IkeLifecycleMixin, IntermediateMixin, AuthMixin):
    def __init__(
        self,
        policies: Dict[str, IkePolicy],
        random_bytes: Callable[[int], bytes] = os.urandom,
        key_exchange_factory: Callable[[int], object] = new_key_exchange,
        retransmit: Optional[RetransmitPolicy] = None,
        ike_port: int = IKE_PORT,
        nat_t_port: int = NATT_PORT,
        fragment_size: int = 1280,
        guard: Optional[HalfOpenGuard] = None,
        wall_clock: Callable[[], float] = time.time,
        max_child_sas: int = MAX_CHILD_SAS,
    ):
        self.policies = dict(policies)
        self.wall_clock = wall_clock  # epoch seconds, only for certificate validity (RFC 5280 §6.1.3)
        self.ike_port, self.nat_t_port = ike_port, nat_t_port
        self.random_bytes = random_bytes
        self.new_ke = key_exchange_factory
        self.retransmit = retransmit or RetransmitPolicy()
        self.sas: Dict[bytes, IkeSa] = {}  # by our SPI
        self.child_owners: Dict[int, IkeSa] = {}  # inbound SPI of every Child SA -> its IKE SA
        self.max_child_sas = max_child_sas
        self.half_open: Dict[Tuple[bytes, str], IkeSa] = {}  # responder: (SPIi, peer ip) -> SA
        self.events: List[object] = []
        self.counters: Dict[str, int] = {}
        self.restarts: Dict[str, float] = {}
        self.fragment_size = fragment_size  # RFC 7383 §2.5.1: 1280 is safe on every path
        self.fragment_budget = FragmentBudget()
        self.cookies = CookieJar(self.random_bytes, 0.0)
        self.guard = guard or HalfOpenGuard()  # connection -> when to initiate it again (dpd_action restart)
        self._serial = 0

    # --- output ----------------------------------------------------------------------------
    def pop_events(self) -> List[object]:
        events, self.events = self.events, []
        return events

    def _count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def _send(self, sa: IkeSa, datagrams: List[bytes]) -> None:
        for data in datagrams:
            self.events.append(SendDatagram(data, sa.local, sa.remote))

    def _fail(self, sa: IkeSa, what: str, reason: str) -> None:
        log.warning("%s: %s failed: %s", sa.key, what, reason)
        self.events.append(Failure(sa.policy.name, what, reason))

    # --- commands --------------------------------------------------------------------------
    def initiate(self, conn: str, child: Optional[str], now: float) -> str:
        """Start an IKE SA for `conn` (with its first Child SA); returns the IKE SA's key."""
        policy = self.policies.get(conn)
        if policy is None:
            raise KeyError("no connection named %r" % conn)
        if policy.remote_address is None:
            raise ValueError("connection %r has remote address %%any: it can only respond" % conn)
        child_policy = self._child_policy(policy, child)
        for sa in self.sas.values():
            if sa.policy.name == conn and sa.state in (CONNECTING, AUTHENTICATING, ESTABLISHED):
                # Already up or coming up: never a second IKE SA. A child that is not there yet
                # is added with CREATE_CHILD_SA (§1.3.1).
                wanted = child_policy.name if child_policy is not None else None
                if sa.state == ESTABLISHED and wanted and not any(c.name == wanted for c in sa.children):
                    self._start_create_child(sa, child_policy, now)
                return sa.key
        return self._initiate_sa(policy, child_policy, now).key

    def _initiate_sa(
        self,
        policy: IkePolicy,
        child_policy: Optional[ChildPolicy],
        now: float,
        remote_ip: Optional[str] = None,
    ) -> IkeSa:
        """A new IKE SA as initiator, IKE_SA_INIT sent (also for reauthentication, §2.8.3)."""
        sa = self._new_sa(
            policy,
            True,
            self.random_bytes(8),
            ZERO_SPI,
            (policy.local_address, self.ike_port),
            (remote_ip or policy.remote_address, policy.remote_port),
            now,
        )
        sa.auth_child = child_policy
        sa.offered_ike = list(enumerate(policy.ike_proposals, start=1))
        sa.nonce_i = self.random_bytes(NONCE_SIZE)
        sa.key_exchange = self.new_ke(self._first_group(policy.ike_proposals))
        self.sas[sa.spi_i] = sa
        self._send_init_request(sa, now)
        return sa

    def terminate(self, conn: str, now: float) -> int:
        """Delete every IKE SA of `conn` (§1.4.1); returns how many were found."""
        found = [sa for sa in self.sas.values() if sa.policy.name == conn and sa.state != DEAD]
        for sa in found:
            if sa.state == ESTABLISHED:
                self._remove_children(sa, "terminated by operator")
                self._deleting(sa, now)
                self._request(
                    sa,
                    ExchangeType.INFORMATIONAL,
                    [DeletePayload(ProtocolId.IKE, [])],
                    lambda msg, payloads, t, sa=sa: self._drop_sa(sa, "deleted"),
                    now,
                )
            elif sa.state != DELETING:  # a DELETING SA goes once its DELETE exchange is answered
                self._drop_sa(sa, "terminated by operator")
        return len(found)

    def update_policies(self, policies: Dict[str, IkePolicy], now: float) -> None:
        """Reload: SAs of removed or changed connections are deleted; new ones apply to new SAs."""
        for name, old in self.policies.items():
            new = policies.get(name)
            if new is None or policy_signature(new) != policy_signature(old):
                self.terminate(name, now)
        self.policies = dict(policies)

    # --- time ------------------------------------------------------------------------------
    def next_deadline(self) -> Optional[float]:
        deadlines = [sa.pending.next_at for sa in self.sas.values() if sa.pending is not None]
        deadlines += [
            sa.created_at + HALF_OPEN_TIMEOUT
            for sa in self.sas.values()
            if not sa.initiator and sa.state == CONNECTING
        ]
        deadlines += [sa.next_keepalive_at for sa in self.sas.values() if sa.next_keepalive_at is not None]
        deadlines += [sa.delete_by for sa in self.sas.values() if sa.state == DELETING and sa.delete_by]
        for sa in self.sas.values():
            if sa.state == ESTABLISHED:
                deadlines += self._child_deadlines(sa) + self._ike_deadlines(sa)
        deadlines += self._restart_deadlines()
        deadlines += [
            d for d in (sa.reassembler.next_deadline() for sa in self.sas.values() if sa.reassembler) if d
        ]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> None:
        self._restart_timers(now)
        for sa in list(self.sas.values()):
            try:
                self._tick_sa(sa, now)
            except Exception as exc:  # else the same error would come back every tick
                self._handler_failed(sa, "its timers", exc)
                self._fail(sa, "timers", "internal error; the IKE SA is deleted")
                self._drop_sa(sa, "internal error in its timers", now=now)

    def _tick_sa(self, sa: IkeSa, now: float) -> None:
        if sa.reassembler is not None:
            sa.reassembler.expire(now)
        if not sa.initiator and sa.state == CONNECTING and now >= sa.created_at + HALF_OPEN_TIMEOUT:
            self._drop_sa(sa, "half-open IKE SA timed out", quiet=True)
            return
        if sa.state == DELETING and sa.delete_by is not None and now >= sa.delete_by:
            self._drop_sa(sa, "the peer did not delete it in time", quiet=True, now=now)
            return
        if sa.state == ESTABLISHED:
            self._child_timers(sa, now)
            self._ike_timers(sa, now)
        if sa.next_keepalive_at is not None and now >= sa.next_keepalive_at:
            self.events.append(SendKeepalive(sa.local, sa.remote))
            sa.next_keepalive_at = now + KEEPALIVE_INTERVAL
        pending = sa.pending
        if pending is None or now < pending.next_at:
            return
        if pending.tries >= self.retransmit.tries:
            self._fail(
                sa,
                enum_name(ExchangeType, pending.exchange),
                "no answer after %d retransmits" % pending.tries,
            )
            self._drop_sa(sa, "peer not responding", now=now)
            return
        pending.tries += 1
        pending.next_at = now + self.retransmit.delay(pending.tries)
        self._count("retransmits")
        self._send(sa, pending.data)

    # --- input -----------------------------------------------------------------------------
    def receive(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """One IKE datagram (non-ESP marker already removed) from `remote` to `local`."""
        try:
            message = decode_message(data)
        except WireError as exc:
            self._count("invalid_messages")
            log.debug("dropping malformed IKE message from %s: %s", remote[0], exc)
            return
        header = message.header
        if header.exchange == ExchangeType.IKE_SA_INIT and not header.response:
            try:
                self._on_init_request(message, local, remote, now)
            except Exception as exc:
                self._handler_failed(None, "IKE_SA_INIT request from %s" % remote[0], exc)
                half_open = self.half_open.get((header.spi_i, remote[0]))
                if half_open is not None and half_open.state == CONNECTING:
                    self._drop_sa(half_open, "internal error", quiet=True)
            return
        our_spi = header.spi_r if header.initiator else header.spi_i
        sa = self.sas.get(our_spi)
        if sa is None or sa.state == DEAD:
            self._count("unknown_spi")
            return
        if header.response:
            self._on_response(sa, message, local, remote, now)
        else:
            self._on_request(sa, message, local, remote, now)

    def _on_response(self, sa: IkeSa, message: Message, local: Address, remote: Address, now: float) -> None:
        pending = sa.pending
        if pending is None or message.header.message_id != pending.message_id:
            self._count("unexpected_responses")
            return
        if message.header.exchange != pending.exchange:
            self._count("invalid_messages")
            return
        try:
            if message.header.exchange == ExchangeType.IKE_SA_INIT:
                check_payloads(message.header.exchange, True, message.payloads)
                payloads = message.payloads
            else:
                payloads = self._open(sa, message, now)
                if payloads is None:
                    return  # a fragment of a message that is not complete yet
                check_payloads(message.header.exchange, True, payloads)
        except (WireError, CryptoError) as exc:
            self._count("invalid_messages")
            log.info(
                "%s: ignoring invalid %s response: %s", sa.key, enum_name(ExchangeType, pending.exchange), exc
            )
            return
        sa.pending = None
        sa.last_received_at = now
        try:
            pending.on_response(message, payloads, now)
        except Exception as exc:
            what = enum_name(ExchangeType, pending.exchange)
            self._handler_failed(sa, "%s response" % what, exc)
            if sa.state not in (ESTABLISHED, DELETING, DEAD):
                self._fail(sa, what, "internal error while processing the response")
                self._drop_sa(sa, "internal error", now=now)
        self._next_queued(sa, now)

    def _on_request(self, sa: IkeSa, message: Message, local: Address, remote: Address, now: float) -> None:
        message_id = message.header.message_id
        if sa.last_response is not None and message_id == sa.last_response.message_id:
            self._answer_retransmission(sa, sa.last_response, message, local, remote)
            return
        if message_id != sa.next_peer_request_id:
            self._count("invalid_message_ids")
            return
        if sa.initiator and sa.state in (CONNECTING, AUTHENTICATING):
            # The responder's request overtook its IKE_AUTH response (§1.2: nothing else before IKE_AUTH).
            # Left unanswered, its message ID stays free: the retransmission is processed once we are up.
            self._count("early_requests")
            return
        try:
            payloads = self._open(sa, message, now)
            if payloads is None:
                return
        except (WireError, CryptoError) as exc:
            self._count("invalid_messages")
            log.info("%s: dropping request that failed integrity or syntax: %s", sa.key, exc)
            return
        digest = self._request_digest(sa, message)
        sa.request_seen = (message_id, digest, remote)
        exchange = message.header.exchange
        try:
            shape = check_payloads(exchange, False, payloads)
        except WireError as exc:
            log.info("%s: invalid %s request: %s", sa.key, enum_name(ExchangeType, exchange), exc)
            self._respond(
                sa, message, [NotifyPayload(exc.notify or NotifyType.INVALID_SYNTAX, exc.notify_data)]
            )
            return
        # A request authenticated by this IKE SA tells us where the peer is now (NAT mappings change).
        sa.local, sa.remote, sa.last_received_at = local, remote, now
        failed = False
        try:
            self._dispatch_request(sa, message, payloads, shape, now)
        except Exception as exc:
            self._handler_failed(sa, "%s request" % enum_name(ExchangeType, exchange), exc)
            failed = True
        if sa.last_response is None or sa.last_response.message_id != message_id:
            # §2.1/§2.3: a request is answered exactly once, or the peer's window stalls on its retransmits.
            failed = True
            notify = self._answer_unhandled(sa, message)
            if sa.state not in (ESTABLISHED, DELETING, DEAD):
                self._fail(sa, enum_name(ExchangeType, exchange), "%s sent to the peer" % notify)
        if failed and sa.state not in (ESTABLISHED, DELETING, DEAD):
            self._drop_sa(sa, "request could not be processed", quiet=True, now=now)  # never half-done

    def _dispatch_request(
        self, sa: IkeSa, message: Message, payloads: List[Payload], shape: str, now: float
    ) -> None:
        exchange = message.header.exchange
        if exchange == ExchangeType.IKE_INTERMEDIATE and not sa.initiator and sa.state == CONNECTING:
            self._on_intermediate_request(sa, message, payloads, now)
        elif exchange == ExchangeType.IKE_AUTH and not sa.initiator and sa.state == CONNECTING:
            self._on_auth_request(sa, message, payloads, now)
        elif exchange == ExchangeType.INFORMATIONAL and sa.state in (ESTABLISHED, DELETING):
            self._on_informational(sa, message, payloads, now)
        elif exchange == ExchangeType.IKE_FOLLOWUP_KE and sa.state in (ESTABLISHED, DELETING):
            self._on_followup_request(sa, message, payloads, now)  # RFC 9370 §2.2.4
        elif exchange == ExchangeType.CREATE_CHILD_SA and sa.state == DELETING:
            self._respond(sa, message, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])  # §2.25.2
        elif exchange == ExchangeType.CREATE_CHILD_SA and sa.state == ESTABLISHED:
            if shape == "IKE SA rekey":
                self._on_ike_rekey_request(sa, message, payloads, now)
            else:
                self._on_create_child_request(sa, message, payloads, now)
        else:
            self._count("unexpected_requests")
            log.info(
                "%s: %s request not expected in state %s",
                sa.key,
                enum_name(ExchangeType, exchange),
                sa.state,
            )

    def _answer_unhandled(self, sa: IkeSa, request: Message) -> str:
        """Answer a request that no handler answered (not expected now, or a handler failed) with an
        error notify (§2.21.2 for an IKE_AUTH); returns its name."""
        if request.header.exchange == ExchangeType.IKE_AUTH and sa.state not in (ESTABLISHED, DELETING):
            notify = NotifyType.AUTHENTICATION_FAILED
        else:
            notify = NotifyType.INVALID_SYNTAX
        self._respond(sa, request, [NotifyPayload(notify)])
        return enum_name(NotifyType, notify)

    def _handler_failed(self, sa: Optional[IkeSa], what: str, exc: Exception) -> None:
        """A bug met by a peer's message: counted and logged (escaped: the text may hold peer data)."""
        self._count("handler_errors")
        log.error(
            "%s: internal error while processing %s: %s: %s",
            sa.key if sa is not None else "-",
            what,
            type(exc).__name__,
            printable(str(exc)),
        )
        log.debug("traceback of the internal error", exc_info=exc)

    @staticmethod
    def _request_digest(sa: IkeSa, message: Message) -> bytes:
        """SHA-256 of the datagram that a retransmission must repeat: the request itself, or its first
        fragment (RFC 7383 §2.6.1); empty when the first fragment was not seen verified."""
        if check_envelope(message) != "fragment":
            return hashlib.sha256(message.raw).digest()
        first = sa.first_fragment
        return first[1] if first is not None and first[0] == message.header.message_id else b""

    def _answer_retransmission(
        self, sa: IkeSa, cached: CachedResponse, message: Message, local: Address, remote: Address
    ) -> None:
        """§2.1: a retransmitted request gets the same answer; for fragments, once, on the first one
        (RFC 7383 §2.6.1). Only an exact copy of the request from where it came is answered: the check
        runs before any integrity check, so a forged datagram with our SPIs and the last message ID
        must never make us send the (larger) response to an address of the forger's choosing."""
        encrypted = message.encrypted
        if isinstance(encrypted, SkfPayload) and encrypted.fragment_number != 1:
            return
        if (
            not cached.request_digest
            or remote != cached.request_from
            or hashlib.sha256(message.raw).digest() != cached.request_digest
        ):
            self._count("retransmissions_refused")
            return
        self._count("replayed_responses")
        for data in cached.datagrams:
            self.events.append(SendDatagram(data, local, remote))

    def _open(self, sa: IkeSa, message: Message, now: float) -> Optional[List[Payload]]:
        """The inner payloads of an SK message, or of a fragmented one once all SKF pieces are in
        (RFC 7383 §2.6: each fragment is verified before it is kept); None while incomplete."""
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
            sa.first_fragment = (message.header.message_id, hashlib.sha256(message.raw).digest())
        if complete is None:
            return None
        first_inner, plain = complete
        sa.last_plain = (message.header, first_inner, plain)
        return decode_payload_chain(first_inner, plain, IKE_HEADER_LEN)

    # --- request/response plumbing ---------------------------------------------------------
    def _request(self, sa: IkeSa, exchange: int, payloads: List[Payload], on_response, now: float) -> None:
        def send(at: float) -> None:
            message_id = sa.next_request_id
            sa.next_request_id += 1
            data = sa.protect(exchange, message_id, False, payloads)
            sa.pending = Pending(message_id, exchange, data, on_response, at, at + self.retransmit.delay(0))
            self._send(sa, data)

        if sa.pending is None:
            send(now)
        else:
            sa.queued.append(send)

    def _next_queued(self, sa: IkeSa, now: float) -> None:
        if sa.pending is None and sa.queued and sa.state != DEAD:
            sa.queued.pop(0)(now)

    def _respond(self, sa: IkeSa, request: Message, payloads: List[Payload]) -> None:
        """Answer a request; the answer consumes its message ID (§2.3) and is kept for retransmissions."""
        message_id = request.header.message_id
        data = sa.protect(request.header.exchange, message_id, True, payloads)
        seen = sa.request_seen
        if seen is not None and seen[0] == message_id:
            sa.last_response = CachedResponse(message_id, data, seen[1], seen[2])
        else:
            sa.last_response = CachedResponse(message_id, data)
        sa.next_peer_request_id = max(sa.next_peer_request_id, message_id + 1)
        self._send(sa, data)

    # --- IKE_SA_INIT (§1.2) ----------------------------------------------------------------
    def _natd_payloads(self, sa: IkeSa, spi_r: bytes) -> List[Payload]:
        source = natd_hash(sa.spi_i, spi_r, sa.local)
        if sa.policy.force_encap:
            # Pretend to be behind a NAT so that both sides use UDP encapsulation (strongSwan's
            # "encap = yes" does the same).
            source = self.random_bytes(len(source))
        return [
            NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, source),
            NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP, natd_hash(sa.spi_i, spi_r, sa.remote)),
        ]

    def _check_natd(self, sa: IkeSa, payloads: Sequence[Payload], spi_r: bytes) -> None:
        sources = find_notifies(payloads, NotifyType.NAT_DETECTION_SOURCE_IP)
        destinations = find_notifies(payloads, NotifyType.NAT_DETECTION_DESTINATION_IP)
        if not sources or not destinations:
            return
        expected_source = natd_hash(sa.spi_i, spi_r, sa.remote)
        expected_destination = natd_hash(sa.spi_i, spi_r, sa.local)
        sa.remote_behind_nat = not any(n.data == expected_source for n in sources)
        sa.local_behind_nat = not any(n.data == expected_destination for n in destinations)

    def _send_init_request(self, sa: IkeSa, now: float) -> None:
        payloads: List[Payload] = []
        if sa.cookie:
            payloads.append(NotifyPayload(NotifyType.COOKIE, sa.cookie))
        payloads += [
            SaPayload(to_wire(sa.policy.ike_proposals)),
            KePayload(sa.key_exchange.group, sa.key_exchange.public_bytes()),
            NoncePayload(sa.nonce_i),
        ]
        payloads += self._natd_payloads(sa, ZERO_SPI)
        payloads.append(fragmentation_notify())
        payloads += self._init_auth_payloads([sa.policy], responder=False)
        if has_additional_kes(sa.policy.ike_proposals):
            payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))  # RFC 9242 §3.1
        data = sa.plain(ExchangeType.IKE_SA_INIT, 0, False, payloads)
        sa.init_request = data
        sa.next_request_id = 1
        sa.pending = Pending(
            0,
            ExchangeType.IKE_SA_INIT,
            [data],
            lambda m, p, t: self._on_init_response(sa, m, t),
            now,
            now + self.retransmit.delay(0),
        )
        self._send(sa, [data])

    def _on_init_request(self, message: Message, local: Address, remote: Address, now: float) -> None:
        header = message.header
        existing = self.half_open.get((header.spi_i, remote[0]))
        if existing is not None:
            # §2.1: a retransmission gets the same answer. Anything else with this SPIi from this address
            # is not a new IKE SA either (it would orphan the half-open one): it is dropped.
            if existing.init_response and message.raw == existing.init_request and remote == existing.remote:
                self._count("replayed_responses")
                self.events.append(SendDatagram(existing.init_response, local, remote))
            else:
                self._count("retransmissions_refused")
            return
        try:
            check_payloads(ExchangeType.IKE_SA_INIT, False, message.payloads)
        except WireError as exc:
            self._count("invalid_messages")
            log.info("IKE_SA_INIT request from %s rejected: %s", remote[0], exc)
            if exc.notify is not None:
                self._init_error(header.spi_i, local, remote, exc.notify, exc.notify_data)
            return
        nonce = find_payload(message.payloads, PayloadType.NONCE).data
        cookies = find_notifies(message.payloads, NotifyType.COOKIE)
        verdict = self.guard.admit(
            remote[0],
            lambda: (
                bool(cookies) and self.cookies.check(cookies[0].data, nonce, remote[0], header.spi_i, now)
            ),
        )
        if verdict not in (DROP, COOKIE) and cookies and self.guard.require_cookie(remote[0]):
            self._count("cookies_accepted")  # §2.6: the initiator came back with a valid cookie
        if verdict == DROP:
            self._count("half_open_dropped")
            return
        if verdict == COOKIE:  # §2.6: too many half-open SAs; answer statelessly with a cookie
            self._count("cookies_sent")
            self._init_error(
                header.spi_i,
                local,
                remote,
                NotifyType.COOKIE,
                self.cookies.make(nonce, remote[0], header.spi_i, now),
            )
            return
        candidates = self._responder_candidates(local[0], remote[0])
        policy = candidates[0] if candidates else None
        if policy is None:
            self._count("no_matching_connection")
            log.info(
                "IKE_SA_INIT from %s to %s: no connection configured for these addresses", remote[0], local[0]
            )
            self._init_error(header.spi_i, local, remote, NotifyType.NO_PROPOSAL_CHOSEN)
            return
        sa_payload = find_payload(message.payloads, PayloadType.SA)
        selected = select_proposal(from_wire(sa_payload.proposals), policy.ike_proposals, ProtocolId.IKE)
        if selected is None:
            self.events.append(
                Failure(
                    policy.name,
                    "IKE_SA_INIT",
                    "NO_PROPOSAL_CHOSEN: no common IKE proposal with %s" % remote[0],
                )
            )
            self._init_error(header.spi_i, local, remote, NotifyType.NO_PROPOSAL_CHOSEN)
            return
        if selected.additional_kes and not find_notifies(
            message.payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED
        ):
            # RFC 9370 §2.2.1: additional key exchanges need IKE_INTERMEDIATE, which the peer did not offer.
            self._init_error(header.spi_i, local, remote, NotifyType.NO_PROPOSAL_CHOSEN)
            return
        ke_payload = find_payload(message.payloads, PayloadType.KE)
        if ke_payload.group != selected.dh:
            # §1.3: tell the initiator which group we want; no state is kept.
            self._init_error(
                header.spi_i, local, remote, NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", selected.dh)
            )
            return
        sa = self._new_sa(policy, False, header.spi_i, self.random_bytes(8), local, remote, now)
        sa.selected = selected
        sa.nonce_i = find_payload(message.payloads, PayloadType.NONCE).data
        sa.nonce_r = self.random_bytes(NONCE_SIZE)
        sa.init_request = message.raw
        sa.next_peer_request_id = 1
        self._check_natd(sa, message.payloads, ZERO_SPI)
        self._record_init_auth(sa, message.payloads)
        try:
            key_exchange = self.new_ke(selected.dh)
            public, shared = key_exchange.respond(ke_payload.data)
        except CryptoError as exc:
            self.events.append(
                Failure(policy.name, "IKE_SA_INIT", "invalid KE payload from %s: %s" % (remote[0], exc))
            )
            self._init_error(header.spi_i, local, remote, NotifyType.INVALID_SYNTAX)
            return
        self._derive_keys(sa, shared)
        payloads = [
            SaPayload(to_wire([spec_from_selected(selected)])),
            KePayload(selected.dh, public),
            NoncePayload(sa.nonce_r),
        ]
        payloads[0].proposals[0].number = selected.number
        payloads += self._natd_payloads(sa, sa.spi_r)
        if offers_fragmentation(message.payloads):
            sa.fragmentation = True
            payloads.append(fragmentation_notify())
        sa.additional_kes = list(selected.additional_kes)
        if sa.additional_kes:
            payloads.append(NotifyPayload(NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED))
        # RFC 7427 §4 and RFC 7296 §1.2/§3.7: hash algorithms and CERTREQ when a connection that
        # may take this peer (chosen by IDi in IKE_AUTH) uses certificates.
        payloads += self._init_auth_payloads(candidates, responder=True)
        sa.init_response = sa.plain(ExchangeType.IKE_SA_INIT, 0, True, payloads)
        self.sas[sa.spi_r] = sa
        self.half_open[(sa.spi_i, remote[0])] = sa
        self.guard.opened(remote[0])
        self._send(sa, [sa.init_response])

    def _init_error(
        self, spi_i: bytes, local: Address, remote: Address, notify: int, data: bytes = b""
    ) -> None:
        header = Header(
            spi_i=spi_i, spi_r=ZERO_SPI, exchange=ExchangeType.IKE_SA_INIT, message_id=0, response=True
        )
        self.events.append(SendDatagram(encode_message(header, [NotifyPayload(notify, data)]), local, remote))

    def _on_init_response(self, sa: IkeSa, message: Message, now: float) -> None:
        payloads = message.payloads
        cookie = find_notifies(payloads, NotifyType.COOKIE)
        if cookie:  # §2.6: repeat the request with the cookie in front
            sa.cookie_tries += 1
            if sa.cookie_tries > MAX_COOKIE_TRIES:
                self._fail(
                    sa, "IKE_SA_INIT", "the peer keeps asking for a COOKIE (%d times)" % sa.cookie_tries
                )
                self._drop_sa(sa, "cookie exchange did not converge")
                return
            sa.cookie = cookie[0].data
            self._send_init_request(sa, now)
            return
        invalid_ke = find_notifies(payloads, NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke:
            wanted = struct.unpack("!H", invalid_ke[0].data[:2])[0] if len(invalid_ke[0].data) >= 2 else None
            offered = {
                group for spec in sa.policy.ike_proposals for group, _length in spec.get(TransformType.DH)
            }
            if wanted in offered and wanted != sa.key_exchange.group and sa.ke_tries < MAX_KE_TRIES:
                sa.ke_tries += 1
                log.info("%s: peer asks for key exchange %s, retrying", sa.key, _dh_name(wanted))
                sa.key_exchange = self.new_ke(wanted)
                self._send_init_request(sa, now)
                return
            why = (
                "which we do not propose"
                if wanted not in offered
                else "again, after %d retries" % sa.ke_tries
            )
            self._fail(sa, "IKE_SA_INIT", "INVALID_KE_PAYLOAD: peer wants %s, %s" % (_dh_name(wanted), why))
            self._drop_sa(sa, "no common key exchange method")
            return
        errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        if errors:
            self._fail(sa, "IKE_SA_INIT", "peer answered %s" % enum_name(NotifyType, errors[0].notify_type))
            self._drop_sa(sa, "IKE_SA_INIT refused")
            return
        sa_payload = find_payload(payloads, PayloadType.SA)
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            chosen = from_wire(sa_payload.proposals)
            if len(chosen) != 1:
                raise CryptoError("the response must hold exactly one proposal")
            sa.selected = accept_response(sa.offered_ike, chosen[0][0], chosen[0][1])
            if ke_payload.group != sa.key_exchange.group or sa.selected.dh != sa.key_exchange.group:
                raise CryptoError("the response's KE payload does not use the accepted group")
            shared = sa.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            self._fail(sa, "IKE_SA_INIT", "invalid response: %s" % exc)
            self._drop_sa(sa, "invalid IKE_SA_INIT response")
            return
        sa.spi_r = message.header.spi_r
        sa.nonce_r = find_payload(payloads, PayloadType.NONCE).data
        sa.init_response = message.raw
        sa.fragmentation = offers_fragmentation(payloads)
        self._check_natd(sa, payloads, sa.spi_r)
        self._record_init_auth(sa, payloads)
        self._derive_keys(sa, shared)
        if sa.encap:  # §2.23: continue on port 4500 once a NAT is detected
            sa.local = (sa.local[0], self.nat_t_port)
            sa.remote = (sa.remote[0], self.nat_t_port)
        sa.state = AUTHENTICATING
        sa.additional_kes = list(sa.selected.additional_kes)
        if sa.additional_kes:
            if not find_notifies(payloads, NotifyType.INTERMEDIATE_EXCHANGE_SUPPORTED):
                self._fail(sa, "IKE_SA_INIT", "peer chose additional key exchanges without IKE_INTERMEDIATE")
                self._drop_sa(sa, "invalid IKE_SA_INIT response")
                return
            self._send_intermediate(sa, now)
        else:
            self._send_auth_request(sa, now)

    def _derive_keys(self, sa: IkeSa, shared: bytes) -> None:
        seed = skeyseed(sa.selected.prf, sa.nonce_i, sa.nonce_r, shared)
        sa.keys = derive_ike_keys(sa.selected, seed, sa.nonce_i, sa.nonce_r, sa.spi_i, sa.spi_r)
        sa.cipher_out, sa.cipher_in = sk_ciphers(sa.selected, sa.keys, sa.initiator)
        sa.max_datagram = self.fragment_size
        self._new_reassembler(sa)
        sa.key_exchange = None  # the private value is no longer needed (§2.12)

    # --- IKE_AUTH (§1.2, §2.15; the AUTH payloads themselves: authenticate.py) ---------------
    def _send_auth_request(self, sa: IkeSa, now: float) -> None:
        policy = sa.policy
        sa.ike_auth_mid = sa.next_request_id
        idi = IdiPayload(*policy.local_id)
        try:
            certs, auth = self._our_auth(sa, idi.encode_body())
        except AuthFailed as exc:
            self._fail(sa, "IKE_AUTH", str(exc))
            self._drop_sa(sa, "cannot authenticate")
            return
        # §1.2: IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr
        payloads: List[Payload] = [idi, *certs]
        if policy.auth == PUBKEY:
            payloads += self._certreq_payloads([policy])
        if policy.remote_id is not None:
            payloads.append(IdrPayload(*policy.remote_id))
        payloads.append(auth)
        child = sa.auth_child
        if child is not None:
            sa.auth_child_spi = self._new_child_spi()
            esp = strip_ke(child.esp_proposals)
            sa.auth_child_offer = list(enumerate(esp, start=1))
            sa.auth_child_ts = (list(child.local_ts), list(child.remote_ts))
            payloads += [
                SaPayload(to_wire(esp, spi=struct.pack("!I", sa.auth_child_spi))),
                TsiPayload(list(child.local_ts)),
                TsrPayload(list(child.remote_ts)),
            ]
        self._request(
            sa, ExchangeType.IKE_AUTH, payloads, lambda m, p, t: self._on_auth_response(sa, p, t), now
        )

    def _on_auth_request(self, sa: IkeSa, request: Message, payloads: List[Payload], now: float) -> None:
        self._close_half_open(sa)
        sa.ike_auth_mid = request.header.message_id
        if sa.additional_kes:
            self._fail(sa, "IKE_AUTH", "IKE_AUTH before the negotiated additional key exchanges")
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            self._drop_sa(sa, "additional key exchanges skipped", quiet=True)
            return
        idi = find_payload(payloads, PayloadType.IDi)
        auth = find_payload(payloads, PayloadType.AUTH)
        if idi is None:  # an EAP-only first request (§2.16): we do not offer EAP
            self.events.append(
                Failure(
                    sa.policy.name, "IKE_AUTH", "AUTHENTICATION_FAILED: peer %s sent no IDi" % sa.remote[0]
                )
            )
            self._respond(sa, request, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)])
            self._drop_sa(sa, "authentication failed", quiet=True)
            return
        policy = self._policy_for_peer(sa, (idi.id_type, idi.data), auth.method if auth is not None else None)
        if policy is None:
            self.events.append(
                Failure(
                    sa.policy.name,
                    "IKE_AUTH",
                    "AUTHENTICATION_FAILED: no connection accepts peer id %s" % idi.value_text(),
                )
            )
            self._respond(sa, request, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)])
            self._drop_sa(sa, "peer identity not accepted", quiet=True)
            return
        sa.policy = policy
        self._record_certreq(sa, payloads)
        reason = self._check_peer_auth(sa, policy, idi, payloads)
        idr = IdrPayload(*policy.local_id)
        if not reason:
            try:
                certs, our_auth = self._our_auth(sa, idr.encode_body())
            except AuthFailed as exc:
                reason = str(exc)
        if reason:
            # §2.21.2: an IKE_AUTH that fails authentication is answered with AUTHENTICATION_FAILED.
            self.events.append(Failure(policy.name, "IKE_AUTH", reason))
            log.warning("%s: IKE_AUTH failed: %s", sa.key, reason)
            self._respond(sa, request, [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)])
            self._drop_sa(sa, "authentication failed", quiet=True)
            return
        sa.peer_id = (idi.id_type, idi.data)
        response: List[Payload] = [idr, *certs, our_auth]  # §1.2: IDr, [CERT,] AUTH, SAr2, TSi, TSr
        child_event = None
        sa_payload = find_payload(payloads, PayloadType.SA)
        if sa_payload is not None:
            child_payloads, child_event = self._respond_child(sa, sa_payload, payloads, now)
            response += child_payloads
        self._respond(sa, request, response)
        self._established(sa, now)
        if child_event is not None:
            self.events.append(child_event)

    def _respond_child(self, sa: IkeSa, sa_payload: SaPayload, payloads: List[Payload], now: float):
        """The responder's half of a Child SA in IKE_AUTH: payloads for the response, and the event."""
        tsi = find_payload(payloads, PayloadType.TSi).selectors
        tsr = find_payload(payloads, PayloadType.TSr).selectors
        for child in sa.policy.children.values():
            remote_ts = tsmod.narrow(tsi, child.remote_ts)
            local_ts = tsmod.narrow(tsr, child.local_ts)
            if remote_ts and local_ts:
                break
        else:
            self.events.append(
                Failure(
                    sa.policy.name,
                    "IKE_AUTH child",
                    "TS_UNACCEPTABLE: peer proposed %s === %s" % (tsmod.describe(tsi), tsmod.describe(tsr)),
                )
            )
            return [NotifyPayload(NotifyType.TS_UNACCEPTABLE)], None
        selected = select_proposal(
            from_wire(sa_payload.proposals), strip_ke(child.esp_proposals), ProtocolId.ESP
        )
        if selected is None:
            self.events.append(
                Failure(
                    sa.policy.name,
                    "IKE_AUTH child %s" % child.name,
                    "NO_PROPOSAL_CHOSEN: no common ESP proposal",
                )
            )
            return [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)], None
        peer_proposal = next(p for p in sa_payload.proposals if p.number == selected.number)
        if len(peer_proposal.spi) != 4:
            return [NotifyPayload(NotifyType.INVALID_SYNTAX)], None
        spi_in = self._new_child_spi()
        reply = to_wire([spec_from_selected(selected)], spi=struct.pack("!I", spi_in))
        reply[0].number = selected.number
        event = self._child_up(
            sa, child, selected, spi_in, struct.unpack("!I", peer_proposal.spi)[0], local_ts, remote_ts, now
        )
        return [SaPayload(reply), TsiPayload(remote_ts), TsrPayload(local_ts)], event

    def _on_auth_response(self, sa: IkeSa, payloads: List[Payload], now: float) -> None:
        errors = [
            n
            for n in payloads
            if isinstance(n, NotifyPayload) and n.notify_type == NotifyType.AUTHENTICATION_FAILED
        ]
        if errors or find_payload(payloads, PayloadType.AUTH) is None:
            ours = ""
            if sa.policy.auth == PUBKEY and sa.policy.credential is not None:
                ours = " (our certificate %s)" % subject_text(sa.policy.credential.certificate)
            self._fail(
                sa,
                "IKE_AUTH",
                "AUTHENTICATION_FAILED: peer %s did not accept our authentication%s" % (sa.remote[0], ours),
            )
            self._drop_sa(sa, "authentication failed")
            return
        idr = find_payload(payloads, PayloadType.IDr)
        if idr is None:
            reason = "AUTHENTICATION_FAILED: peer %s sent AUTH without IDr" % sa.remote[0]
        elif sa.policy.remote_id is not None and (idr.id_type, idr.data) != tuple(sa.policy.remote_id):
            reason = (
                "AUTHENTICATION_FAILED: peer identified as %s, expected another identity" % idr.value_text()
            )
        else:
            reason = self._check_peer_auth(sa, sa.policy, idr, payloads)
        if reason:
            self._fail(sa, "IKE_AUTH", reason)
            # §2.21.2: tell the responder, then forget the SA without waiting for an answer.
            self._send(
                sa,
                sa.protect(
                    ExchangeType.INFORMATIONAL,
                    sa.next_request_id,
                    False,
                    [NotifyPayload(NotifyType.AUTHENTICATION_FAILED)],
                ),
            )
            self._drop_sa(sa, "authentication failed")
            return
        sa.peer_id = (idr.id_type, idr.data)
        self._established(sa, now)
        if sa.auth_child is not None:
            self._accept_child(sa, payloads, now)

    def _accept_child(self, sa: IkeSa, payloads: List[Payload], now: float) -> None:
        child = sa.auth_child
        child_errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        sa_payload = find_payload(payloads, PayloadType.SA)
        if child_errors or sa_payload is None:
            reason = enum_name(NotifyType, child_errors[0].notify_type) if child_errors else "no SA payload"
            self._fail(sa, "IKE_AUTH child %s" % child.name, "%s (the IKE SA stays up)" % reason)
            return
        try:
            chosen = from_wire(sa_payload.proposals)
            if len(chosen) != 1:
                raise CryptoError("the response must hold exactly one ESP proposal")
            selected = accept_response(sa.auth_child_offer, chosen[0][0], chosen[0][1])
            spi = sa_payload.proposals[0].spi
            if len(spi) != 4:
                raise CryptoError("the ESP SPI must be 4 bytes")
            local_ts = tsmod.address_ranges(find_payload(payloads, PayloadType.TSi).selectors)
            remote_ts = tsmod.address_ranges(find_payload(payloads, PayloadType.TSr).selectors)
            if not (
                tsmod.is_subset(local_ts, sa.auth_child_ts[0])
                and tsmod.is_subset(remote_ts, sa.auth_child_ts[1])
            ):
                raise CryptoError("the narrowed traffic selectors are not within those we proposed")
        except CryptoError as exc:
            self._fail(sa, "IKE_AUTH child %s" % child.name, "invalid response: %s" % exc)
            return
        self.events.append(
            self._child_up(
                sa, child, selected, sa.auth_child_spi, struct.unpack("!I", spi)[0], local_ts, remote_ts, now
            )
        )

    def _child_up(
        self,
        sa: IkeSa,
        child: ChildPolicy,
        selected: SelectedProposal,
        spi_in: int,
        spi_out: int,
        local_ts,
        remote_ts,
        now: float,
        nonces: Optional[Tuple[bytes, bytes]] = None,
        exchange_initiator: Optional[bool] = None,
        dh_secret: Optional[bytes] = None,
        rekey_of: Optional[int] = None,
        outbound: bool = True,
        additional_secrets: Sequence[bytes] = (),
    ) -> ChildSaUp:
        """Derive the Child SA's keys (§2.17) and record it; `nonces` and `exchange_initiator` are those of
        the exchange that created it (IKE_AUTH by default, else CREATE_CHILD_SA); `additional_secrets` are
        those of its IKE_FOLLOWUP_KE exchanges (RFC 9370 §2.2.4)."""
        ni, nr = nonces or (sa.nonce_i, sa.nonce_r)
        we_initiated = sa.initiator if exchange_initiator is None else exchange_initiator
        encr_len, integ_len = child_key_lengths(selected.encr, selected.key_length, selected.integ)
        keys = child_keymat(
            sa.selected.prf, sa.keys.sk_d, ni, nr, encr_len, integ_len, dh_secret, additional_secrets
        )
        if we_initiated:
            out_keys, in_keys = (keys.encr_i, keys.integ_i), (keys.encr_r, keys.integ_r)
        else:
            out_keys, in_keys = (keys.encr_r, keys.integ_r), (keys.encr_i, keys.integ_i)
        proposal = "/".join(transform_name(t, i, k) for t, i, k in selected.transforms)
        record = ChildSa(
            child.name, spi_in, spi_out, proposal, list(local_ts), list(remote_ts), sa.encap, now
        )
        record.policy = child
        record.outbound_active = outbound
        self._schedule_child_lifetime(record, now)
        sa.children.append(record)
        self.child_owners[spi_in] = sa
        log.info(
            "%s: CHILD_SA %s %s with SPIs %08x_i %08x_o and TS %s === %s",
            sa.key,
            child.name,
            "rekeyed" if rekey_of is not None else "established",
            spi_in,
            spi_out,
            tsmod.describe(local_ts),
            tsmod.describe(remote_ts),
        )
        event = ChildSaUp(
            conn=sa.policy.name,
            child=child.name,
            ike_sa=sa.key,
            spi_in=spi_in,
            spi_out=spi_out,
            encr_id=selected.encr,
            key_length=selected.key_length,
            integ_id=selected.integ if selected.integ else None,
            esn=selected.esn == EsnId.ESN,
            encr_key_in=in_keys[0],
            integ_key_in=in_keys[1],
            encr_key_out=out_keys[0],
            integ_key_out=out_keys[1],
            local_ts=list(local_ts),
            remote_ts=list(remote_ts),
            local=sa.local,
            remote=sa.remote,
            encap=sa.encap,
            proposal=proposal,
            rekey_of=rekey_of,
            outbound=outbound,
        )
        self._child_sa_installed(sa, record, event)  # volume limits, twins in a parallel IKE SA
        return event

    def _established(self, sa: IkeSa, now: float) -> None:
        sa.state = ESTABLISHED
        sa.established_at = now
        self._schedule_ike_lifetime(sa, now)
        if sa.local_behind_nat:
            sa.next_keepalive_at = now + KEEPALIVE_INTERVAL
        log.info(
            "%s: IKE_SA established between %s and %s (%s)",
            sa.key,
            sa.local[0],
            sa.remote[0],
            sa.proposal_text,
        )
        self.events.append(IkeSaUp(sa.policy.name, sa.key, sa.local, sa.remote))
        self._ike_sa_established(sa, now)  # reauthentication, duplicate IKE SAs

    # --- INFORMATIONAL (§1.4) --------------------------------------------------------------
    def _on_informational(self, sa: IkeSa, request: Message, payloads: List[Payload], now: float) -> None:
        response: List[Payload] = []
        delete_ike = False
        for payload in payloads:
            if isinstance(payload, DeletePayload):
                if payload.protocol == ProtocolId.IKE:
                    delete_ike = True
                elif payload.protocol == ProtocolId.ESP:
                    ours = []
                    by_spi_out = {child.spi_out: child for child in sa.children}  # one look-up per SPI
                    for spi in payload.spis:
                        child = by_spi_out.pop(struct.unpack("!I", spi)[0], None) if len(spi) == 4 else None
                        if child is not None:
                            if not child.delete_sent:  # §1.4.1: crossing deletes answer without a Delete
                                ours.append(struct.pack("!I", child.spi_in))
                            self._peer_deleted_child(sa, child)
                    if ours:
                        response.append(DeletePayload(ProtocolId.ESP, ours))
            elif (
                isinstance(payload, NotifyPayload) and payload.notify_type == NotifyType.AUTHENTICATION_FAILED
            ):
                self._fail(sa, "IKE_AUTH", "AUTHENTICATION_FAILED: peer rejected our authentication")
                delete_ike = True
        self._respond(sa, request, [] if delete_ike else response)
        if delete_ike:
            self._remove_children(sa, "IKE SA deleted by peer")
            self._drop_sa(sa, "deleted by peer")

    # --- SA bookkeeping --------------------------------------------------------------------
    def _new_sa(
        self,
        policy: IkePolicy,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        local: Address,
        remote: Address,
        now: float,
    ) -> IkeSa:
        self._serial += 1
        return IkeSa(
            "%s#%d" % (policy.name, self._serial),
            policy,
            initiator,
            spi_i,
            spi_r,
            local,
            remote,
            now,
            last_received_at=now,
        )

    def _new_reassembler(self, sa: IkeSa) -> None:
        """RFC 7383 reassembly with the SA's (new) inbound keys; what the old one held is given back."""
        if sa.reassembler is not None:
            sa.reassembler.clear()
        sa.reassembler = Reassembler(sa.cipher_in, self.fragment_budget, address=sa.remote[0])

    def _deleting(self, sa: IkeSa, now: float) -> None:
        """`sa` is on its way out (a DELETE exchange, ours or the peer's after a rekey, §1.4.1/§2.18): no
        new exchanges on it, and it goes at `delete_by` whatever the peer does."""
        sa.state = DELETING
        sa.delete_by = now + self.retransmit.span()

    def _close_half_open(self, sa: IkeSa) -> None:
        for key, half in list(self.half_open.items()):
            if half is sa:
                del self.half_open[key]
                self.guard.closed(key[1])

    def _new_child_spi(self) -> int:
        """A random inbound ESP SPI that no Child SA of ours uses (RFC 4303 §2.1: it names the SA)."""
        while True:
            spi = struct.unpack("!I", self.random_bytes(4))[0]
            if spi > 255 and spi not in self.child_owners:  # 1..255 are reserved by IANA
                return spi

    def _remove_children(self, sa: IkeSa, reason: str) -> None:
        for child in list(sa.children):
            self._remove_child(sa, child, reason)

    def _drop_sa(self, sa: IkeSa, reason: str, quiet: bool = False, now: Optional[float] = None) -> None:
        if sa.state == DEAD:
            return
        self._maybe_restart(sa, reason, now)
        self._ike_sa_dropped(sa, now)
        was_established = sa.state in (ESTABLISHED, DELETING)
        self._remove_children(sa, reason)
        sa.state = DEAD
        sa.pending = None
        sa.next_keepalive_at = None
        sa.queued = []
        self.sas.pop(sa.our_spi, None)
        self._close_half_open(sa)
        if sa.reassembler is not None:
            sa.reassembler.clear()
        if was_established or not quiet:
            self.events.append(IkeSaDown(sa.policy.name, sa.key, reason))

    def _first_group(self, proposals: Sequence[ProposalSpec]) -> int:
        for spec in proposals:
            groups = spec.get(TransformType.DH)
            if groups:
                return groups[0][0]
        raise ValueError("no key exchange method in the IKE proposals")

    def _child_policy(self, policy: IkePolicy, child: Optional[str]) -> Optional[ChildPolicy]:
        if child is None:
            return next(iter(policy.children.values()), None)
        if child not in policy.children:
            raise KeyError("connection %r has no child %r" % (policy.name, child))
        return policy.children[child]

    def _responder_candidates(self, local_ip: str, remote_ip: str) -> List[IkePolicy]:
        def matches(configured: Optional[str], actual: str) -> bool:
            if configured in (None, "", "%any", "0.0.0.0", "::"):  # noqa: S104 - wildcards, not a bind
                return True
            try:
                return ipaddress.ip_address(configured) == ipaddress.ip_address(actual)
            except ValueError:
                return False

        exact = [
            p
            for p in self.policies.values()
            if matches(p.local_address, local_ip)
            and p.remote_address
            and matches(p.remote_address, remote_ip)
        ]
        wildcard = [
            p for p in self.policies.values() if matches(p.local_address, local_ip) and not p.remote_address
        ]
        return exact + wildcard

    # --- introspection ---------------------------------------------------------------------
    def describe_sas(self, now: float) -> List[dict]:
        out = []
        for sa in self.sas.values():
            out.append(
                {
                    "name": sa.policy.name,
                    "ike_sa": sa.key,
                    "state": sa.state,
                    "initiator": sa.initiator,
                    "local_address": "%s[%d]" % sa.local,
                    "remote_address": "%s[%d]" % sa.remote,
                    "local_id": identity_text(sa.policy.local_id),
                    "remote_id": identity_text(sa.peer_id) if sa.peer_id else "",
                    "auth": sa.policy.auth,
                    "remote_auth": sa.peer_auth,
                    "remote_cert": sa.peer_cert,
                    "spi_i": sa.spi_i.hex(),
                    "spi_r": sa.spi_r.hex(),
                    "proposal": sa.proposal_text,
                    "nat": {"local": sa.local_behind_nat, "remote": sa.remote_behind_nat, "encap": sa.encap},
                    "established_seconds": None
                    if sa.established_at is None
                    else round(now - sa.established_at, 3),
                    "children": [
                        {
                            "name": child.name,
                            "state": child.state,
                            "spi_in": "%08x" % child.spi_in,
                            "spi_out": "%08x" % child.spi_out,
                            "proposal": child.proposal,
                            "local_ts": tsmod.describe(child.local_ts),
                            "remote_ts": tsmod.describe(child.remote_ts),
                            "encap": child.encap,
                            "installed_seconds": round(now - child.established_at, 3),
                        }
                        for child in sa.children
                    ],
                }
            )
        return out


def _dh_name(group: Optional[int]) -> str:
    try:
        return DhId(group).name
    except (ValueError, TypeError):
        return "group %s" % group
