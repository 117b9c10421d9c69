"""Userspace ESP dataplane (RFC 4303 tunnel mode): ciphers, anti-replay, SAs, SAD and SPD.

Sans-I/O: it takes keys, SPIs, IANA transform ids and traffic selectors, turns packets into
packets, and counts what it drops. It knows nothing of IKE, sockets or clocks.
"""

from __future__ import annotations

from ..selectors import TrafficSelector
from .cipher import AeadCipher, CbcHmacCipher, EspCipher, encr_key_length, integ_key_length, make_cipher
from .counters import InboundDrops, OutboundDrops, SadDrops, SpdDrops, Traffic
from .inner import NO_PORT, flow_key
from .replay import DEFAULT_WINDOW, REPLAYED, TOO_OLD, ReplayWindow
from .sa import InboundSA, OutboundSA
from .sad import SAD
from .selectors import SelectorSet
from .spd import SPD, Policy

__all__ = [
    "DEFAULT_WINDOW",
    "NO_PORT",
    "REPLAYED",
    "SAD",
    "SPD",
    "TOO_OLD",
    "AeadCipher",
    "CbcHmacCipher",
    "EspCipher",
    "InboundDrops",
    "InboundSA",
    "OutboundDrops",
    "OutboundSA",
    "Policy",
    "ReplayWindow",
    "SadDrops",
    "SelectorSet",
    "SpdDrops",
    "Traffic",
    "TrafficSelector",
    "encr_key_length",
    "flow_key",
    "integ_key_length",
    "make_cipher",
]
