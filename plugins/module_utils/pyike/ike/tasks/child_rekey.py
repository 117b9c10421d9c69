"""Rekeying a Child SA (RFC 7296 §1.3.3, §2.8): CREATE_CHILD_SA with N(REKEY_SA), make-before-break, and
the collisions of §2.8.1 (both ends rekey the same Child SA) and §2.25.1 (the peer deletes it meanwhile).

Make-before-break: the exchange's responder installs the new inbound SA before it answers and keeps
sending on the old SA until the old one is deleted; the initiator switches its outbound SA when the
answer arrives and then deletes the old SA. At every moment each end can receive what the other sends.

§2.8.1: when both ends rekey one Child SA at once, both exchanges complete, and the SA created with the
lowest of the four nonces is redundant: the end that initiated it deletes it. Our task learns of the
peer's exchange from the manager (handle_collisions) and decides when its own answer comes. With RFC 9370
additional key exchanges the losing initiator stops before its first IKE_FOLLOWUP_KE (no SA was made).

§2.25.1: should the peer delete the Child SA while our rekey is in flight, the peer answers with an error
(TEMPORARY_FAILURE, CHILD_SA_NOT_FOUND) and the rekey just ends; should it have created the new SA all
the same, that one is deleted too: the peer wanted the Child SA gone (strongSwan does the same).
"""

from __future__ import annotations

import logging
import struct
from typing import List, Optional, Sequence

from ...ids import NotifyType, ProtocolId
from ...wire.notify import NotifyPayload
from ...wire.payload import Payload
from .. import lifetimes
from ..sa import INSTALLED, REKEYED, REKEYING, ChildSa
from .base import DONE, Refused, errors_in, notify_name
from .child_create import ChildCreate, PeerExchange, install_child, lost_collision
from .child_delete import ChildDelete

log = logging.getLogger("pyike.ike")


