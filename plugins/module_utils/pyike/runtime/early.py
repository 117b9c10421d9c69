"""ESP packets that arrive before their inbound SA is installed, kept for a moment.

The responder of an exchange that creates a Child SA (IKE_AUTH, CREATE_CHILD_SA) installs it when it
sends its response and may send ESP on it at once; we, the initiator, learn the keys only from that
response (RFC 7296 §1.2, §2.17). strongSwan does this when a reauthentication (§2.8.3) builds a new IKE
SA: its first ESP packets on the new Child SA can reach us before its IKE_AUTH response does (its ESP
and IKE leave from different threads), and would be discarded for an unknown SPI (RFC 4303 §3.4.2).

So a packet whose SPI has no inbound SA is kept here, within a byte budget and for at most
EARLY_SECONDS, and decrypted when an SA with that SPI is installed: it then passes the same ICV, replay
and selector checks as any other. Forged or stale packets only ever cost their place in the budget;
the oldest go first. This is the mirror image of the daemon's INBOUND_LINGER (a replaced inbound SA
accepts late packets for a while).
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Deque, List, Tuple

EARLY_SECONDS = 2.0  # as long as a replaced inbound SA lingers (daemon.INBOUND_LINGER)
EARLY_BYTES = 1 << 20  # ~700 full-size packets: a few ms of a busy tunnel, seconds of a quiet one


class EarlyPackets:
    """ESP packets without an inbound SA yet, oldest first, by SPI."""

    def __init__(
        self,
        max_bytes: int = EARLY_BYTES,
        max_age: float = EARLY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self._held: Deque[Tuple[float, int, bytes]] = collections.deque()  # (arrival, spi, packet)
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, spi: int, packet) -> None:
        """Keep a copy of `packet` (an ESP packet from its SPI on) for SPI `spi`."""
        if len(packet) > self.max_bytes:
            return
        now = self.clock()
        self._expire(now)
        self._held.append((now, spi, bytes(packet)))
        self._bytes += len(packet)
        while self._bytes > self.max_bytes:
            self._bytes -= len(self._held.popleft()[2])

    def take(self, spi: int) -> List[bytes]:
        """The packets kept for `spi`, in arrival order; they are no longer kept."""
        self._expire(self.clock())
        if not any(held_spi == spi for _at, held_spi, _packet in self._held):
            return []
        taken, kept = [], collections.deque()
        for entry in self._held:
            (taken if entry[1] == spi else kept).append(entry)
        self._held = kept
        self._bytes -= sum(len(packet) for _at, _spi, packet in taken)
        return [packet for _at, _spi, packet in taken]

    def _expire(self, now: float) -> None:
        held = self._held
        while held and held[0][0] < now - self.max_age:
            self._bytes -= len(held.popleft()[2])
