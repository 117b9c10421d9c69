"""Tunnel-mode ESP Security Associations (RFC 4303).

:class:`OutboundSA` turns inner IP packets into ESP packets (§3.3), :class:`InboundSA` the other
way (§3.4). Neither raises on packet input: a packet that cannot be processed is dropped,
counted under its reason in ``drops``, and None is returned. ``traffic`` counts the inner
packets and octets that went through, for ``list-sas`` and for byte/packet lifetimes.
"""

from __future__ import annotations

import struct
from typing import Iterable, List, Optional, Tuple

from .cipher import ESP_HEADER_LEN, EspCipher
from .counters import InboundDrops, OutboundDrops, Traffic
from .inner import IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_NONE
from .replay import DEFAULT_WINDOW, REPLAYED, ReplayWindow
from .selectors import SelectorSet

_HEADER = struct.Struct("!II")
_U32 = struct.Struct("!I")
_U16 = struct.Struct("!H")

SEQ_MAX = 0xFFFFFFFF
ESN_SEQ_MAX = 0xFFFFFFFFFFFFFFFF

_PAD = bytes(range(1, 256))  # RFC 4303 §2.4 default padding: 1, 2, 3, ...
_PADDINGS = tuple(_PAD[:n] for n in range(256))
_IPV4_MIN = 20
_IPV6_HEADER = 40


def _trailers(align: int, next_header: int) -> Tuple[bytes, ...]:
    """Padding + pad length + next header, indexed by inner length modulo ``align``.

    The payload, padding and the two trailer octets together fill whole ``align`` units
    (RFC 4303 §2.4: 4-octet alignment at least, the cipher block size for CBC).
    """
    trailers = []
    for remainder in range(align):
        pad_len = -(remainder + 2) % align
        trailers.append(_PAD[:pad_len] + bytes((pad_len, next_header)))
    return tuple(trailers)


class OutboundSA:
    """Sender side of one Child SA: sequence numbers, padding, encryption (RFC 4303 §3.3)."""

    __slots__ = (
        "_align",
        "_seq",
        "_seq_max",
        "_trailers4",
        "_trailers6",
        "cipher",
        "drops",
        "esn",
        "spi",
        "traffic",
    )

    def __init__(self, spi: int, cipher: EspCipher, esn: bool = False, *, seq: int = 0):
        """``seq`` is the last sequence number used: a new SA starts at 0 and sends 1 first."""
        if not 0 < spi <= 0xFFFFFFFF:
            raise ValueError(f"ESP SPI must be 1..2^32-1, got {spi}")
        self.spi = spi
        self.cipher = cipher
        self.esn = esn
        self._seq_max = ESN_SEQ_MAX if esn else SEQ_MAX
        if not 0 <= seq <= self._seq_max:
            raise ValueError(f"ESP SA {spi:#010x}: sequence number {seq} out of range")
        self._seq = seq
        self._align = cipher.align
        self._trailers4 = _trailers(cipher.align, IPPROTO_IPIP)
        self._trailers6 = _trailers(cipher.align, IPPROTO_IPV6)
        self.traffic = Traffic()
        self.drops = OutboundDrops()

    def __repr__(self) -> str:
        return f"<OutboundSA spi={self.spi:#010x} {self.cipher!r} esn={self.esn} seq={self._seq}>"

    @property
    def seq(self) -> int:
        """The last sequence number sent."""
        return self._seq

    @property
    def exhausted(self) -> bool:
        """True once the sequence space is used up: the SA sends nothing more (§3.3.3)."""
        return self._seq >= self._seq_max

    def encapsulate(self, inner: bytes) -> Optional[bytes]:
        """The ESP packet carrying ``inner`` (an IPv4 or IPv6 packet), or None (counted)."""
        length = len(inner)
        if not length:
            self.drops.bad_inner += 1
            return None
        version = inner[0] >> 4
        if version == 4:
            trailers = self._trailers4
        elif version == 6:
            trailers = self._trailers6
        else:
            self.drops.bad_inner += 1
            return None
        seq = self._seq + 1
        if seq > self._seq_max:
            # RFC 4303 §3.3.3: the counter must not cycle; refuse until a new SA replaces this one
            self.drops.seq_overflow += 1
            return None
        self._seq = seq
        header = _HEADER.pack(self.spi, seq & SEQ_MAX)
        packet = self.cipher.seal(
            header,
            _U32.pack(seq >> 32) if self.esn else b"",
            seq,
            b"".join((inner, trailers[length % self._align])),
        )
        traffic = self.traffic
        traffic.packets += 1
        traffic.bytes += length
        return packet

    def encapsulate_many(self, packets: Iterable[bytes]) -> List[bytes]:
        """ESP packets for ``packets`` in order; the ones refused are counted and left out."""
        encapsulate = self.encapsulate
        out = []
        append = out.append
        for inner in packets:
            packet = encapsulate(inner)
            if packet is not None:
                append(packet)
        return out


