"""CREATE_CHILD_SA for Child SAs (RFC 7296 §1.3.1, §1.3.3, §2.8, §2.8.1): more Child SAs on an IKE SA,
rekeying make-before-break, PFS, and simultaneous-rekey collisions. A mixin of the Engine.

Make-before-break: the exchange's responder installs the new inbound SA before it answers and keeps
sending on the old SA until the old one is deleted; the initiator switches its outbound SA when the
answer arrives and then deletes the old SA. At every moment each side can receive what the other sends.

With RFC 9370 additional key exchanges in the accepted proposal, "the answer" is that of the last
IKE_FOLLOWUP_KE exchange (followup.py): both halves below finish there instead.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from .. import selectors as tsmod
from ..crypto.errors import CryptoError
from ..crypto.selection import accept_response, select_proposal, spec_from_selected
from ..ids import ExchangeType, NotifyType, PayloadType, ProtocolId, TransformType
from ..wire.codec import enum_name
from ..wire.key_exchange import KePayload, NoncePayload
from ..wire.message import find_notifies, find_payload
from ..wire.notify import DeletePayload, NotifyPayload
from ..wire.payload import Payload
from ..wire.sa import SaPayload
from ..wire.selectors import TsiPayload, TsrPayload
from .convert import from_wire, to_wire
from .events import ChildSaDown
from .followup import FollowupMixin, lost_collision
from .policy import ChildPolicy
from .sa import ESTABLISHED, INSTALLED, REKEYED, REKEYING, ChildSa, IkeSa

NONCE_SIZE = 32
HARD_LIFETIME_FACTOR = 1.1  # strongSwan: life_time = rekey_time * 110% by default
JITTER_FRACTION = 0.1  # strongSwan: rand_time = over_time = 10% of rekey_time
RETRY_DELAY = 5.0  # after TEMPORARY_FAILURE (§2.25)
MAX_KE_TRIES = 3  # IKE_SA_INIT or CREATE_CHILD_SA sent again after INVALID_KE_PAYLOAD (§1.3, §1.3.1)


@dataclass
class ChildExchange:
    """Our CREATE_CHILD_SA request in flight."""

    policy: ChildPolicy
    spi_in: int
    nonce: bytes = field(repr=False)
    key_exchange: Any
    offer: List[Any]
    local_ts: List[Any]
    remote_ts: List[Any]
    rekeying: Optional[ChildSa] = None
    peer_nonce: bytes = field(default=b"", repr=False)
    ke_tries: int = 0  # sent again after INVALID_KE_PAYLOAD (§1.3.1); at most MAX_KE_TRIES times


@dataclass
class PeerRekey:
    """A rekey of one of our Child SAs that the peer started while ours was in flight (§2.8.1)."""

    nonce_i: bytes = field(repr=False)
    nonce_r: bytes = field(repr=False)
    new_spi_in: int = 0


@dataclass
class Answered:
    """A CREATE_CHILD_SA request we accepted: what the Child SA it creates is made of."""

    policy: ChildPolicy
    selected: Any
    spi_in: int
    spi_out: int
    local_ts: List[Any]
    remote_ts: List[Any]
    nonce_i: bytes = field(repr=False)
    nonce_r: bytes = field(repr=False)
    secret: Optional[bytes] = field(repr=False)
    old: Optional[ChildSa] = None  # the Child SA it rekeys


class CreateChildMixin(FollowupMixin):  # RFC 9370 §2.2.4: Child SAs may need IKE_FOLLOWUP_KE
    # --- scheduling ------------------------------------------------------------------------
    def _jitter(self, span: float) -> float:
        fraction = int.from_bytes(self.random_bytes(2), "big") / 65535.0
        return span * JITTER_FRACTION * fraction

    def _schedule_child_lifetime(self, child: ChildSa, now: float) -> None:
        rekey_time = child.policy.rekey_time if child.policy is not None else 0
        if rekey_time and rekey_time > 0:
            # Random jitter keeps both ends from rekeying at the same moment (§2.8.1 collisions are rare).
            child.rekey_at = now + rekey_time - self._jitter(rekey_time)
            child.expire_at = now + rekey_time * HARD_LIFETIME_FACTOR

    def _retry_at(self, child: ChildSa, now: float) -> float:
        """When to try a failed rekey again: soon, and well before the hard lifetime ends."""
        delay = RETRY_DELAY
        if child.expire_at is not None:
            delay = min(delay, max(0.1, (child.expire_at - now) / 3))
        return now + delay

    def _child_deadlines(self, sa: IkeSa) -> List[float]:
        deadlines = self._followup_deadlines(sa)
        for child in sa.children:
            if child.state == INSTALLED and child.rekey_at is not None:
                deadlines.append(child.rekey_at)
            if child.expire_at is not None:
                deadlines.append(child.expire_at)
        return deadlines

    def _child_timers(self, sa: IkeSa, now: float) -> None:
        self._followup_timers(sa, now)
        for child in list(sa.children):
            if child.expire_at is not None and now >= child.expire_at:
                if child.delete_sent:  # our DELETE was never answered: the SA goes all the same
                    self._remove_child(sa, child, "its DELETE was not answered in time")
                elif child.state == REKEYED:  # replaced, but the peer never deleted it (§2.8)
                    self._send_child_delete(sa, child, now, "the peer did not delete it after a rekey")
                else:
                    self._delete_child(sa, child, now, "hard lifetime expired")
            elif child.state == INSTALLED and child.rekey_at is not None and now >= child.rekey_at:
                child.rekey_at = None
                self._start_create_child(sa, child.policy, now, rekeying=child)

    # --- commands --------------------------------------------------------------------------
    def rekey_child(self, conn: str, child_name: Optional[str], now: float) -> int:
        """Rekey the installed Child SAs of `conn` (one child, or all); returns how many were started."""
        started = 0
        for sa in list(self.sas.values()):
            if sa.policy.name != conn or sa.state != ESTABLISHED:
                continue
            for child in list(sa.children):
                if child.state == INSTALLED and child_name in (None, child.name) and child.policy is not None:
                    self._start_create_child(sa, child.policy, now, rekeying=child)
                    started += 1
        return started

    # --- initiator -------------------------------------------------------------------------
    def _start_create_child(
        self,
        sa: IkeSa,
        policy: ChildPolicy,
        now: float,
        rekeying: Optional[ChildSa] = None,
        ke_tries: int = 0,
    ) -> None:
        if rekeying is not None and self._ike_rekey_underway(sa):
            # §2.25.2: not while the IKE SA is being rekeyed. Queued behind that exchange, the request
            # would die with the old IKE SA; a little later it goes over the new one instead.
            rekeying.state = INSTALLED
            rekeying.rekey_exchange = None
            rekeying.rekey_at = self._retry_at(rekeying, now)
            return
        spi_in = self._new_child_spi()
        nonce = self.random_bytes(NONCE_SIZE)
        groups = [g for spec in policy.esp_proposals for g, _length in spec.get(TransformType.DH) if g]
        key_exchange = self.new_ke(groups[0]) if groups else None  # a KE in ESP proposals means PFS
        local_ts = list(rekeying.local_ts if rekeying is not None else policy.local_ts)
        remote_ts = list(rekeying.remote_ts if rekeying is not None else policy.remote_ts)
        exchange = ChildExchange(
            policy,
            spi_in,
            nonce,
            key_exchange,
            list(enumerate(policy.esp_proposals, 1)),
            local_ts,
            remote_ts,
            rekeying,
            ke_tries=ke_tries,
        )
        payloads: List[Payload] = []
        if rekeying is not None:
            rekeying.state = REKEYING
            rekeying.rekey_exchange = exchange
            payloads.append(
                NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, struct.pack("!I", rekeying.spi_in))
            )
        payloads += [
            SaPayload(to_wire(policy.esp_proposals, spi=struct.pack("!I", spi_in))),
            NoncePayload(nonce),
        ]
        if key_exchange is not None:
            payloads.append(KePayload(key_exchange.group, key_exchange.public_bytes()))
        payloads += [TsiPayload(local_ts), TsrPayload(remote_ts)]
        self._request(
            sa,
            ExchangeType.CREATE_CHILD_SA,
            payloads,
            lambda message, inner, at: self._on_create_child_response(sa, exchange, inner, at),
            now,
        )

    def _on_create_child_response(
        self, sa: IkeSa, exchange: ChildExchange, payloads: List[Payload], now: float
    ) -> None:
        if self._rekeyed_child_gone(sa, exchange, payloads, now):  # child_lifetimes.py, §2.25.1
            return
        old = exchange.rekeying
        what = "CREATE_CHILD_SA %s%s" % (exchange.policy.name, " rekey" if old is not None else "")
        errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        if errors:
            if old is not None:
                old.rekey_exchange = None
            code = errors[0].notify_type
            if code == NotifyType.INVALID_KE_PAYLOAD and len(errors[0].data) >= 2:
                wanted = struct.unpack("!H", errors[0].data[:2])[0]
                offered = {
                    g for spec in exchange.policy.esp_proposals for g, _length in spec.get(TransformType.DH)
                }
                if wanted in offered and exchange.ke_tries < MAX_KE_TRIES:
                    self._retry_child_with_group(sa, exchange, wanted, now)
                    return
            # TEMPORARY_FAILURE and friends: try again a little later
            self._abort_create_child(
                sa, exchange, what, "peer answered %s" % enum_name(NotifyType, code), now
            )
            return
        try:
            sa_payload = find_payload(payloads, PayloadType.SA)
            chosen = from_wire(sa_payload.proposals)
            if len(chosen) != 1:
                raise CryptoError("the response must hold exactly one ESP proposal")
            selected = accept_response(exchange.offer, chosen[0][0], chosen[0][1])
            spi = sa_payload.proposals[0].spi
            if len(spi) != 4:
                raise CryptoError("the ESP SPI must be 4 bytes")
            secret = None
            ke_payload = find_payload(payloads, PayloadType.KE)
            if selected.dh:
                if (
                    exchange.key_exchange is None
                    or ke_payload is None
                    or ke_payload.group != exchange.key_exchange.group
                ):
                    raise CryptoError(
                        "the accepted proposal needs a key exchange the response does not carry"
                    )
                secret = exchange.key_exchange.shared_secret(ke_payload.data)
            elif selected.additional_kes:
                raise CryptoError("additional key exchanges need a main key exchange (RFC 9370 §2.2.4)")
            local_ts = tsmod.address_ranges(find_payload(payloads, PayloadType.TSi).selectors)
            remote_ts = tsmod.address_ranges(find_payload(payloads, PayloadType.TSr).selectors)
            if not (
                tsmod.is_subset(local_ts, exchange.local_ts)
                and tsmod.is_subset(remote_ts, exchange.remote_ts)
            ):
                raise CryptoError("the narrowed traffic selectors are not within those we proposed")
        except CryptoError as exc:
            self._abort_create_child(sa, exchange, what, "invalid response: %s" % exc, now)
            return
        exchange.key_exchange = None  # the private value is no longer needed (§2.12)
        nonce_r = find_payload(payloads, PayloadType.NONCE).data
        spi_out = struct.unpack("!I", spi)[0]

        def finish(additional: List[bytes], at: float) -> None:
            self._finish_create_child(
                sa, exchange, selected, spi_out, local_ts, remote_ts, nonce_r, secret, additional, at
            )

        if not selected.additional_kes:
            finish([], now)
            return
        theirs = old.collision if old is not None else None
        if theirs is not None and lost_collision(exchange.nonce, nonce_r, theirs.nonce_i, theirs.nonce_r):
            # RFC 9370 §2.2.4 with RFC 7296 §2.8.1: the peer's simultaneous rekey of this SA wins. Ours
            # created nothing yet, so it just stops here; the peer's responder state for it times out.
            old.rekey_exchange = None
            if theirs.new_spi_in:
                old.replaced_by = theirs.new_spi_in
            self._count("child_rekey_collisions_lost")
            return
        self._start_followups(
            sa,
            payloads,
            selected.additional_kes,
            what,
            finish,
            lambda reason, at: self._abort_create_child(sa, exchange, what, reason, at),
            now,
        )

    def _abort_create_child(
        self, sa: IkeSa, exchange: ChildExchange, what: str, reason: str, now: float
    ) -> None:
        """Our CREATE_CHILD_SA (or its IKE_FOLLOWUP_KE exchanges) failed: no new SA; a rekeyed one stays."""
        self._fail(sa, what, reason)
        old = exchange.rekeying
        if old is not None:
            old.rekey_exchange = None
            if old.state == REKEYING:  # it may have moved to a rekeyed IKE SA meanwhile: its timers go on
                old.state = INSTALLED
                old.rekey_at = self._retry_at(old, now)

    def _finish_create_child(
        self,
        sa: IkeSa,
        exchange: ChildExchange,
        selected: Any,
        spi_out: int,
        local_ts: List[Any],
        remote_ts: List[Any],
        nonce_r: bytes,
        secret: Optional[bytes],
        additional: List[bytes],
        now: float,
    ) -> None:
        """Install the Child SA our CREATE_CHILD_SA created; for a rekey switch to it and delete the old one."""
        old = exchange.rekeying
        if old is not None:
            old.rekey_exchange = None
        lost = False
        if old is not None and old.collision is not None:
            # §2.8.1: both ends rekeyed the same Child SA; the SA created with the lowest nonce
            # is redundant and is deleted by the end that created it.
            theirs = old.collision
            lost = lost_collision(exchange.nonce, nonce_r, theirs.nonce_i, theirs.nonce_r)
        event = self._child_up(
            sa,
            exchange.policy,
            selected,
            exchange.spi_in,
            spi_out,
            local_ts,
            remote_ts,
            now,
            nonces=(exchange.nonce, nonce_r),
            exchange_initiator=True,
            dh_secret=secret,
            rekey_of=old.spi_in if old is not None else None,
            outbound=not lost,
            additional_secrets=additional,
        )
        self.events.append(event)
        if old is None:
            return
        if lost:
            redundant = next(c for c in sa.children if c.spi_in == exchange.spi_in)
            redundant.state = REKEYED
            self._send_child_delete(sa, redundant, now, "redundant after a rekey collision")
            old.replaced_by = old.collision.new_spi_in
            self._await_peer_delete(old, now)  # the peer's rekey won: the peer deletes the old SA
            return
        old.state = REKEYED
        old.replaced_by = exchange.spi_in
        self._send_child_delete(sa, old, now, "rekeyed")

    def _retry_child_with_group(self, sa: IkeSa, exchange: ChildExchange, group: int, now: float) -> None:
        policy = exchange.policy
        reordered = sorted(
            policy.esp_proposals, key=lambda spec: 0 if (group, None) in spec.get(TransformType.DH) else 1
        )
        retry_policy = dataclasses.replace(policy, esp_proposals=reordered)
        self._start_create_child(
            sa, retry_policy, now, rekeying=exchange.rekeying, ke_tries=exchange.ke_tries + 1
        )

    def _await_peer_delete(self, child: ChildSa, now: float) -> None:
        """`child` was replaced and the peer deletes it; should that DELETE not come while the peer could
        still be retransmitting it, the hard expiry (_child_timers) deletes it from our side."""
        child.state = REKEYED
        child.rekey_at = None
        deadline = now + self.retransmit.span()
        child.expire_at = deadline if child.expire_at is None else min(child.expire_at, deadline)

    def _send_child_delete(self, sa: IkeSa, child: ChildSa, now: float, reason: str) -> None:
        """INFORMATIONAL with D(ESP, our inbound SPI) (§1.4.1); the SA goes when the answer arrives, or
        (should the exchange wedge) at its expiry."""

        def done(message, inner, at, child=child):
            if child in sa.children:
                self._remove_child(
                    sa,
                    child,
                    reason,
                    replaced=child.replaced_by is not None or reason.startswith("redundant"),
                )

        child.delete_sent = True
        child.expire_at = now + self.retransmit.span()
        self._request(
            sa,
            ExchangeType.INFORMATIONAL,
            [DeletePayload(ProtocolId.ESP, [struct.pack("!I", child.spi_in)])],
            done,
            now,
        )

    def _delete_child(self, sa: IkeSa, child: ChildSa, now: float, reason: str) -> None:
        child.state = REKEYED
        self._send_child_delete(sa, child, now, reason)

    # --- responder -------------------------------------------------------------------------
    def _on_create_child_request(self, sa: IkeSa, request: Any, payloads: List[Payload], now: float) -> None:
        if self._ike_rekey_underway(sa):
            # §2.25.2: no Child SA is created or rekeyed while the IKE SA is being rekeyed; the peer retries.
            self._respond(sa, request, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])
            return
        rekey = [n for n in find_notifies(payloads, NotifyType.REKEY_SA) if n.protocol == ProtocolId.ESP]
        old = None
        if rekey:
            spi = struct.unpack("!I", rekey[0].spi)[0] if len(rekey[0].spi) == 4 else -1
            old = next((c for c in sa.children if c.spi_out == spi), None)
            if old is None:
                self._respond(
                    sa,
                    request,
                    [NotifyPayload(NotifyType.CHILD_SA_NOT_FOUND, b"", ProtocolId.ESP, rekey[0].spi)],
                )
                return
            if old.state == REKEYED:
                self._respond(sa, request, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])
                return
        elif self._child_count(sa) >= self.max_child_sas:
            self._fail(
                sa,
                "CREATE_CHILD_SA",
                "NO_ADDITIONAL_SAS: the peer asked for more than %d Child SAs on one IKE SA"
                % self.max_child_sas,
            )
            self._respond(sa, request, [NotifyPayload(NotifyType.NO_ADDITIONAL_SAS)])
            return
        tsi = find_payload(payloads, PayloadType.TSi).selectors
        tsr = find_payload(payloads, PayloadType.TSr).selectors
        candidates = (
            [old.policy] if old is not None and old.policy is not None else list(sa.policy.children.values())
        )
        for policy in candidates:
            remote_ts, local_ts = tsmod.narrow(tsi, policy.remote_ts), tsmod.narrow(tsr, policy.local_ts)
            if remote_ts and local_ts:
                break
        else:
            self._fail(
                sa,
                "CREATE_CHILD_SA",
                "TS_UNACCEPTABLE: peer proposed %s === %s" % (tsmod.describe(tsi), tsmod.describe(tsr)),
            )
            self._respond(sa, request, [NotifyPayload(NotifyType.TS_UNACCEPTABLE)])
            return
        sa_payload = find_payload(payloads, PayloadType.SA)
        selected = select_proposal(from_wire(sa_payload.proposals), policy.esp_proposals, ProtocolId.ESP)
        if selected is None:
            self._fail(sa, "CREATE_CHILD_SA %s" % policy.name, "NO_PROPOSAL_CHOSEN: no common ESP proposal")
            self._respond(sa, request, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        ke_payload = find_payload(payloads, PayloadType.KE)
        secret, our_ke = None, None
        if selected.dh:
            if ke_payload is None or ke_payload.group != selected.dh:
                self._respond(
                    sa,
                    request,
                    [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", selected.dh))],
                )
                return
            try:
                public, secret = self.new_ke(selected.dh).respond(ke_payload.data)
            except CryptoError as exc:
                self._fail(sa, "CREATE_CHILD_SA %s" % policy.name, "invalid KE payload: %s" % exc)
                self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
                return
            our_ke = KePayload(selected.dh, public)
        peer_proposal = next(p for p in sa_payload.proposals if p.number == selected.number)
        if len(peer_proposal.spi) != 4:
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            return
        nonce_i = find_payload(payloads, PayloadType.NONCE).data
        answered = Answered(
            policy,
            selected,
            self._new_child_spi(),
            struct.unpack("!I", peer_proposal.spi)[0],
            local_ts,
            remote_ts,
            nonce_i,
            self.random_bytes(NONCE_SIZE),
            secret,
            old,
        )
        reply = to_wire([spec_from_selected(selected)], spi=struct.pack("!I", answered.spi_in))
        reply[0].number = selected.number
        response: List[Payload] = [SaPayload(reply), NoncePayload(answered.nonce_r)]
        if our_ke is not None:
            response.append(our_ke)
        response += [TsiPayload(remote_ts), TsrPayload(local_ts)]
        if selected.additional_kes:
            self._answer_with_followups(sa, request, response, answered, now)
            return
        # Install the new inbound SA before answering; keep sending on the old one until it is deleted.
        event = self._answered_child_up(sa, answered, (), now)
        self._respond(sa, request, response)
        self.events.append(event)
        self._peer_replaced(answered, now)

    def _answer_with_followups(
        self, sa: IkeSa, request: Any, response: List[Payload], answered: Answered, now: float
    ) -> None:
        """RFC 9370 §2.2.4: answer with a link; the Child SA comes with the last IKE_FOLLOWUP_KE exchange."""
        old = answered.old
        if answered.secret is None:  # additional key exchanges without the main one
            self._respond(sa, request, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        if old is not None:
            self._forget_followups_for(sa, old)
            if old.state == REKEYING and old.rekey_exchange is not None:
                old.collision = PeerRekey(answered.nonce_i, answered.nonce_r)  # SPI once the peer's is done
            else:
                old.state = REKEYING  # the peer rekeys it: we start no rekey of our own meanwhile
                old.rekey_at = None
        link = self._await_followups(
            sa,
            answered.selected.additional_kes,
            "CREATE_CHILD_SA %s%s" % (answered.policy.name, " rekey" if old is not None else ""),
            lambda additional, at: self._finish_answered(sa, answered, additional, at),
            lambda reason, at: self._child_responder_abandoned(sa, old, at),
            now,
            target=old,
        )
        self._respond(sa, request, [*response, link])

    @staticmethod
    def _child_count(sa: IkeSa) -> int:
        """Child SAs of `sa` that count against the limit: installed ones (rekeyed ones are on their
        way out) and those still waiting for their IKE_FOLLOWUP_KE exchanges."""
        return sum(1 for child in sa.children if child.state != REKEYED) + len(sa.followups_in)

    def _answered_child_up(self, sa: IkeSa, answered: Answered, additional: Sequence[bytes], now: float):
        """The responder's Child SA: inbound at once, outbound (for a rekey) when the old SA is deleted."""
        return self._child_up(
            sa,
            answered.policy,
            answered.selected,
            answered.spi_in,
            answered.spi_out,
            answered.local_ts,
            answered.remote_ts,
            now,
            nonces=(answered.nonce_i, answered.nonce_r),
            exchange_initiator=False,
            dh_secret=answered.secret,
            rekey_of=answered.old.spi_in if answered.old is not None else None,
            outbound=answered.old is None,
            additional_secrets=additional,
        )

    def _peer_replaced(self, answered: Answered, now: float) -> None:
        """The peer's rekey of `answered.old` created its successor."""
        old = answered.old
        if old is None:
            return
        if old.state == REKEYING and old.rekey_exchange is not None:
            old.collision = PeerRekey(answered.nonce_i, answered.nonce_r, answered.spi_in)
        else:
            old.replaced_by = answered.spi_in
            self._await_peer_delete(old, now)

    def _finish_answered(
        self, sa: IkeSa, answered: Answered, additional: List[bytes], now: float
    ) -> Optional[int]:
        """The last IKE_FOLLOWUP_KE of a CREATE_CHILD_SA we answered: install the SA, or say why not."""
        old = answered.old
        if old is not None and (old not in sa.children or (old.state == REKEYED and old.replaced_by)):
            return NotifyType.TEMPORARY_FAILURE  # the SA it rekeys went, or another rekey replaced it
        self.events.append(self._answered_child_up(sa, answered, additional, now))
        self._peer_replaced(answered, now)
        return None

    def _child_responder_abandoned(self, sa: IkeSa, old: Optional[ChildSa], now: float) -> None:
        """The peer's CREATE_CHILD_SA never completed its IKE_FOLLOWUP_KE exchanges: rekey `old` ourselves."""
        if (
            old is not None
            and old.state == REKEYING
            and old.rekey_exchange is None
            and not any(state.target is old for state in sa.followups_in.values())
        ):
            old.state = INSTALLED
            old.rekey_at = self._retry_at(old, now)

    def _peer_deleted_child(self, sa: IkeSa, child: ChildSa) -> None:
        """The peer deleted `child` (D(ESP) naming its inbound SPI, our outbound SPI)."""
        spi = child.replaced_by
        if not spi and child.collision is not None:
            spi = child.collision.new_spi_in  # the peer's rekey won a collision we had not resolved yet
        replacement = next((c for c in sa.children if c.spi_in == spi), None) if spi else None
        if replacement is not None and not replacement.outbound_active:
            self._make_active(sa, replacement)  # duplicates.py: ChildSaOutbound
        self._remove_child(
            sa,
            child,
            "rekeyed" if replacement is not None else "deleted by peer",
            replaced=replacement is not None,
        )

    def _remove_child(self, sa: IkeSa, child: ChildSa, reason: str, replaced: bool = False) -> None:
        """Forget one Child SA; `replaced` (computed) tells the runtime whether others of the same
        child still carry its policy, so that only this SA's keys go."""
        self._hand_over_outbound(sa, child)  # duplicates.py: a twin in a parallel IKE SA takes the traffic
        sa.children.remove(child)
        self.child_owners.pop(child.spi_in, None)
        replaced = any(other.name == child.name for other in sa.children) or self._has_twin(sa, child)
        self.events.append(
            ChildSaDown(sa.policy.name, child.name, child.spi_in, child.spi_out, reason, replaced)
        )
