"""Traffic selector narrowing (RFC 7296 §2.9): the negotiated ACL is the intersection of both sides'."""

from __future__ import annotations

import ipaddress
from typing import List, Optional, Sequence

from ..wire.selectors import TrafficSelector

ANY_PROTOCOL = 0


def intersect(a: TrafficSelector, b: TrafficSelector) -> Optional[TrafficSelector]:
    """The selector both `a` and `b` allow, or None. Protocol 0 means any (§3.13.1)."""
    if a.start_addr.version != b.start_addr.version:
        return None
    if a.ip_protocol != b.ip_protocol and ANY_PROTOCOL not in (a.ip_protocol, b.ip_protocol):
        return None
    start_addr, end_addr = max(a.start_addr, b.start_addr), min(a.end_addr, b.end_addr)
    start_port, end_port = max(a.start_port, b.start_port), min(a.end_port, b.end_port)
    if start_addr > end_addr or start_port > end_port:
        return None
    return TrafficSelector(start_addr, end_addr, a.ip_protocol or b.ip_protocol, start_port, end_port)


def narrow(proposed: Sequence[TrafficSelector], allowed: Sequence[TrafficSelector]) -> List[TrafficSelector]:
    """Every non-empty intersection of a proposed selector with an allowed one, without duplicates.

    The responder answers with this subset (§2.9); an empty result means TS_UNACCEPTABLE.
    """
    result: List[TrafficSelector] = []
    for offer in proposed:
        for mine in allowed:
            common = intersect(offer, mine)
            if common is not None and not any(_same(common, seen) for seen in result):
                result.append(common)
    return result


def is_subset(narrowed: Sequence[TrafficSelector], proposed: Sequence[TrafficSelector]) -> bool:
    """True when every selector of a responder's answer lies inside one we proposed (§2.9)."""
    return all(any(_same(intersect(ts, offer), ts) for offer in proposed) for ts in narrowed)


def _same(a: Optional[TrafficSelector], b: TrafficSelector) -> bool:
    return a is not None and (a.start_addr, a.end_addr, a.ip_protocol, a.start_port, a.end_port) == (
        b.start_addr,
        b.end_addr,
        b.ip_protocol,
        b.start_port,
        b.end_port,
    )


def describe(selectors: Sequence[TrafficSelector]) -> List[str]:
    """strongSwan-style text: 10.1.0.0/24, 10.1.0.5-10.1.0.9, with [proto/ports] when narrowed."""
    out = []
    for ts in selectors:
        try:
            networks = list(ipaddress.summarize_address_range(ts.start_addr, ts.end_addr))
        except (TypeError, ValueError):
            networks = []
        text = str(networks[0]) if len(networks) == 1 else "%s-%s" % (ts.start_addr, ts.end_addr)
        if ts.ip_protocol or (ts.start_port, ts.end_port) != (0, 0xFFFF):
            ports = (
                "%d" % ts.start_port
                if ts.start_port == ts.end_port
                else "%d-%d" % (ts.start_port, ts.end_port)
            )
            text += "[%d/%s]" % (ts.ip_protocol, ports)
        out.append(text)
    return out
