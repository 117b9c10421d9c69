"""A new Child SA (RFC 7296 §1.3.1, §2.9, §2.17): by CREATE_CHILD_SA, or as the first Child SA of an IKE
SA inside IKE_AUTH (§1.2; tasks/ike_auth.py calls offer_payloads/accept_in_ike_auth and answer), with
PFS (a KE payload, §1.3.1) and RFC 9370 additional key exchanges (followup_ke.py).

The responder installs the new Child SA before it answers (ChildSaUp is queued ahead of the answer);
the initiator when the answer, or the last IKE_FOLLOWUP_KE answer, arrives. The traffic selectors are
narrowed to the intersection of both ends' (§2.9, selectors.narrow); KEYMAT comes from SK_d and the
exchange's nonces (and shared secrets) by prf+ (§2.17).
"""

from __future__ import annotations

import dataclasses
import logging
import struct
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ...crypto.errors import CryptoError
from ...crypto.keys import child_key_lengths, child_keymat
from ...crypto.selection import SelectedProposal
from ...crypto.transforms import transform_name
from ...ids import EsnId, ExchangeType, NotifyType, PayloadType, ProtocolId
from ...selectors import TrafficSelector, address_ranges, describe, is_subset, narrow
from ...wire.key_exchange import KePayload, NoncePayload
from ...wire.message import find_payload
from ...wire.payload import Payload
from ...wire.selectors import TsiPayload, TsrPayload
from .. import duplicates, lifetimes, negotiate
from ..events import ChildSaUp
from ..policy import ChildPolicy
from ..sa import ESTABLISHED, ChildSa
from .base import AGAIN, DONE, Refused, Task, errors_in, notify_name
from .followup_ke import FollowupError, FollowupInitiator, FollowupResponder, answer_followup
from .ike_init import MAX_KE_TRIES, NONCE_SIZE

log = logging.getLogger("pyike.ike")


