"""Per-SA traffic counters and per-reason drop counters.

Plain attribute increments on ``__slots__`` objects: cheap enough for every packet, and
readable by ``list-sas`` and by the lifetime checks of the runtime (RFC 4301 §4.4.2.1 byte and
packet lifetimes count the protected inner packets).
"""

from __future__ import annotations

from typing import Dict


class _Counters:
    __slots__ = ()

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def as_dict(self) -> Dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    @property
    def total(self) -> int:
        return sum(getattr(self, name) for name in self.__slots__)

    def __repr__(self) -> str:
        fields = " ".join(f"{name}={getattr(self, name)}" for name in self.__slots__)
        return f"<{type(self).__name__} {fields}>"


class Traffic(_Counters):
    """Inner packets and their octets that passed through an SA."""

    __slots__ = ("bytes", "packets")


class OutboundDrops(_Counters):
    __slots__ = (
        "bad_inner",  # empty, or neither IPv4 nor IPv6
        "seq_overflow",  # sequence number space used up (RFC 4303 §3.3.3): the SA needs a rekey
    )


class InboundDrops(_Counters):
    __slots__ = (
        "bad_inner",  # inner IP header inconsistent with its next header or length
        "bad_length",  # too short for header, IV and ICV, or ciphertext not a block multiple
        "bad_next_header",  # neither IPv4 (4), IPv6 (41) nor dummy (59)
        "bad_padding",  # pad length beyond the payload or padding bytes not 1, 2, 3, ... (§2.4)
        "dummy",  # dummy packet, next header 59 (RFC 4303 §2.6): dropped by design
        "icv",  # integrity check failed (RFC 4303 §3.4.4)
        "replayed",  # already received (RFC 4303 §3.4.3)
        "selector",  # inner packet outside the SA's traffic selectors (RFC 4301 §5.2)
        "too_old",  # left of the replay window
        "wrong_spi",  # handed a packet of another SA
    )


class SadDrops(_Counters):
    __slots__ = (
        "bad_length",  # shorter than SPI and sequence number
        "unknown_spi",  # no inbound SA with that SPI (RFC 4303 §3.4.2)
    )


class SpdDrops(_Counters):
    __slots__ = (
        "bad_inner",  # not a parseable IPv4/IPv6 packet
        "no_policy",  # matched no policy: discarded (RFC 4301 §5.1, default DISCARD)
        "no_sa",  # matched a policy that has no outbound SA yet
    )
