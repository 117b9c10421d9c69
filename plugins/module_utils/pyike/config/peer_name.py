"""A peer address given as a DNS name (``remote.address: vpn.example.com``).

The loader only checks the name's syntax (RFC 1123 §2.1 host names: labels of letters, digits and
hyphens, 63 octets each, 253 in all); the daemon resolves it when it initiates (runtime/resolver.py).
A name whose last label is all digits ("10.1.2") is refused: it is a mistyped address, and RFC 3696
§2 rules such top-level labels out, so it could never resolve as meant.  So is a name that the C
library's inet_aton reads as an IPv4 address in a legacy form (``0x7f000001``, ``0x7f.1``): the
resolver would return that address, not look the name up.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Optional, Tuple, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

MAX_NAME_LENGTH = 253
LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
NAME_PATTERN = "%s(?:\\.%s)*\\.?" % (LABEL, LABEL)
_NAME = re.compile("^%s$" % NAME_PATTERN)


def parse_peer_address(text: str) -> Tuple[Optional[IPAddress], Optional[str]]:
    """(address, None) for an IP address, (None, name) for a DNS name; ValueError says what is wrong.

    The name is returned in lower case without a trailing dot (DNS names compare case-insensitively).
    """
    text = text.strip()
    try:
        return ipaddress.ip_address(text), None
    except ValueError:
        pass
    if ":" in text or not _NAME.match(text) or len(text.rstrip(".")) > MAX_NAME_LENGTH:
        raise ValueError("%r is neither an IPv4 or IPv6 address nor a DNS name" % text)
    name = text.rstrip(".").lower()
    if name.rsplit(".", 1)[-1].isdigit():
        raise ValueError(
            "%r is not an IP address, and as a DNS name its last label is all digits "
            "(a mistyped IPv4 address?)" % text
        )
    try:
        legacy = ipaddress.IPv4Address(socket.inet_aton(name))
    except OSError:
        return None, name
    raise ValueError(
        "%r is not a DNS name but an IPv4 address in a legacy form (the resolver reads it as %s): "
        "write the address as %s" % (text, legacy, legacy)
    )
