"""IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): additional key exchanges after CREATE_CHILD_SA. A mixin of the Engine.

When the proposal accepted in a CREATE_CHILD_SA exchange (a new Child SA, a Child SA rekey with PFS, an
IKE SA rekey) holds ADDKE transforms, the CREATE_CHILD_SA exchange carries only the main key exchange and
its response adds N(ADDITIONAL_KEY_EXCHANGE) with link data that only the responder understands. The
initiator then runs one IKE_FOLLOWUP_KE exchange per additional key exchange, in transform type order:
each request carries KEi(n) and echoes the last link received; every response but the last carries KEr(n)
and a fresh link. Only after the last one are the new SA's keys derived (§2.2.4):

    IKE SA rekey:            SKEYSEED = prf(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    Child SA, new or rekey:  KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))

with SK_d of the existing IKE SA and SK(0), Ni, Nr of the CREATE_CHILD_SA exchange. Nothing is installed
before that, so an exchange that fails or is abandoned leaves the old SA exactly as it was.

Errors: a request with a link the responder does not know (or no longer knows) gets N(STATE_NOT_FOUND);
any error notify in a response aborts the pending SA on the initiator. A responder forgets a pending SA
that sees no next request within FOLLOWUP_TIMEOUT (§2.2.4 suggests 5-20 seconds) and re-arms the rekey
of the SA it was to replace. Simultaneous Child SA rekeys are decided by the lowest of the four nonces of
the two CREATE_CHILD_SA exchanges (RFC 7296 §2.8.1): the initiator of the losing exchange stops before
its first IKE_FOLLOWUP_KE (no SA was created, so none has to be deleted), and the responder's state for
it times out. While IKE_FOLLOWUP_KE exchanges are pending on an IKE SA, a request to rekey that IKE SA
is answered TEMPORARY_FAILURE (RFC 7296 §2.25) and retried by the peer; so is a request to create or
rekey a Child SA while the IKE SA is being rekeyed (§2.25.2), so that the two never interleave.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional

from ..crypto.errors import CryptoError
from ..ids import ExchangeType, NotifyType, PayloadType
from ..wire.codec import enum_name
from ..wire.key_exchange import KePayload
from ..wire.message import find_notifies, find_payload
from ..wire.notify import NotifyPayload
from ..wire.payload import Payload
from .sa import ESTABLISHED, IkeSa

log = logging.getLogger("pyike.ike")

FOLLOWUP_TIMEOUT = 15.0  # seconds a responder waits for the next IKE_FOLLOWUP_KE request
LINK_SIZE = 16  # octets of opaque link data (random, so a stale or forged link never matches)
IKE_REKEY_RETRY = 2.0  # as after TEMPORARY_FAILURE (ike_lifecycle): soon, with jitter


@dataclass
class FollowupOut:
    """Our IKE_FOLLOWUP_KE exchanges for a CREATE_CHILD_SA we initiated."""

    what: str  # names the exchange in failures, e.g. "CREATE_CHILD_SA net rekey"
    methods: List[int]  # additional key exchange methods still to run, in order
    link: bytes = field(repr=False)
    finish: Callable[[List[bytes], float], None]  # (SK(1)..SK(n), now): create the SA
    abort: Callable[[str, float], None]  # (reason, now): forget it, the old SA stays
    secrets: List[bytes] = field(default_factory=list, repr=False)
    key_exchange: Any = None


@dataclass
class FollowupIn:
    """A CREATE_CHILD_SA we answered with N(ADDITIONAL_KEY_EXCHANGE), waiting for the next request."""

    what: str
    methods: List[int]
    finish: Callable[[List[bytes], float], Optional[int]]  # create the SA, or an error notify type
    abort: Callable[[str, float], None]
    deadline: float
    target: Any = None  # the Child SA being rekeyed, if any
    ike_rekey: bool = False  # it rekeys the IKE SA itself
    secrets: List[bytes] = field(default_factory=list, repr=False)


def _link(payloads: List[Payload]) -> Optional[bytes]:
    notifies = find_notifies(payloads, NotifyType.ADDITIONAL_KEY_EXCHANGE)
    return notifies[0].data if notifies and notifies[0].data else None


def lost_collision(ours: bytes, theirs: bytes, peer_i: bytes, peer_r: bytes) -> bool:
    """RFC 7296 §2.8.1: of two simultaneous rekeys, the one with the lowest of the four nonces is redundant."""
    return min(ours, theirs, peer_i, peer_r) in (ours, theirs)


class FollowupMixin:
    def _followups_busy(self, sa: IkeSa) -> bool:
        """IKE_FOLLOWUP_KE exchanges are pending on this IKE SA, in either role."""
        return sa.followup_out is not None or bool(sa.followups_in)

    def _ike_rekey_underway(self, sa: IkeSa) -> bool:
        """We rekey this IKE SA, or answered the peer's rekey of it and await its IKE_FOLLOWUP_KE."""
        return sa.ike_rekey is not None or any(state.ike_rekey for state in sa.followups_in.values())

    def _abandon_followups(self, sa: IkeSa, reason: str, now: float) -> None:
        """`sa` is being replaced (IKE SA rekey): exchanges pending on it can no longer finish there, so
        their Child SAs are not created and the SAs they were to rekey are rekeyed again later."""
        out, sa.followup_out = sa.followup_out, None
        waiting = list(sa.followups_in.values())
        sa.followups_in.clear()
        if out is not None:
            out.abort(reason, now)
        for state in waiting:
            state.abort(reason, now)

    # --- initiator -------------------------------------------------------------------------
    def _start_followups(
        self,
        sa: IkeSa,
        response: List[Payload],
        additional_kes,
        what: str,
        finish: Callable[[List[bytes], float], None],
        abort: Callable[[str, float], None],
        now: float,
    ) -> None:
        """The CREATE_CHILD_SA response accepted a proposal with `additional_kes`: run them (§2.2.4)."""
        link = _link(response)
        if link is None:
            abort("peer accepted additional key exchanges without an ADDITIONAL_KEY_EXCHANGE notify", now)
            return
        out = FollowupOut(what, [method for _ttype, method in additional_kes], link, finish, abort)
        sa.followup_out = out
        self._send_followup(sa, out, now)

    def _send_followup(self, sa: IkeSa, out: FollowupOut, now: float) -> None:
        method = out.methods[0]
        try:
            out.key_exchange = self.new_ke(method)
        except CryptoError as exc:
            self._followups_failed(sa, out, "cannot run additional key exchange: %s" % exc, now)
            return
        payloads: List[Payload] = [
            KePayload(method, out.key_exchange.public_bytes()),
            NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, out.link),
        ]
        self._request(sa, ExchangeType.IKE_FOLLOWUP_KE, payloads,
                      lambda message, inner, at: self._on_followup_response(sa, out, inner, at), now)  # fmt: skip

    def _on_followup_response(self, sa: IkeSa, out: FollowupOut, payloads: List[Payload], now: float) -> None:
        if sa.followup_out is not out:
            return  # abandoned meanwhile (the IKE SA was rekeyed): its SA is not created any more
        errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        if errors:
            self._followups_failed(
                sa, out, "peer answered %s" % enum_name(NotifyType, errors[0].notify_type), now
            )
            return
        method = out.methods[0]
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            if ke_payload is None or ke_payload.group != method:
                raise CryptoError("the response must carry a KE payload of the negotiated method")
            secret = out.key_exchange.shared_secret(ke_payload.data)
        except CryptoError as exc:
            self._followups_failed(sa, out, "invalid IKE_FOLLOWUP_KE response: %s" % exc, now)
            return
        out.key_exchange = None
        out.secrets.append(secret)
        out.methods.pop(0)
        if out.methods:
            link = _link(payloads)
            if link is None:
                self._followups_failed(sa, out, "IKE_FOLLOWUP_KE response without the next link", now)
                return
            out.link = link
            self._send_followup(sa, out, now)
            return
        sa.followup_out = None
        self._count("followup_ke_completed")
        out.finish(out.secrets, now)

    def _followups_failed(self, sa: IkeSa, out: FollowupOut, reason: str, now: float) -> None:
        sa.followup_out = None
        out.key_exchange = None
        self._count("followup_ke_failed")
        out.abort(reason, now)

    # --- responder -------------------------------------------------------------------------
    def _await_followups(
        self,
        sa: IkeSa,
        additional_kes,
        what: str,
        finish: Callable[[List[bytes], float], Optional[int]],
        abort: Callable[[str, float], None],
        now: float,
        target: Any = None,
        ike_rekey: bool = False,
    ) -> NotifyPayload:
        """Keep the answered CREATE_CHILD_SA pending; returns the N(ADDITIONAL_KEY_EXCHANGE) for the response."""
        link = self.random_bytes(LINK_SIZE)
        methods = [method for _ttype, method in additional_kes]
        sa.followups_in[link] = FollowupIn(
            what, methods, finish, abort, now + FOLLOWUP_TIMEOUT, target, ike_rekey
        )
        return NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, link)

    def _forget_followups_for(self, sa: IkeSa, target: Any) -> None:
        """A new rekey of `target` replaces any earlier one still waiting for IKE_FOLLOWUP_KE."""
        for link, state in list(sa.followups_in.items()):
            if state.target is target:
                del sa.followups_in[link]

    def _on_followup_request(self, sa: IkeSa, request: Any, payloads: List[Payload], now: float) -> None:
        if sa.state != ESTABLISHED:
            self._respond(sa, request, [NotifyPayload(NotifyType.TEMPORARY_FAILURE)])  # §2.25.2
            return
        link = _link(payloads)
        state = sa.followups_in.pop(link, None) if link else None
        if state is None:
            # §2.2.4: unknown link data (never sent, timed out, or replaced by a newer exchange)
            self._count("followup_ke_state_not_found")
            self._respond(sa, request, [NotifyPayload(NotifyType.STATE_NOT_FOUND)])
            return
        method = state.methods[0]
        ke_payload = find_payload(payloads, PayloadType.KE)
        try:
            if ke_payload.group != method:
                raise CryptoError(
                    "KE payload of method %d, not the negotiated %d" % (ke_payload.group, method)
                )
            public, secret = self.new_ke(method).respond(ke_payload.data)
        except CryptoError as exc:
            self._respond(sa, request, [NotifyPayload(NotifyType.INVALID_SYNTAX)])
            self._fail(sa, state.what, "invalid IKE_FOLLOWUP_KE request: %s" % exc)
            state.abort("invalid IKE_FOLLOWUP_KE request", now)
            return
        state.secrets.append(secret)
        state.methods.pop(0)
        if state.methods:
            next_link = self.random_bytes(LINK_SIZE)
            state.deadline = now + FOLLOWUP_TIMEOUT
            sa.followups_in[next_link] = state
            link = NotifyPayload(NotifyType.ADDITIONAL_KEY_EXCHANGE, next_link)
            self._respond(sa, request, [KePayload(method, public), link])
            return
        error = state.finish(state.secrets, now)
        if error is not None:
            self._respond(sa, request, [NotifyPayload(error)])
            state.abort("cannot complete: %s" % enum_name(NotifyType, error), now)
            return
        self._count("followup_ke_completed")
        self._respond(sa, request, [KePayload(method, public)])

    # --- IKE SA rekey (RFC 7296 §1.3.2 with RFC 9370 §2.2.4) --------------------------------
    def _ike_rekey_followups(self, sa, exchange, selected, spi_r, nonce_r, secret, response, now) -> None:
        """Initiator: the peer accepted our IKE SA rekey with additional key exchanges."""
        sa.ike_rekey = exchange  # still rekeying: a colliding IKE SA rekey gets TEMPORARY_FAILURE

        def finish(additional: List[bytes], at: float) -> None:
            sa.ike_rekey = None
            self._finish_ike_rekey(sa, exchange, selected, spi_r, nonce_r, secret, additional, at)

        def abort(reason: str, at: float) -> None:
            sa.ike_rekey = None
            self._fail(sa, "IKE SA rekey", reason)
            if sa.state == ESTABLISHED:
                sa.rekey_at = at + IKE_REKEY_RETRY + self._jitter(10 * IKE_REKEY_RETRY)

        self._start_followups(sa, response, selected.additional_kes, "IKE SA rekey", finish, abort, now)

    def _await_ike_rekey(self, sa, spi_i, spi_r, selected, nonce_i, nonce_r, secret, now) -> NotifyPayload:
        """Responder: the new IKE SA is created by the last IKE_FOLLOWUP_KE; until then the old one serves."""

        def finish(additional: List[bytes], at: float) -> Optional[int]:
            if sa.state != ESTABLISHED:
                return NotifyType.TEMPORARY_FAILURE
            self._rekeyed_sa(sa, False, spi_i, spi_r, selected, nonce_i, nonce_r, secret, at, additional)
            self._deleting(sa, at)  # the peer deletes the old IKE SA next; no new requests on it
            return None

        def abort(reason: str, at: float) -> None:
            log.info("%s: IKE SA rekey by the peer abandoned: %s", sa.key, reason)

        return self._await_followups(
            sa, selected.additional_kes, "IKE SA rekey", finish, abort, now, ike_rekey=True
        )

    # --- time ------------------------------------------------------------------------------
    def _followup_deadlines(self, sa: IkeSa) -> List[float]:
        return [state.deadline for state in sa.followups_in.values()]

    def _followup_timers(self, sa: IkeSa, now: float) -> None:
        for link, state in list(sa.followups_in.items()):
            if now >= state.deadline:
                del sa.followups_in[link]
                self._count("followup_ke_timeouts")
                log.info("%s: %s: no IKE_FOLLOWUP_KE came, the pending SA is dropped", sa.key, state.what)
                state.abort("no IKE_FOLLOWUP_KE request within %g seconds" % FOLLOWUP_TIMEOUT, now)
