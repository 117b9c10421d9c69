"""IKEv2 traffic selectors as XFRM policies: which out, in and fwd policies a Child SA (or a trap) needs.

An IKEv2 selector is an address range, a protocol and a port range (RFC 7296 §3.13.1); an XFRM selector
is a prefix pair, a protocol and a port under a mask. A range becomes the prefixes that cover it
exactly; a port range the widest port/mask inside it (strongSwan's ts2ports()); ICMP type and code go
where the kernel reads them (the source and destination port fields).
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, List, Tuple

from .routes import networks_of_range
from .xfrm import PolicySpec, Selector

ICMP_PROTOCOLS = (socket.IPPROTO_ICMP, socket.IPPROTO_ICMPV6)


def policy_specs(local_ts: Any, remote_ts: Any, local: str, peer: str, reqid: int, spi: int = 0,
                 if_id: int = 0) -> List[PolicySpec]:  # fmt: skip
    """The out, in and fwd policies of a Child SA (or a trap) between these selectors: out names the
    outbound SPI (0: any state of the template), in and fwd accept any SA of the reqid. ``if_id``: the
    XFRM interface of a route-based tunnel, whose traffic alone the policies then take."""
    specs = []
    for local_sel in local_ts:
        for remote_sel in remote_ts:
            if local_sel.version != remote_sel.version:
                continue
            for out_sel, in_sel in _pair_selectors(local_sel, remote_sel):
                out_sel, in_sel = (
                    dataclasses.replace(out_sel, if_id=if_id),
                    dataclasses.replace(in_sel, if_id=if_id),
                )
                specs.append(PolicySpec(out_sel, "out", local, peer, reqid, spi=spi))
                for direction in ("in", "fwd"):
                    specs.append(PolicySpec(in_sel, direction, peer, local, reqid))
    return specs


def _pair_selectors(local: Any, remote: Any) -> List[Tuple[Selector, Selector]]:
    """(out, in) XFRM selectors (prefixes, protocol, ports) of one pair of traffic selectors: out is
    local -> remote, in the packets coming back."""
    pairs = []
    proto = max(local.protocol, remote.protocol)
    if proto in ICMP_PROTOCOLS:
        ports = _icmp_ports(local, remote)
        out_ports = in_ports = ports
    else:
        sport, sport_mask = _ports(local.start_port, local.end_port)
        dport, dport_mask = _ports(remote.start_port, remote.end_port)
        out_ports, in_ports = (sport, sport_mask, dport, dport_mask), (dport, dport_mask, sport, sport_mask)
    for src in networks_of_range(local.start, local.end, local.version):
        for dst in networks_of_range(remote.start, remote.end, remote.version):
            pairs.append((Selector(src, dst, proto, *out_ports), Selector(dst, src, proto, *in_ports)))
    return pairs


def _icmp_ports(local: Any, remote: Any) -> Tuple[int, int, int, int]:
    """ICMP type and code in an XFRM selector's sport and dport (the kernel's xfrm_flowi_sport/dport),
    from the port fields of an IKEv2 selector, which carry type << 8 | code (RFC 7296 §3.13.1); the
    narrower of the two selectors says which (as strongSwan's ts2selector())."""
    ts = min((local, remote), key=lambda t: t.end_port - t.start_port)
    start, end = ts.start_port, ts.end_port
    icmp_type, type_mask = _ports(start >> 8, end >> 8)
    if start >> 8 == end >> 8 and (start & 0xFF, end & 0xFF) != (0, 0xFF):
        code, code_mask = _ports(start & 0xFF, end & 0xFF)
    else:
        code, code_mask = 0, 0
    return icmp_type, type_mask, code, code_mask


def _ports(start: int, end: int) -> Tuple[int, int]:
    """(port, mask) of a port range: one port exactly, any port as 0/0, other ranges widened to their
    common leading bits (strongSwan ts2ports(); the kernel selector has no range)."""
    if start == end:
        return start, 0xFFFF
    mask = 0
    for bit in range(15, -1, -1):
        if (start >> bit) & 1 != (end >> bit) & 1:
            return start & mask, mask
        mask |= 1 << bit
    return start & mask, mask