class ChildRekey(ChildCreate):
    def __init__(self, engine, sa, old: Optional[ChildSa] = None, rekey_notify=None, ke_tries: int = 0):
        super().__init__(engine, sa, old.policy if old is not None else None, ke_tries)
        self.old = old  # initiator: the Child SA we rekey; responder: found from the REKEY_SA notify
        self.rekey_notify = rekey_notify
        if old is not None:
            self.local_ts, self.remote_ts = list(old.local_ts), list(old.remote_ts)
            old.move_to(REKEYING)  # no second rekey of it while this one is queued or in flight
            old.rekey_at = None

    @property
    def what(self) -> str:
        return "CREATE_CHILD_SA %s rekey" % (self.policy.name if self.policy else "")

    # --- initiator --------------------------------------------------------------------------------
    def build_request(self, now: float) -> Optional[List[Payload]]:
        if self.followups is not None:
            return super().build_request(now)
        old = self.old
        if old not in self.sa.children or old.state != REKEYING:
            return None  # deleted, or replaced by the peer's rekey, while we waited for the window
        if self.sa.tasks.rekeying_ike():
            # §2.25.2: not while the IKE SA is being rekeyed (the peer's rekey awaits IKE_FOLLOWUP_KE);
            # a little later it goes over the new IKE SA instead.
            self._rearm(now)
            return None
        notify = NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, struct.pack("!I", old.spi_in))
        return [notify, *self.offer_payloads(in_ike_auth=False)]

    def process_response(self, payloads: List[Payload], now: float) -> str:
        if self.followups is None and not self.engine.owns_child(self.old):
            return self._old_gone(payloads, now)
        return super().process_response(payloads, now)

    def _old_gone(self, payloads: List[Payload], now: float) -> str:
        """§2.25.1: the Child SA we rekeyed was deleted meanwhile (by the peer, or by us)."""
        old, errors = self.old, errors_in(payloads)
        if errors:
            log.info("%s: rekey of CHILD_SA %s %08x_i answered %s after it was deleted; nothing to do",
                     self.sa.key, old.name, old.spi_in, notify_name(errors[0]))  # fmt: skip
            return DONE
        log.info("%s: CHILD_SA %s was deleted while our rekey was in flight; deleting the new SA %08x_i too",
                 self.sa.key, old.name, self.spi_in)  # fmt: skip
        self.sa.tasks.initiate(ChildDelete(self.engine, self.sa, None, "the Child SA it rekeys went", now,
                                           spi_in=self.spi_in), now, first=True)  # fmt: skip
        return DONE

    def start_followups(self, response: List[Payload], now: float) -> str:
        theirs = self.collision
        if theirs is not None and lost_collision(self.nonce, self.peer_nonce, theirs.nonce_i, theirs.nonce_r):
            # RFC 9370 §2.2.4 with §2.8.1: the peer's rekey wins. Ours created nothing yet, so it just ends
            # here; the peer's responder state for it times out.
            if theirs.new_spi_in:  # else its IKE_FOLLOWUP_KE exchanges are still under way (answered)
                self.old.replaced_by = theirs.new_spi_in
                lifetimes.await_peer_delete(self.engine, self.old, now)
            self.engine.count("child_rekey_collisions_lost")
            return DONE
        return super().start_followups(response, now)

    def refused(self, error, now: float) -> str:
        if error.notify_type == NotifyType.TEMPORARY_FAILURE:
            # §2.25: the peer is busy with an exchange that collides with ours (a rekey or deletion of the
            # IKE SA, a rekey of this Child SA): no failure, the rekey goes again a little later.
            log.info("%s: %s answered TEMPORARY_FAILURE; trying again later", self.sa.key, self.what)
            self.engine.count("child_rekey_retries")
            self._rearm(now)
            return DONE
        return super().refused(error, now)

    def failed(self, reason: str, now: float) -> None:
        super().failed(reason, now)
        self._rearm(now)

    def _rearm(self, now: float) -> None:
        """No new SA: the old one stays, and is rekeyed again a little later (unless it was replaced or
        deleted meanwhile, or moved to a rekeyed IKE SA whose timers go on)."""
        old = self.old
        if old.state == REKEYING:
            old.move_to(INSTALLED)
            old.rekey_at = lifetimes.retry_at(self.engine, now, old.expire_at)

    def finish(self, additional: Sequence[bytes], now: float) -> None:
        old, theirs = self.old, self.collision
        lost = theirs is not None and lost_collision(
            self.nonce, self.peer_nonce, theirs.nonce_i, theirs.nonce_r
        )
        event = install_child(self.engine, self.sa, self.policy, self.selected, self.spi_in, self.spi_out,
                              self.local_ts, self.remote_ts, now, nonces=(self.nonce, self.peer_nonce),
                              exchange_initiator=True, dh_secret=self.secret, rekey_of=old.spi_in,
                              outbound=not lost, additional=additional)  # fmt: skip
        if lost:
            # §2.8.1: ours holds the lowest nonce; we delete the redundant SA we made, the peer the old one.
            redundant = next(c for c in self.sa.children if c.spi_in == event.spi_in)
            redundant.move_to(REKEYED)
            self._delete(redundant, "redundant after a rekey collision", now)
            old.replaced_by = theirs.new_spi_in
            if not old.delete_sent:
                lifetimes.await_peer_delete(self.engine, old, now)
            return
        old.replaced_by = self.spi_in
        if not old.delete_sent:  # else its hard lifetime ended meanwhile and its DELETE is out
            old.move_to(REKEYED)
            self._delete(old, "rekeyed", now)

    def _delete(self, child: ChildSa, reason: str, now: float) -> None:
        self.sa.tasks.initiate(ChildDelete(self.engine, self.sa, child, reason, now), now, first=True)

    def collide(self, passive: ChildRekey, now: float) -> None:
        """The manager's call: the peer rekeys our `old` as well (§2.8.1). The peer's SPI is known once
        its Child SA is installed (at once, or after its IKE_FOLLOWUP_KE exchanges)."""
        self.collision = PeerExchange(passive.peer_nonce, passive.nonce)
        passive.rival = self
        self.engine.count("child_rekey_collisions")

    def abort(self, reason: str, now: float) -> None:
        super().abort(reason, now)
        if self.old is not None and self.rekey_notify is None:
            self._rearm(now)

    # --- responder --------------------------------------------------------------------------------
    def process_request(self, payloads: List[Payload], now: float) -> None:
        notify = self.rekey_notify
        spi = struct.unpack("!I", notify.spi)[0] if len(notify.spi) == 4 else -1
        old = next((c for c in self.sa.children if c.spi_out == spi), None)
        if old is None:
            raise Refused(NotifyType.CHILD_SA_NOT_FOUND, b"", ProtocolId.ESP, notify.spi)
        if old.going:
            raise Refused(NotifyType.TEMPORARY_FAILURE)
        self.old = old
        self.answer(
            payloads, now, in_ike_auth=False, candidates=[old.policy] if old.policy is not None else None
        )

    def build_response(self, now: float) -> List[Payload]:
        if self.waiter is not None:
            for link, task in list(self.sa.tasks.waiting.items()):  # a new rekey of it replaces older ones
                if isinstance(task, ChildRekey) and task.old is self.old:
                    del self.sa.tasks.waiting[link]
            if self.rival is None:
                self.old.move_to(REKEYING)  # the peer rekeys it: we start no rekey of our own meanwhile
                self.old.rekey_at = None
        return super().build_response(now)

    def answered(self, additional: Sequence[bytes], now: float) -> Optional[int]:
        """The new Child SA: inbound at once, outbound when the peer deletes the old one (§2.8)."""
        old = self.old
        if old not in self.sa.children or (old.state == REKEYED and old.replaced_by):
            return NotifyType.TEMPORARY_FAILURE  # the SA it rekeys went, or another rekey replaced it
        install_child(self.engine, self.sa, self.policy, self.selected, self.spi_in, self.spi_out,
                      self.local_ts, self.remote_ts, now, nonces=(self.peer_nonce, self.nonce),
                      exchange_initiator=False, dh_secret=self.secret, rekey_of=old.spi_in, outbound=False,
                      additional=additional)  # fmt: skip
        rival = self.rival
        if rival is not None and self.sa.tasks.active is rival:
            rival.collision.new_spi_in = self.spi_in  # our own rekey of it is under way and decides (§2.8.1)
        elif not old.delete_sent:  # (else ours won and is deleting it; the peer deletes this one)
            old.replaced_by = self.spi_in
            lifetimes.await_peer_delete(self.engine, old, now)
        return None

    def abandoned(self, now: float) -> None:
        """The peer's rekey never completed its IKE_FOLLOWUP_KE exchanges: we rekey `old` ourselves."""
        old = self.old
        waiting = any(
            task.old is old for task in self.sa.tasks.waiting.values() if isinstance(task, ChildRekey)
        )
        if old is not None and old.state == REKEYING and self.rival is None and not waiting:
            old.move_to(INSTALLED)
            old.rekey_at = lifetimes.retry_at(self.engine, now, old.expire_at)
