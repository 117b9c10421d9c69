# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Addresses, networks and traffic selectors of the inventory: what is refused, and range arithmetic.

Selectors are parsed with the engine's :class:`TrafficSelector` (strongSwan syntax), once per
distinct text (a hub's selectors repeat thousands of times).  Address ranges are
``(version, start, end)`` integer triples; :func:`subtract` and :func:`summarize` work on them,
and :func:`range_text` writes one back in strongSwan syntax (a CIDR when it is one).
"""

from __future__ import annotations

import ipaddress
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from ._engine import SelectorError, TrafficSelector, parse_peer_address

Range = Tuple[int, int, int]  # (IP version, first address, last address) as integers

# RFC 7296 §3.13: a TS payload counts its selectors in one octet ("Number of TSs"), so at most 255
# fit, whatever their size; its 16-bit Payload Length (8 octets of headers, 16 per IPv4 and 40 per
# IPv6 selector) would allow 4,095 IPv4 or 1,638 IPv6 ranges, so the count is the real limit.
TS_PAYLOAD_MAX_SELECTORS = 255
TS_PAYLOAD_HEADER = 8
TS_SIZES = {4: 16, 6: 40}
PAYLOAD_MAX_LENGTH = 65535

_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
UNROUTABLE: Tuple[Range, ...] = tuple(
    (net.version, int(net.network_address), int(net.broadcast_address)) for net in _LOOPBACK + _LINK_LOCAL
)

_PARSED: Dict[str, Optional[TrafficSelector]] = {}


def parse(text: str) -> Optional[TrafficSelector]:
    """The selector ``text`` stands for, or None when it is not one (cached per text)."""
    if text not in _PARSED:
        if len(_PARSED) > 100000:
            _PARSED.clear()
        try:
            _PARSED[text] = TrafficSelector.parse(text)
        except SelectorError:
            _PARSED[text] = None
    return _PARSED[text]


def parsed(texts: Iterable[str]) -> List[TrafficSelector]:
    """The valid selectors of a list (the others are reported where they are defined)."""
    return [ts for ts in (parse(text) for text in texts) if ts is not None]


def families(texts: Iterable[str]) -> Set[int]:
    return {ts.version for ts in parsed(texts)}


def _scope_problem(version: int, start: int, end: int) -> Optional[str]:
    """Why an address range that lies inside loopback or link-local space cannot be tunnelled."""
    for kind, networks in (("loopback", _LOOPBACK), ("link-local", _LINK_LOCAL)):
        for net in networks:
            if (
                net.version == version
                and int(net.network_address) <= start
                and end <= int(net.broadcast_address)
            ):
                return kind
    return None


def address_problem(text: str, allow_any: bool = False) -> Optional[str]:
    """Why ``text`` cannot be a gateway's (or a peer's) IKE address, or None."""
    if allow_any and text.strip() == "%any":
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return "%r is not an IPv4 or IPv6 address" % text
    if address.is_unspecified or address.is_multicast:
        return "%s is not a unicast address%s" % (
            address,
            "; use %any to accept any peer" if allow_any else "",
        )
    if address.is_loopback:
        return "%s is a loopback address: no peer can reach it; give the address peers send IKE to" % address
    if address.is_link_local:
        return (
            "%s is a link-local address: it does not cross a router, so no peer beyond this link reaches it"
            % address
        )
    return None


def peer_address_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be an unmanaged peer's address (an IP address, %any or a DNS name), or None."""
    stripped = text.strip()
    if (
        address_range(text) is not None
        or stripped == "%any"
        or ":" in stripped
        or stripped.replace(".", "").isdigit()
    ):
        return address_problem(text, allow_any=True)  # an address, or meant as one (203.0.113.256)
    try:
        parse_peer_address(text)
    except ValueError as error:
        return str(error)
    return None


def interface_address_problem(text: str) -> Optional[str]:
    """Why ``text`` cannot be an address of a route-based tunnel's interface (address/prefix), or None."""
    example = "such as 169.254.10.1/30 or fd00:10::1/64"
    try:
        address = ipaddress.ip_interface(text.strip()).ip
    except ValueError:
        return "%r is not an address with a prefix length, %s" % (text, example)
    if "/" not in text:
        return "%r has no prefix length: give the interface address with one, %s" % (text, example)
    for kind, wrong in (
        ("an unspecified", address.is_unspecified),
        ("a multicast", address.is_multicast),
        ("a loopback", address.is_loopback),
    ):
        if wrong:
            return "%r is %s address, not one an interface can have" % (text, kind)
    return None


def network_problem(text: str) -> Optional[str]:
    """Why ``text`` is not a CIDR network a tunnel can carry, or None."""
    try:
        network = ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            return "%r is not a valid network" % text
        return "%r is not a valid network: host bits are set (the network is %s)" % (text, loose)
    scope = _scope_problem(network.version, int(network.network_address), int(network.broadcast_address))
    if scope:
        return "%r is a %s network: its traffic never leaves the host or link, so no tunnel carries it" % (
            text,
            scope,
        )
    return None


