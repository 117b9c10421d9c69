"""Security Association Database for inbound ESP, keyed by SPI (RFC 4301 §4.4.2, §4.1).

Unicast inbound SAs are found by SPI alone; we choose our inbound SPIs, so they are unique.
Every change publishes a fresh dict in one assignment, so a packet being dispatched sees the
table either before or after a change, never between two steps of it.

Make-before-break rekey (RFC 7296 §2.8) with this module and :class:`~.spd.SPD`:
``sad.add(new_inbound)``, then ``spd.switch_sa(policy, new_outbound)``, then later
``sad.remove(old_inbound.spi)``; :meth:`SAD.replace` does add-and-remove in one step.
"""

from __future__ import annotations

import struct
from typing import Callable, Dict, Iterable, Iterator, List, Optional

from .counters import SadDrops
from .sa import InboundSA

_SPI = struct.Struct("!I")
_ESP_HEADER_LEN = 8


class SAD:
    """Inbound SAs by SPI, and the dispatch of received ESP packets to them."""

    __slots__ = ("_by_spi", "drops", "on_unknown")

    def __init__(self) -> None:
        self._by_spi: Dict[int, InboundSA] = {}
        self.drops = SadDrops()
        # Called with (spi, packet) for a packet without an SA, after counting it; `packet` may be a view
        # of a reused buffer. The runtime keeps such packets for a moment (runtime/early.py).
        self.on_unknown: Optional[Callable[[int, memoryview], None]] = None

    def __len__(self) -> int:
        return len(self._by_spi)

    def __iter__(self) -> Iterator[InboundSA]:
        return iter(tuple(self._by_spi.values()))

    def __contains__(self, spi: object) -> bool:
        return spi in self._by_spi

    def __repr__(self) -> str:
        return f"<SAD inbound={len(self._by_spi)} drops={self.drops!r}>"

    def get(self, spi: int) -> Optional[InboundSA]:
        return self._by_spi.get(spi)

    def add(self, sa: InboundSA) -> None:
        if sa.spi in self._by_spi:
            raise ValueError(f"SAD: an inbound SA with SPI {sa.spi:#010x} is already installed")
        table = dict(self._by_spi)
        table[sa.spi] = sa
        self._by_spi = table

    def remove(self, spi: int) -> Optional[InboundSA]:
        if spi not in self._by_spi:
            return None
        table = dict(self._by_spi)
        removed = table.pop(spi)
        self._by_spi = table
        return removed

    def replace(self, old_spi: int, sa: InboundSA) -> Optional[InboundSA]:
        """Install ``sa`` and remove ``old_spi`` in one step; returns the removed SA."""
        if sa.spi in self._by_spi and sa.spi != old_spi:
            raise ValueError(f"SAD: an inbound SA with SPI {sa.spi:#010x} is already installed")
        table = dict(self._by_spi)
        removed = table.pop(old_spi, None)
        table[sa.spi] = sa
        self._by_spi = table
        return removed

    def decapsulate(self, packet: bytes) -> Optional[bytes]:
        """Hand an ESP packet (starting at the SPI) to its SA; the inner packet or None (counted)."""
        if len(packet) < _ESP_HEADER_LEN:
            self.drops.bad_length += 1
            return None
        spi = _SPI.unpack_from(packet, 0)[0]
        sa = self._by_spi.get(spi)
        if sa is None:
            # RFC 4303 §3.4.2: no SA for this SPI, discard (an auditable event; here, a count)
            self.drops.unknown_spi += 1
            if self.on_unknown is not None:
                self.on_unknown(spi, packet)
            return None
        return sa.decapsulate(packet)

    def decapsulate_many(self, packets: Iterable[bytes]) -> List[bytes]:
        """Inner packets of ``packets`` in order; the dropped ones are counted and left out."""
        decapsulate = self.decapsulate
        out = []
        append = out.append
        for packet in packets:
            inner = decapsulate(packet)
            if inner is not None:
                append(inner)
        return out
