"""Byte, packet and sequence-number lifetimes of installed ESP SAs, watched for the IKE engine.

The ESP SAs count what they carry (``traffic``) and the outbound ones their sequence number; nothing
per packet looks at limits. The :class:`~.dataplane.Dataplane` asks :meth:`VolumeWatch.check` after
each batch it pumped, but only while some SA has a byte or packet limit (``counting``); the daemon
calls :meth:`VolumeWatch.check` with ``everything=True`` every few seconds for the sequence-number
limits (2^32 packets take hours at the rates a userspace dataplane reaches). Each limit fires once:
``on_limit(key, hard, what)`` with the key the SA was watched under (the engine's inbound SPI of its
Child SA), ``hard`` false for a soft limit (rekey) and true for a hard one (delete), and ``what`` the
kind of limit. The callback runs after a batch, never in the middle of one.
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Optional, Union

from ..esp import InboundSA, OutboundSA

log = logging.getLogger("pyike.dataplane")

EspSa = Union[InboundSA, OutboundSA]
OnLimit = Callable[[int, bool, str], None]

SOFT, HARD = 1, 2


class Watch:
    __slots__ = (
        "fired",
        "hard_bytes",
        "hard_packets",
        "key",
        "outbound",
        "sa",
        "soft_bytes",
        "soft_packets",
        "soft_seq",
    )

    def __init__(self, sa: EspSa, key: int, limits) -> None:
        self.sa = sa
        self.key = key
        self.soft_bytes = limits.soft_bytes
        self.hard_bytes = limits.hard_bytes
        self.soft_packets = limits.soft_packets
        self.hard_packets = limits.hard_packets
        # a kernel SA (KernelSA) says which way it goes: one class serves both directions
        self.outbound = isinstance(sa, OutboundSA) or getattr(sa, "outbound", False) is True
        self.soft_seq = limits.soft_seq if self.outbound else 0
        self.fired = 0

    @property
    def counting(self) -> bool:
        return bool(self.soft_bytes or self.hard_bytes or self.soft_packets or self.hard_packets)

    def crossed(self) -> Optional[tuple]:
        """(level, what) of the next limit to report, else None. A soft limit is always reported
        before the hard one, even when one batch crossed both: the rekey may still save the SA."""
        if self.fired == HARD:
            return None
        sa = self.sa
        traffic = sa.traffic
        outbound = self.outbound
        if self.fired != SOFT:
            if self.soft_bytes and traffic.bytes >= self.soft_bytes:
                return SOFT, "bytes"
            if self.soft_packets and traffic.packets >= self.soft_packets:
                return SOFT, "packets"
            if self.soft_seq and outbound and sa.seq >= self.soft_seq:
                return SOFT, "sequence numbers"
            return None
        if self.hard_bytes and traffic.bytes >= self.hard_bytes:
            return HARD, "bytes"
        if self.hard_packets and traffic.packets >= self.hard_packets:
            return HARD, "packets"
        if self.soft_seq and outbound and sa.exhausted:
            return HARD, "sequence numbers"
        return None


class VolumeWatch:
    """The watched SAs of one dataplane; see the module docstring."""

    def __init__(self, on_limit: Optional[OnLimit] = None) -> None:
        self.on_limit = on_limit
        self._watches: Dict[EspSa, Watch] = {}
        self.counting = 0  # how many watches have byte or packet limits (the per-batch check)

    def __len__(self) -> int:
        return len(self._watches)

    def add(self, sa: EspSa, key: int, limits) -> None:
        """Watch `sa` under `key` with the limits of an ``ike.events.VolumeLimits``."""
        self.remove(sa)
        watch = Watch(sa, key, limits)
        if not (watch.counting or watch.soft_seq):
            return
        self._watches[sa] = watch
        if watch.counting:
            self.counting += 1

    def remove(self, sa: Optional[EspSa]) -> None:
        watch = self._watches.pop(sa, None) if sa is not None else None
        if watch is not None and watch.counting:
            self.counting -= 1

    def check(self, everything: bool = False) -> int:
        """Report newly crossed limits; returns how many. Without `everything`, SAs that only have a
        sequence-number limit are skipped (they are checked on the daemon's slow timer)."""
        fired = 0
        for watch in list(self._watches.values()):
            if not (everything or watch.counting):
                continue
            crossed = watch.crossed()
            if crossed is None:
                continue
            level, what = crossed
            watch.fired = level
            fired += 1
            if self.on_limit is not None:
                try:
                    self.on_limit(watch.key, level == HARD, what)
                except Exception:  # the IKE side's bug must not stop the dataplane
                    log.exception("volume limit handler failed for SA %08x", watch.sa.spi)
        return fired

    def expired(self, sa: EspSa, key: int, hard: bool, what: str) -> None:
        """The kernel reports that `sa` (watched under `key`, or not watched at all: its time backstop)
        crossed a limit: report it unless a check already has."""
        level = HARD if hard else SOFT
        watch = self._watches.get(sa)
        if watch is not None:
            if watch.fired >= level:
                return
            watch.fired = level
        if self.on_limit is not None:
            try:
                self.on_limit(key, hard, what)
            except Exception:  # the IKE side's bug must not stop the dataplane
                log.exception("volume limit handler failed for SA %08x", sa.spi)