def selector_problem(text: str) -> Optional[str]:
    """Why ``text`` is not a traffic selector (strongSwan syntax) that a tunnel can carry, or None."""
    try:
        selector = TrafficSelector.parse(text)
    except SelectorError as error:
        if "[" in text or "-" in text:
            return "%r is not a valid traffic selector: %s" % (text, error)
        return "%r is not a valid network" % text
    body = text.split("[", 1)[0].strip()
    if "/" in body:
        try:
            ipaddress.ip_network(body, strict=True)
        except ValueError:
            return "%r is not a valid network: host bits are set (the network is %s)" % (
                text,
                ipaddress.ip_network(body, strict=False),
            )
    scope = _scope_problem(selector.version, selector.start, selector.end)
    if scope:
        return "%r is a %s network: its traffic never leaves the host or link, so no tunnel carries it" % (
            text,
            scope,
        )
    return None


def ts_payload_problem(texts: Sequence[str]) -> Optional[str]:
    """Why these selectors do not fit one TS payload (RFC 7296 §3.13), or None."""
    selectors = parsed(texts)
    length = TS_PAYLOAD_HEADER + sum(TS_SIZES[ts.version] for ts in selectors)
    if len(selectors) <= TS_PAYLOAD_MAX_SELECTORS and length <= PAYLOAD_MAX_LENGTH:
        return None
    return (
        "%d traffic selectors are more than one TS payload holds (at most %d: RFC 7296 §3.13 counts them in "
        "one octet); summarize them into fewer, larger networks or ranges"
        % (len(selectors), TS_PAYLOAD_MAX_SELECTORS)
    )


# -- address ranges -----------------------------------------------------------------------------------


def ranges_of(selectors: Iterable[TrafficSelector]) -> List[Range]:
    """The address ranges of selectors (protocol and ports ignored: routes know only addresses)."""
    return [(ts.version, ts.start, ts.end) for ts in selectors]


def address_range(text: str) -> Optional[Range]:
    """The one-address range of an IP address text, or None."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return (address.version, int(address), int(address))


def merged(items: Iterable[Range]) -> List[Range]:
    """Sorted ranges with overlapping and adjacent ones joined."""
    out: List[Range] = []
    for version, start, end in sorted(items):
        if out and out[-1][0] == version and start <= out[-1][2] + 1:
            if end > out[-1][2]:
                out[-1] = (version, out[-1][1], end)
        else:
            out.append((version, start, end))
    return out


def common(
    first: Sequence[Range], second: Sequence[Range], counter: Optional[List[int]] = None
) -> List[Range]:
    """The intersections of two merged range lists, in one walk over both (``counter[0]`` counts steps)."""
    out: List[Range] = []
    i = j = steps = 0
    while i < len(first) and j < len(second):
        steps += 1
        a, b = first[i], second[j]
        if a[0] != b[0]:
            if a[0] < b[0]:
                i += 1
            else:
                j += 1
            continue
        start, end = max(a[1], b[1]), min(a[2], b[2])
        if start <= end:
            out.append((a[0], start, end))
        if a[2] < b[2]:
            i += 1
        else:
            j += 1
    if counter is not None:
        counter[0] += steps
    return out


def subtract(selector: TrafficSelector, holes: Sequence[Range]) -> List[TrafficSelector]:
    """``selector`` without the addresses of ``holes`` (merged), as ranges with its protocol and ports."""
    pieces: List[TrafficSelector] = []
    start = selector.start
    for version, first, last in holes:
        if version != selector.version or last < start or first > selector.end:
            continue
        if first > start:
            pieces.append(_with_range(selector, start, first - 1))
        start = max(start, last + 1)
        if start > selector.end:
            return pieces
    if start <= selector.end:
        pieces.append(_with_range(selector, start, selector.end))
    return pieces


def _with_range(selector: TrafficSelector, start: int, end: int) -> TrafficSelector:
    return TrafficSelector(
        selector.version, start, end, selector.protocol, selector.start_port, selector.end_port
    )


def summarize(texts: Sequence[str]) -> List[str]:
    """Plain networks (no protocol or port) joined where they touch, in strongSwan syntax.

    The set of addresses is unchanged; a hub's list of a thousand adjacent spoke LANs becomes a
    few ranges, which a TS payload holds and the engine matches fast.  Texts that are not plain
    networks or that are invalid are kept as they are, after the joined ones.
    """
    plain: List[Range] = []
    kept: List[str] = []
    for text in texts:
        ts = parse(text)
        if ts is None or ts.protocol or not ts.any_port:
            if text not in kept:
                kept.append(text)
        else:
            plain.append((ts.version, ts.start, ts.end))
    joined = merged(plain)
    if len(joined) == len(plain) and len(set(plain)) == len(plain):
        return list(dict.fromkeys(texts))  # nothing to join: keep the order given
    return [range_text(item) for item in joined] + kept


def range_text(item: Range) -> str:
    return str(TrafficSelector(item[0], item[1], item[2]))


def address_text(item: Range) -> str:
    version, start, end = item
    factory = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return str(factory(start)) if start == end else range_text(item)