def install_child(
    engine,
    sa,
    policy: ChildPolicy,
    selected: SelectedProposal,
    spi_in: int,
    spi_out: int,
    local_ts: Sequence[TrafficSelector],
    remote_ts: Sequence[TrafficSelector],
    now: float,
    nonces=None,
    exchange_initiator: Optional[bool] = None,
    dh_secret: Optional[bytes] = None,
    rekey_of: Optional[int] = None,
    outbound: bool = True,
    additional: Sequence[bytes] = (),
) -> ChildSaUp:
    """Derive the Child SA's keys (§2.17; RFC 9370 §2.2.4 with `additional`), record it in `sa` and emit
    ChildSaUp. `nonces` and `exchange_initiator` are those of the exchange that created it (IKE_AUTH by
    default, else CREATE_CHILD_SA)."""
    ni, nr = nonces or (sa.nonce_i, sa.nonce_r)
    we_initiated = sa.initiator if exchange_initiator is None else exchange_initiator
    encr_len, integ_len = child_key_lengths(selected.encr, selected.key_length, selected.integ)
    keys = child_keymat(sa.selected.prf, sa.keys.sk_d, ni, nr, encr_len, integ_len, dh_secret, additional)
    if we_initiated:
        out_keys, in_keys = (keys.encr_i, keys.integ_i), (keys.encr_r, keys.integ_r)
    else:
        out_keys, in_keys = (keys.encr_r, keys.integ_r), (keys.encr_i, keys.integ_i)
    proposal = "/".join(transform_name(t, i, k) for t, i, k in selected.transforms)
    child = ChildSa(policy.name, spi_in, spi_out, proposal, list(local_ts), list(remote_ts), sa.encap, now)
    child.policy = policy
    child.outbound_active = outbound
    lifetimes.schedule_child(engine, child, now)
    sa.children.append(child)
    engine.child_owners[spi_in] = sa
    log.info(
        "%s: CHILD_SA %s %s with SPIs %08x_i %08x_o and TS %s === %s",
        sa.key,
        policy.name,
        "rekeyed" if rekey_of is not None else "established",
        spi_in,
        spi_out,
        describe(local_ts),
        describe(remote_ts),
    )
    event = ChildSaUp(
        conn=sa.policy.name,
        child=policy.name,
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
    child.limits = event.limits = lifetimes.volume_limits(engine, child, event.esn)
    event.life_time = lifetimes.child_life_time(child)
    duplicates.link_twin(engine, sa, child, event)  # a twin in a parallel IKE SA (reauthentication)
    engine.emit(event)
    return event


@dataclass
class PeerExchange:
    """The peer's exchange that creates (or rekeys) the same Child SA as ours at the same time (§2.8.1),
    as our responder side saw it."""

    nonce_i: bytes = field(repr=False)
    nonce_r: bytes = field(repr=False)
    new_spi_in: int = 0  # the Child SA it created here (once it exists)


def lost_collision(ours: bytes, theirs: bytes, peer_i: bytes, peer_r: bytes) -> bool:
    """§2.8.1: of two simultaneous rekeys, the one with the lowest of the four nonces is redundant."""
    return min(ours, theirs, peer_i, peer_r) in (ours, theirs)


def child_count(sa) -> int:
    """Child SAs that count against the limit: installed ones (replaced ones are on their way out)
    and those still waiting for their IKE_FOLLOWUP_KE exchanges."""
    return sum(1 for child in sa.children if not child.going) + len(sa.tasks.waiting)


class ChildCreate(Task):
    exchange = ExchangeType.CREATE_CHILD_SA
    adoptable = True

    def __init__(self, engine, sa, policy: Optional[ChildPolicy] = None, ke_tries: int = 0) -> None:
        super().__init__(engine, sa)
        self.policy = policy
        self.local_ts: List[TrafficSelector] = list(policy.local_ts) if policy else []
        self.remote_ts: List[TrafficSelector] = list(policy.remote_ts) if policy else []
        self.ke_tries = ke_tries
        self.spi_in = 0
        self.nonce = b""  # ours: Ni as initiator, Nr as responder
        self.peer_nonce = b""
        self.key_exchange = None
        self.offer: negotiate.Offer = []
        self.selected: Optional[SelectedProposal] = None
        self.spi_out = 0
        self.secret: Optional[bytes] = None
        self.followups: Optional[FollowupInitiator] = None
        self.response: List[Payload] = []
        self.in_ike_auth = False
        self.collision: Optional[PeerExchange] = None  # initiator: the peer makes the same Child SA at once
        self.rival: Optional[ChildCreate] = None  # responder: our own exchange for it, which decides

    @property
    def what(self) -> str:
        return "CREATE_CHILD_SA %s" % (self.policy.name if self.policy else "")

    # --- initiator --------------------------------------------------------------------------------
    def offer_payloads(self, in_ike_auth: bool) -> List[Payload]:
        """SA (with our inbound SPI), Nonce and KE (not in IKE_AUTH, §1.2), TSi, TSr."""
        proposals = self.policy.esp_proposals
        if in_ike_auth:
            proposals = negotiate.without(proposals, negotiate.KEY_EXCHANGE_TYPES)
        self.spi_in = self.engine.new_child_spi()
        sa_payload, self.offer = negotiate.offer(proposals, struct.pack("!I", self.spi_in))
        payloads: List[Payload] = [sa_payload]
        if not in_ike_auth:
            self.nonce = self.engine.random_bytes(NONCE_SIZE)
            group = negotiate.first_group(proposals)  # a KE in ESP proposals means PFS
            self.key_exchange = self.engine.new_ke(group) if group else None
            payloads.append(NoncePayload(self.nonce))
            if self.key_exchange is not None:
                payloads.append(KePayload(self.key_exchange.group, self.key_exchange.public_bytes()))
        return [*payloads, TsiPayload(list(self.local_ts)), TsrPayload(list(self.remote_ts))]

    def build_request(self, now: float) -> Optional[List[Payload]]:
        if self.followups is not None:
            return self._followup_request(now)
        if self.policy is None or self.sa.state != ESTABLISHED:
            return None
        return self.offer_payloads(in_ike_auth=False)

    def process_response(self, payloads: List[Payload], now: float) -> str:
        if self.followups is not None:
            return self._followup_response(payloads, now)
        errors = errors_in(payloads)
        if errors:
            return self.refused(errors[0], now)
        try:
            self.accept(payloads, with_ke=True)
        except CryptoError as exc:
            self.failed("invalid response: %s" % exc, now)
            return DONE
        self.key_exchange = None  # the private value is no longer needed (§2.12)
        self.peer_nonce = find_payload(payloads, PayloadType.NONCE).data
        if self.selected.additional_kes:
            return self.start_followups(payloads, now)
        self.finish((), now)
        return DONE

    def accept(self, payloads: List[Payload], with_ke: bool) -> None:
        """The responder's choice (§2.7), key exchange (§1.3.1) and narrowed selectors (§2.9), which
        must lie within what we proposed; CryptoError otherwise."""
        self.selected, spi = negotiate.accept(self.offer, find_payload(payloads, PayloadType.SA), 4)
        self.spi_out = struct.unpack("!I", spi)[0]
        if with_ke:
            ke_payload = find_payload(payloads, PayloadType.KE)
            if self.selected.dh:
                group = self.key_exchange.group if self.key_exchange is not None else None
                negotiate.check_ke(self.selected, ke_payload, group)
                self.secret = self.key_exchange.shared_secret(ke_payload.data)
            elif self.selected.additional_kes:
                raise CryptoError("additional key exchanges need a main key exchange (RFC 9370 §2.2.4)")
        local_ts = address_ranges(find_payload(payloads, PayloadType.TSi).selectors)
        remote_ts = address_ranges(find_payload(payloads, PayloadType.TSr).selectors)
        if not (is_subset(local_ts, self.local_ts) and is_subset(remote_ts, self.remote_ts)):
            raise CryptoError("the narrowed traffic selectors are not within those we proposed")
        self.local_ts, self.remote_ts = local_ts, remote_ts

    def accept_in_ike_auth(self, payloads: List[Payload], now: float) -> None:
        """The first Child SA from the IKE_AUTH response; a failure leaves the IKE SA up."""
        what = "IKE_AUTH child %s" % self.policy.name
        errors = errors_in(payloads)
        if errors or find_payload(payloads, PayloadType.SA) is None:
            reason = notify_name(errors[0]) if errors else "no SA payload"
            self.engine.fail(self.sa, what, "%s (the IKE SA stays up)" % reason)
            return
        try:
            self.accept(payloads, with_ke=False)
        except CryptoError as exc:
            self.engine.fail(self.sa, what, "invalid response: %s" % exc)
            return
        install_child(self.engine, self.sa, self.policy, self.selected, self.spi_in, self.spi_out,
                      self.local_ts, self.remote_ts, now)  # fmt: skip

    def refused(self, error, now: float) -> str:
        """The peer answered with an error notify: another group after INVALID_KE_PAYLOAD (§1.3.1), else
        this Child SA fails (TEMPORARY_FAILURE and friends: a rekey tries again a little later)."""
        if error.notify_type == NotifyType.TEMPORARY_FAILURE:
            # §2.25: the peer is rekeying or deleting the IKE SA; the Child SA is asked for again a little
            # later, over whatever IKE SA the connection has then.
            log.info("%s: %s answered TEMPORARY_FAILURE; trying again later", self.sa.key, self.what)
            self.engine.count("child_create_retries")
            at = lifetimes.retry_at(self.engine, now)
            self.engine.restarts[(self.sa.policy.name, self.policy.name)] = at
            return DONE
        if error.notify_type == NotifyType.INVALID_KE_PAYLOAD:
            wanted = negotiate.wanted_group(error)
            if negotiate.offers_group(self.policy.esp_proposals, wanted) and self.ke_tries < MAX_KE_TRIES:
                self.ke_tries += 1
                self.policy = _with_proposals(
                    self.policy, negotiate.prefer_group(self.policy.esp_proposals, wanted)
                )
                return AGAIN
        self.failed("peer answered %s" % notify_name(error), now)
        return DONE

    def failed(self, reason: str, now: float) -> None:
        self.engine.fail(self.sa, self.what, reason)

    def finish(self, additional: Sequence[bytes], now: float) -> None:
        """Install our new Child SA. Should the peer have made the same one at once (collide), the one
        whose exchange holds the lowest nonce is redundant, as for rekeys (§2.8.1): each end installs
        both, the other as a sibling of the same dataplane child, and the loser deletes its own; it sends
        on the winner's once that DELETE is answered (child_delete.remove_child), when the winner has
        surely installed its own."""
        theirs = self.collision
        lost = theirs is not None and lost_collision(
            self.nonce, self.peer_nonce, theirs.nonce_i, theirs.nonce_r
        )
        event = install_child(self.engine, self.sa, self.policy, self.selected, self.spi_in, self.spi_out,
                              self.local_ts, self.remote_ts, now, nonces=(self.nonce, self.peer_nonce),
                              exchange_initiator=True, dh_secret=self.secret, additional=additional,
                              rekey_of=theirs.new_spi_in if theirs and theirs.new_spi_in else None,
                              outbound=not lost)  # fmt: skip
        if lost:
            from .child_delete import ChildDelete

            redundant = next(c for c in self.sa.children if c.spi_in == event.spi_in)
            reason = "redundant: both ends created it at once"
            self.sa.tasks.initiate(ChildDelete(self.engine, self.sa, redundant, reason, now), now, first=True)

    def collide(self, passive: ChildCreate, now: float) -> None:
        """The manager's call: the peer creates the same Child SA as ours (the same child policy)."""
        self.collision = PeerExchange(passive.peer_nonce, passive.nonce)
        passive.rival = self
        self.engine.count("child_create_collisions")

    # --- RFC 9370 §2.2.4 -------------------------------------------------------------------------
    @property
    def in_followups(self) -> bool:
        return self.followups is not None

    def start_followups(self, response: List[Payload], now: float) -> str:
        try:
            self.followups = FollowupInitiator(self.engine, self.selected.additional_kes, response)
        except FollowupError as exc:
            self.failed(str(exc), now)
            return DONE
        self.exchange = ExchangeType.IKE_FOLLOWUP_KE
        return AGAIN

    def _followup_request(self, now: float) -> Optional[List[Payload]]:
        try:
            return self.followups.build()
        except FollowupError as exc:
            self.engine.count("followup_ke_failed")
            self.failed(str(exc), now)
            return None

    def _followup_response(self, payloads: List[Payload], now: float) -> str:
        try:
            done = self.followups.process(payloads)
        except FollowupError as exc:
            self.engine.count("followup_ke_failed")
            self.failed(str(exc), now)
            return DONE
        if not done:
            return AGAIN
        self.finish(self.followups.secrets, now)
        return DONE

    def abort(self, reason: str, now: float) -> None:
        """Our IKE_FOLLOWUP_KE exchanges did not finish: the Child SA fails. As responder, the peer's
        did not come: the pending SA is dropped (RFC 9370 §2.2.4)."""
        if self.followups is not None:
            self.failed(reason, now)
        elif self.waiter is not None:
            self.waiter = None
            self.abandoned(now)

    def abandoned(self, now: float) -> None:
        """As responder: the Child SA we answered will not come (child_rekey.py re-arms the old one)."""

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        limit = self.engine.limit("max_child_sas")
        if child_count(self.sa) >= limit:
            self.engine.fail(self.sa, "CREATE_CHILD_SA", "NO_ADDITIONAL_SAS: the peer asked for more than %d "
                             "Child SAs on one IKE SA" % limit)  # fmt: skip
            raise Refused(NotifyType.NO_ADDITIONAL_SAS)
        self.answer(payloads, now, in_ike_auth=False)

    def answer(self, payloads: List[Payload], now: float, in_ike_auth: bool, candidates=None) -> None:
        """Negotiate the peer's Child SA (§2.7, §2.9, §1.3.1); Refused with the error notify otherwise.
        In IKE_AUTH its keys come from SK_d and the IKE SA's nonces alone."""
        sa, engine = self.sa, self.engine
        self.in_ike_auth = in_ike_auth
        tsi = find_payload(payloads, PayloadType.TSi).selectors
        tsr = find_payload(payloads, PayloadType.TSr).selectors
        for policy in candidates or list(sa.policy.children.values()):
            remote_ts, local_ts = narrow(tsi, policy.remote_ts), narrow(tsr, policy.local_ts)
            if remote_ts and local_ts:
                break
        else:
            engine.fail(sa, "IKE_AUTH child" if in_ike_auth else "CREATE_CHILD_SA",
                        "TS_UNACCEPTABLE: peer proposed %s === %s" % (describe(tsi), describe(tsr)))  # fmt: skip
            raise Refused(NotifyType.TS_UNACCEPTABLE)
        self.policy, self.local_ts, self.remote_ts = policy, local_ts, remote_ts
        what = ("IKE_AUTH child %s" if in_ike_auth else "CREATE_CHILD_SA %s") % policy.name
        proposals = policy.esp_proposals
        if in_ike_auth:
            proposals = negotiate.without(proposals, negotiate.KEY_EXCHANGE_TYPES)
        try:
            choice = negotiate.select(find_payload(payloads, PayloadType.SA), proposals, ProtocolId.ESP, 4)
        except CryptoError:
            raise Refused(NotifyType.INVALID_SYNTAX) from None
        if choice is None:
            engine.fail(sa, what, "NO_PROPOSAL_CHOSEN: no common ESP proposal")
            raise Refused(NotifyType.NO_PROPOSAL_CHOSEN)
        self.selected, self.spi_out = choice.selected, struct.unpack("!I", choice.peer_spi)[0]
        our_ke: List[Payload] = []
        if not in_ike_auth:
            mismatch = negotiate.ke_mismatch(choice.selected, find_payload(payloads, PayloadType.KE))
            if mismatch is not None:
                raise Refused(NotifyType.INVALID_KE_PAYLOAD, mismatch.data)
            if choice.selected.dh:
                try:
                    public, self.secret = engine.new_ke(choice.selected.dh).respond(
                        find_payload(payloads, PayloadType.KE).data
                    )
                except CryptoError as exc:
                    engine.fail(sa, what, "invalid KE payload: %s" % exc)
                    raise Refused(NotifyType.INVALID_SYNTAX) from None
                our_ke = [KePayload(choice.selected.dh, public)]
            elif choice.selected.additional_kes:
                raise Refused(NotifyType.NO_PROPOSAL_CHOSEN)  # additional key exchanges without the main one
            self.peer_nonce = find_payload(payloads, PayloadType.NONCE).data
            self.nonce = engine.random_bytes(NONCE_SIZE)
        self.spi_in = engine.new_child_spi()
        self.response = [choice.reply(struct.pack("!I", self.spi_in))]
        if not in_ike_auth:
            self.response.append(NoncePayload(self.nonce))
        self.response += [*our_ke, TsiPayload(remote_ts), TsrPayload(local_ts)]
        if choice.selected.additional_kes:
            self.waiter = FollowupResponder(engine, choice.selected.additional_kes, now)

    def build_response(self, now: float) -> List[Payload]:
        if self.waiter is not None:
            return [*self.response, self.waiter.link_notify()]
        self.answered((), now)
        return self.response

    def answered(self, additional: Sequence[bytes], now: float) -> Optional[int]:
        """Install the Child SA the peer's request created (inbound at once); an error notify type
        instead when that is no longer possible (child_rekey.py)."""
        nonces = None if self.in_ike_auth else (self.peer_nonce, self.nonce)  # IKE_AUTH: the IKE SA's
        deciding = self.rival is not None and self.sa.tasks.active is self.rival  # our own one, in flight
        install_child(self.engine, self.sa, self.policy, self.selected, self.spi_in, self.spi_out,
                      self.local_ts, self.remote_ts, now, nonces=nonces, exchange_initiator=False,
                      dh_secret=self.secret, additional=additional, outbound=not deciding)  # fmt: skip
        if deciding:
            self.rival.collision.new_spi_in = self.spi_in  # which of the two carries traffic: finish
        return None

    def followup(self, payloads: List[Payload], now: float) -> List[Payload]:
        """The peer's next IKE_FOLLOWUP_KE for the Child SA we answered (manager.py finds us by link)."""
        return answer_followup(self, payloads, now, self.answered)


def _with_proposals(policy: ChildPolicy, proposals) -> ChildPolicy:
    return dataclasses.replace(policy, esp_proposals=list(proposals))
