"""Volume lifetimes of Child SAs and collisions of a Child SA rekey with its deletion. A mixin of the Engine.

Byte and packet lifetimes (RFC 4301 §4.4.2.1): the engine never sees packets, so it hands each new
Child SA's limits to the runtime (`ChildSaUp.limits`); the dataplane counts, and the runtime reports a
crossed limit with `Engine.child_volume_reached`. A soft limit starts a make-before-break rekey, a hard
one deletes the Child SA (when the rekey did not happen in time), as the time lifetimes do; if our
rekey is still in flight, it gets HARD_LIMIT_GRACE seconds to finish first. life - rekey should leave
room for the traffic of a rekey exchange (a round trip, more with retransmissions).

The limits follow strongSwan's rekey_bytes/life_bytes (and _packets): the soft limit is rekey_bytes
minus up to 10% at random (like rekey_time, so that both ends rarely rekey at once), the hard limit
life_bytes, by default rekey_bytes + 10%. A life_bytes alone rekeys at life_bytes / 1.1 rather than
cutting the tunnel (as VyOS derives it). Either ESP SA of the pair crossing a limit counts.

Without extended sequence numbers the outbound sequence number must not cycle (RFC 4303 §3.3.3): the
outbound SA stops at 2^32-1 by itself; the engine asks for a rekey SEQ_REKEY_MARGIN packets before
(`VolumeLimits.soft_seq`) and deletes the Child SA if the counter runs out all the same.

§2.25.1 collisions of our rekey with the peer's delete: the peer answers TEMPORARY_FAILURE (it is
deleting the SA) or CHILD_SA_NOT_FOUND (already gone), and its DELETE reaches us while our rekey is in
flight; we answer the DELETE as usual and forget the rekey. Should the peer have created the new SA
all the same, that SA is deleted too: the peer wanted the Child SA gone (strongSwan does the same).
"""

from __future__ import annotations

import logging
import struct
from typing import Any, List, Optional, Tuple

from ..ids import ExchangeType, NotifyType, ProtocolId
from ..wire.codec import enum_name
from ..wire.notify import DeletePayload, NotifyPayload
from .events import ChildSaUp, VolumeLimits
from .sa import ESTABLISHED, INSTALLED, REKEYED, REKEYING, ChildSa, IkeSa

log = logging.getLogger("pyike.ike")

SEQ_MAX = 0xFFFFFFFF  # the last sequence number of an ESP SA without ESN (RFC 4303 §2.2)
SEQ_REKEY_MARGIN = 1 << 24  # rekey this many packets before it: minutes even at a million packets/s
LIFE_FACTOR_NUM, LIFE_FACTOR_DEN = 11, 10  # life = rekey + 10% (strongSwan's default), and back
HARD_LIMIT_GRACE = 2.0  # seconds a rekey in flight may take after the hard limit was reached


