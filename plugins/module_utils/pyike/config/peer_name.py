"""A peer address given as a DNS name (``remote.address: vpn.example.com``).

The loader only checks the name's syntax (RFC 1123 §2.1 host names: labels of letters, digits and
hyphens, 63 octets each, 253 in all); the daemon resolves it when it initiates (runtime/resolver.py).
A name whose last label is all digits ("10.1.2") is refused: it is a mistyped address, and RFC 3696
§2 rules such top-level labels out, so it could never resolve as meant.
"""

from __future__ import annotations

import ipaddress
import re
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
    return None, name
