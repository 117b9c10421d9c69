"""IKE SA rekeying (RFC 7296 §1.3.2, §2.18), dead peer detection (§2.4) and restart. A mixin of the Engine.

The rekeyed IKE SA inherits every Child SA; the old IKE SA is then deleted without touching them.
Simultaneous IKE rekeys are answered with TEMPORARY_FAILURE (§2.25) and retried after a random delay,
so one of the two wins.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from ..crypto.errors import CryptoError
from ..crypto.keys import derive_ike_keys, rekey_skeyseed
from ..crypto.selection import accept_response, select_proposal, spec_from_selected
from ..crypto.sk import sk_ciphers
from ..ids import ExchangeType, NotifyType, PayloadType, ProtocolId
from ..wire.codec import enum_name
from ..wire.key_exchange import KePayload, NoncePayload
from ..wire.message import find_payload
from ..wire.notify import DeletePayload, NotifyPayload
from ..wire.sa import SaPayload
from .child_lifetimes import ChildLifetimesMixin
from .convert import from_wire, to_wire
from .events import IkeSaUp
from .reauth import ReauthMixin
from .sa import ESTABLISHED, IkeSa

NONCE_SIZE = 32
RETRY_DELAY = 2.0
RESTART_DELAY = 2.0


@dataclass
class IkeRekeyExchange:
    spi: bytes
    nonce: bytes = field(repr=False)
    key_exchange: Any
    offer: List[Any]


class IkeLifecycleMixin(ReauthMixin, ChildLifetimesMixin):
    """IKE SA lifetimes and DPD; through its bases also reauthentication and duplicate IKE SAs
    (reauth.py, duplicates.py) and the volume lifetimes of Child SAs (child_lifetimes.py)."""

    # --- scheduling ------------------------------------------------------------------------
    def _schedule_ike_lifetime(self, sa: IkeSa, now: float) -> None:
        rekey_time = sa.policy.rekey_time
        sa.rekey_at = now + rekey_time - self._jitter(rekey_time) if rekey_time and rekey_time > 0 else None

    def _ike_deadlines(self, sa: IkeSa) -> List[float]:
        deadlines = []
        if sa.rekey_at is not None:
            deadlines.append(sa.rekey_at)
        if sa.policy.dpd_delay > 0 and sa.pending is None:
            deadlines.append(sa.last_received_at + sa.policy.dpd_delay)
        return deadlines + self._reauth_deadlines(sa) + self._duplicate_deadlines(sa)

    def _ike_timers(self, sa: IkeSa, now: float) -> None:
        self._reauth_timers(sa, now)  # reauth.py
        self._duplicate_timers(sa, now)  # duplicates.py
        if sa.state != ESTABLISHED:
            return
        if sa.rekey_at is not None and now >= sa.rekey_at and sa.reauth_by is not None:
            sa.rekey_at = now + RETRY_DELAY  # no IKE rekey while a reauthentication replaces this SA
        elif sa.rekey_at is not None and now >= sa.rekey_at:
            sa.rekey_at = None
            self._start_ike_rekey(sa, now)
        elif (
            sa.policy.dpd_delay > 0
            and sa.pending is None
            and not sa.queued
            and now >= sa.last_received_at + sa.policy.dpd_delay
        ):
            # §1.4/§2.4: an empty INFORMATIONAL request; retransmissions that go unanswered mean the
            # peer is dead (handled by the retransmission limit in Engine.tick).
            self._count("dpd_requests")
            self._request(sa, ExchangeType.INFORMATIONAL, [], lambda message, inner, at: None, now)

    def _restart_deadlines(self) -> List[float]:
        return list(self.restarts.values())

    def _restart_timers(self, now: float) -> None:
        for conn, at in list(self.restarts.items()):
            if now >= at:
                del self.restarts[conn]
                if conn in self.policies:
                    self.initiate(conn, None, now)

    def _maybe_restart(self, sa: IkeSa, reason: str, now: Optional[float]) -> None:
        """dpd_action restart: re-initiate (repeatedly) until the peer is back."""
        policy = self.policies.get(sa.policy.name)
        if policy is None or policy.dpd_action != "restart" or not policy.remote_address or now is None:
            return
        if reason in ("peer not responding",) or reason.startswith("no answer"):
            self.restarts[policy.name] = now + RESTART_DELAY

    # --- commands --------------------------------------------------------------------------
    def rekey_ike(self, conn: str, now: float) -> int:
        started = 0
        for sa in list(self.sas.values()):
            if sa.policy.name == conn and sa.state == ESTABLISHED:
                self._start_ike_rekey(sa, now)
                started += 1
        return started

    # --- initiator -------------------------------------------------------------------------
    def _start_ike_rekey(self, sa: IkeSa, now: float) -> None:
        if sa.ike_rekey is not None or sa.reauth_by is not None:
            return
        proposals = list(sa.policy.ike_proposals)  # additional key exchanges: IKE_FOLLOWUP_KE (RFC 9370)
        spi = self.random_bytes(8)
        exchange = IkeRekeyExchange(
            spi, self.random_bytes(NONCE_SIZE), self.new_ke(sa.selected.dh), list(enumerate(proposals, 1))
        )
        sa.ike_rekey = exchange
        payloads = [
            SaPayload(to_wire(proposals, spi=spi)),
            NoncePayload(exchange.nonce),
            KePayload(exchange.key_exchange.group, exchange.key_exchange.public_bytes()),
        ]
        self._request(
            sa,
            ExchangeType.CREATE_CHILD_SA,
            payloads,
            lambda message, inner, at: self._on_ike_rekey_response(sa, exchange, inner, at),
            now,
        )

    def _on_ike_rekey_response(
        self, sa: IkeSa, exchange: IkeRekeyExchange, payloads: List[Any], now: float
    ) -> None:
        sa.ike_rekey = None
        errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        if errors:
            code = errors[0].notify_type
            if code == NotifyType.TEMPORARY_FAILURE:
                sa.rekey_at = now + RETRY_DELAY + self._jitter(10 * RETRY_DELAY)
                return
            self._fail(sa, "IKE SA rekey", "peer answered %s" % enum_name(NotifyType, code))
            sa.rekey_at = now + 10 * RETRY_DELAY
            return
        try:
            sa_payload = find_payload(payloads, PayloadType.SA)
            chosen = from_wire(sa_payload.proposals)
            if len(chosen) != 1:
                raise CryptoError("the response must hold exactly one IKE proposal")
            selected = accept_response(exchange.offer, chosen[0][0], chosen[0][1])
            spi_r = sa_payload.proposals[0].spi
            ke_payload = find_payload(payloads, PayloadType.KE)
            if len(spi_r) != 8 or ke_payload is None or ke_payload.group != exchange.key_exchange.group:
                raise CryptoError("the response needs an 8-byte SPI and a KE payload of our group")
            if selected.dh != exchange.key_exchange.group:
                raise CryptoError("the accepted proposal's group differs from our KE payload")
            secret = exchange.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            self._fail(sa, "IKE SA rekey", "invalid response: %s" % exc)
            sa.rekey_at = now + 10 * RETRY_DELAY
            return
        nonce_r = find_payload(payloads, PayloadType.NONCE).data
        if selected.additional_kes:  # RFC 9370 §2.2.4: the new IKE SA comes after IKE_FOLLOWUP_KE
            self._ike_rekey_followups(sa, exchange, selected, spi_r, nonce_r, secret, payloads, now)
            return
        self._finish_ike_rekey(sa, exchange, selected, spi_r, nonce_r, secret, (), now)

    def _finish_ike_rekey(self, sa, exchange, selected, spi_r, nonce_r, secret, additional, now) -> None:
        new = self._rekeyed_sa(
            sa, True, exchange.spi, spi_r, selected, exchange.nonce, nonce_r, secret, now, additional
        )
        # §2.8: the initiator of the rekey deletes the old IKE SA; its Child SAs already moved.
        self._deleting(sa, now)
        self._request(
            sa,
            ExchangeType.INFORMATIONAL,
            [DeletePayload(ProtocolId.IKE, [])],
            lambda message, inner, at: self._drop_sa(sa, "rekeyed into %s" % new.key, quiet=True),
            now,
        )

    # --- responder -------------------------------------------------------------------------
    def _on_ike_rekey_request(self, sa: IkeSa, request: Any, payloads: List[Any], now: float) -> None:
        if sa.ike_rekey is not None or sa.state != ESTABLISHED or self._followups_busy(sa):
            self._respond(sa, request, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])
            return
        sa_payload = find_payload(payloads, PayloadType.SA)
        selected = select_proposal(from_wire(sa_payload.proposals), sa.policy.ike_proposals, ProtocolId.IKE)
        if selected is None:
            self._fail(sa, "IKE SA rekey", "NO_PROPOSAL_CHOSEN: no common IKE proposal")
            self._respond(sa, request, [NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN)])
            return
        ke_payload = find_payload(payloads, PayloadType.KE)
        if ke_payload.group != selected.dh:
            self._respond(
                sa, request, [NotifyPayload(NotifyType.INVALID_KE_PAYLOAD, struct.pack("!H", selected.dh))]
            )
            return
        peer_proposal = next(p for p in sa_payload.proposals if p.number == selected.number)
        try:
            if len(peer_proposal.spi) != 8:
                raise CryptoError("the proposal's SPI must be 8 bytes")
            public, secret = self.new_ke(selected.dh).respond(ke_payload.data)
        except CryptoError as exc:
            self._fail(sa, "IKE SA rekey", "invalid request: %s" % exc)
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            return
        nonce_i = find_payload(payloads, PayloadType.NONCE).data
        nonce_r = self.random_bytes(NONCE_SIZE)
        spi_r = self.random_bytes(8)
        reply = to_wire([spec_from_selected(selected)], spi=spi_r)
        reply[0].number = selected.number
        response = [SaPayload(reply), NoncePayload(nonce_r), KePayload(selected.dh, public)]
        if selected.additional_kes:  # RFC 9370 §2.2.4: the new IKE SA comes after IKE_FOLLOWUP_KE
            spi_i = peer_proposal.spi
            link = self._await_ike_rekey(sa, spi_i, spi_r, selected, nonce_i, nonce_r, secret, now)
            self._respond(sa, request, [*response, link])
            return
        self._respond(sa, request, response)
        self._rekeyed_sa(sa, False, peer_proposal.spi, spi_r, selected, nonce_i, nonce_r, secret, now)
        self._deleting(sa, now)  # the peer deletes the old IKE SA next; no new requests on it

    # --- shared ----------------------------------------------------------------------------
    def _rekeyed_sa(
        self,
        old: IkeSa,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        selected: Any,
        nonce_i: bytes,
        nonce_r: bytes,
        secret: bytes,
        now: float,
        additional_secrets: Sequence[bytes] = (),
    ) -> IkeSa:
        self._abandon_followups(old, "the IKE SA was rekeyed meanwhile", now)  # RFC 9370 §2.2.4
        new = self._new_sa(old.policy, initiator, spi_i, spi_r, old.local, old.remote, now)
        new.selected = selected
        new.nonce_i, new.nonce_r = nonce_i, nonce_r
        seed = rekey_skeyseed(old.selected.prf, old.keys.sk_d, secret, nonce_i, nonce_r, additional_secrets)
        new.keys = derive_ike_keys(selected, seed, nonce_i, nonce_r, spi_i, spi_r)
        new.cipher_out, new.cipher_in = sk_ciphers(selected, new.keys, initiator)
        # RFC 7383 support was negotiated for this peer; the successor keeps it (strongSwan inherits it too),
        # else ML-KEM's IKE_FOLLOWUP_KE messages (~1.3 kB) would go out as IP fragments after a rekey.
        new.fragmentation, new.max_datagram = old.fragmentation, old.max_datagram
        self._new_reassembler(new)
        new.local_behind_nat, new.remote_behind_nat = old.local_behind_nat, old.remote_behind_nat
        new.peer_id = old.peer_id
        new.peer_cert, new.peer_auth = old.peer_cert, old.peer_auth  # the authentication carries over
        new.children, old.children = old.children, []
        for child in new.children:
            self.child_owners[child.spi_in] = new
        new.state = ESTABLISHED
        new.established_at = now
        new.next_keepalive_at = old.next_keepalive_at
        old.next_keepalive_at = None
        self._schedule_ike_lifetime(new, now)
        self._reauth_inherit(old, new)  # reauth.py
        self.sas[new.our_spi] = new
        self._count("ike_rekeys")
        self.events.append(IkeSaUp(new.policy.name, new.key, new.local, new.remote))
        return new