class InboundSA:
    """Receiver side of one Child SA: replay check, ICV, decryption, trailer and selector checks."""

    __slots__ = (
        "_ct_block",
        "_min_len",
        "_overhead",
        "_spi_bytes",
        "cipher",
        "drops",
        "esn",
        "replay",
        "selectors",
        "spi",
        "traffic",
    )

    def __init__(
        self,
        spi: int,
        cipher: EspCipher,
        esn: bool = False,
        window: int = DEFAULT_WINDOW,
        *,
        selectors: Optional[SelectorSet] = None,
    ):
        """``selectors``: the SA's traffic selectors, checked on every decrypted packet
        (RFC 4301 §5.2); None skips that check.
        """
        if not 0 < spi <= 0xFFFFFFFF:
            raise ValueError(f"ESP SPI must be 1..2^32-1, got {spi}")
        self.spi = spi
        self.cipher = cipher
        self.esn = esn
        self.replay = ReplayWindow(window, esn)
        self.selectors = selectors
        self.traffic = Traffic()
        self.drops = InboundDrops()
        self._spi_bytes = _U32.pack(spi)
        self._overhead = ESP_HEADER_LEN + cipher.iv_len + cipher.icv_len
        self._ct_block = cipher.block
        # at least pad length and next header, rounded up to the cipher block
        self._min_len = self._overhead + max(2, cipher.block)

    def __repr__(self) -> str:
        return f"<InboundSA spi={self.spi:#010x} {self.cipher!r} esn={self.esn} top={self.replay.top}>"

    def decapsulate(self, packet: bytes) -> Optional[bytes]:
        """The inner IP packet of an ESP packet (starting at the SPI), or None (counted)."""
        if not isinstance(packet, bytes):
            packet = bytes(packet)
        drops = self.drops
        length = len(packet)
        if length < self._min_len or (length - self._overhead) % self._ct_block:
            drops.bad_length += 1
            return None
        if packet[:4] != self._spi_bytes:
            drops.wrong_spi += 1
            return None
        replay = self.replay
        # RFC 4303 §3.4.3: replay check before the (costly) integrity check
        seq = replay.check(_U32.unpack_from(packet, 4)[0])
        if seq < 0:
            if seq == REPLAYED:
                drops.replayed += 1
            else:
                drops.too_old += 1
            return None
        payload = self.cipher.open(packet, _U32.pack(seq >> 32) if self.esn else b"")
        if payload is None:
            drops.icv += 1
            return None
        replay.accept(seq)
        pad_len = payload[-2]
        trailer_start = len(payload) - 2
        # also fails when pad_len reaches past the start of the payload
        if not payload.endswith(_PADDINGS[pad_len], 0, trailer_start):
            drops.bad_padding += 1
            return None
        end = trailer_start - pad_len
        next_header = payload[-1]
        if next_header == IPPROTO_IPIP:
            if end < _IPV4_MIN or payload[0] >> 4 != 4:
                drops.bad_inner += 1
                return None
            inner_len = _U16.unpack_from(payload, 2)[0]
            if not _IPV4_MIN <= inner_len <= end:
                drops.bad_inner += 1
                return None
        elif next_header == IPPROTO_IPV6:
            if end < _IPV6_HEADER or payload[0] >> 4 != 6:
                drops.bad_inner += 1
                return None
            inner_len = _IPV6_HEADER + _U16.unpack_from(payload, 4)[0]
            if inner_len > end:
                drops.bad_inner += 1
                return None
        elif next_header == IPPROTO_NONE:
            drops.dummy += 1
            return None
        else:
            drops.bad_next_header += 1
            return None
        # the IP length, not the padding, marks the end: TFC padding may follow (RFC 4303 §2.7)
        inner = payload[:inner_len]
        selectors = self.selectors
        if selectors is not None and not selectors.allows_inbound(inner):
            drops.selector += 1
            return None
        traffic = self.traffic
        traffic.packets += 1
        traffic.bytes += inner_len
        return inner

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