def volume_pair(rekey: int, life: int) -> Tuple[int, int]:
    """(rekey, life) with the missing one derived from the other; (0, 0) without limits."""
    if rekey <= 0 and life <= 0:
        return 0, 0
    if rekey <= 0:
        rekey = max(1, life * LIFE_FACTOR_DEN // LIFE_FACTOR_NUM)
    if life <= 0:
        life = rekey + max(1, rekey * (LIFE_FACTOR_NUM - LIFE_FACTOR_DEN) // LIFE_FACTOR_DEN)
    return rekey, life


class ChildLifetimesMixin:
    # --- limits of a new Child SA ----------------------------------------------------------
    def _volume_limits(self, child: ChildSa, esn: bool) -> VolumeLimits:
        policy = child.policy
        limits = VolumeLimits(soft_seq=0 if esn else SEQ_MAX - SEQ_REKEY_MARGIN)
        if policy is None:
            return limits
        for unit in ("bytes", "packets"):
            rekey, life = volume_pair(getattr(policy, "rekey_" + unit), getattr(policy, "life_" + unit))
            if rekey:  # soft <= rekey < life
                setattr(limits, "soft_" + unit, max(1, rekey - int(self._jitter(rekey))))  # as rekey_time
                setattr(limits, "hard_" + unit, life)
        return limits

    def _child_sa_installed(self, sa: IkeSa, child: ChildSa, event: ChildSaUp) -> None:
        """Hook of Engine._child_up: a Child SA record and its ChildSaUp event were just built."""
        child.limits = self._volume_limits(child, event.esn)
        event.limits = child.limits
        self._link_twin(sa, child, event)  # duplicates.py

    # --- the runtime reports a crossed limit ----------------------------------------------
    def child_volume_reached(self, spi_in: int, hard: bool, now: float, what: str = "volume") -> bool:
        """An ESP SA of the Child SA with inbound SPI `spi_in` crossed its soft (rekey) or hard (delete)
        `what` limit ("bytes", "packets", "sequence numbers"); returns whether anything was started."""
        found = self._child_by_spi_in(spi_in)
        if found is None:
            return False
        sa, child = found
        if hard:
            if child.state == REKEYED or child.delete_sent or sa.state != ESTABLISHED:
                return False  # already being replaced or deleted
            if child.state == REKEYING:
                # Our rekey is in flight and replaces the SA within a round trip: give it that time (the
                # time-based hard lifetime then deletes the SA, should the rekey fail or hang).
                if child.expire_at is None or child.expire_at > now + HARD_LIMIT_GRACE:
                    child.expire_at = now + HARD_LIMIT_GRACE
                return False
            self._count("volume_expiries")
            log.info("%s: CHILD_SA %s %08x_i reached its hard %s limit", sa.key, child.name, spi_in, what)
            self._delete_child(sa, child, now, "hard %s limit reached" % what)
            return True
        if child.state != INSTALLED or sa.state != ESTABLISHED or child.policy is None:
            return False  # a rekey is already running, or the SA is on its way out
        self._count("volume_rekeys")
        log.info(
            "%s: CHILD_SA %s %08x_i reached its %s soft limit, rekeying", sa.key, child.name, spi_in, what
        )
        child.rekey_at = None
        self._start_create_child(sa, child.policy, now, rekeying=child)
        return True

    def child_install_failed(self, spi_in: int, reason: str, now: float) -> bool:
        """The runtime could not install the Child SA with inbound SPI `spi_in` (ChildSaUp). The peer
        believes it is up, so it is deleted (§1.4.1) and the failure reported; returns whether a DELETE
        was started."""
        found = self._child_by_spi_in(spi_in)
        if found is None:
            return False
        sa, child = found
        self._fail(sa, "install CHILD_SA %s" % child.name, reason)
        if child.delete_sent or sa.state != ESTABLISHED:
            return False
        self._delete_child(sa, child, now, "it could not be installed")
        return True

    def _child_by_spi_in(self, spi_in: int) -> Optional[Tuple[IkeSa, ChildSa]]:
        sa = self.child_owners.get(spi_in)
        child = next((c for c in sa.children if c.spi_in == spi_in), None) if sa is not None else None
        return (sa, child) if child is not None else None

    # --- §2.25.1: our rekey against the peer's delete -------------------------------------
    def _rekeyed_child_gone(self, sa: IkeSa, exchange: Any, payloads: List[Any], now: float) -> bool:
        """Hook at the start of the CREATE_CHILD_SA response: True when the Child SA we rekeyed was
        deleted meanwhile (by the peer, or by us), so there is nothing left to replace."""
        old = exchange.rekeying
        if old is None or any(old in other.children for other in self.sas.values()):
            return False  # still there, maybe moved to the new IKE SA by an IKE SA rekey meanwhile
        old.rekey_exchange = None
        errors = [n for n in payloads if isinstance(n, NotifyPayload) and n.is_error]
        if errors:
            log.info(
                "%s: rekey of CHILD_SA %s %08x_i answered %s after it was deleted; nothing to do",
                sa.key,
                old.name,
                old.spi_in,
                enum_name(NotifyType, errors[0].notify_type),
            )
            return True
        # The peer built the new SA before it learnt of the delete: it wanted the Child SA gone, so the
        # new one goes as well. It was never installed here; D(ESP) names our inbound SPI (§3.11).
        log.info(
            "%s: CHILD_SA %s was deleted while our rekey was in flight; deleting the new SA %08x_i too",
            sa.key,
            old.name,
            exchange.spi_in,
        )
        self._request(
            sa,
            ExchangeType.INFORMATIONAL,
            [DeletePayload(ProtocolId.ESP, [struct.pack("!I", exchange.spi_in)])],
            lambda message, inner, at: None,
            now,
        )
        return True
