"""Identities (RFC 7296 §3.5) as text for logs and status."""

from __future__ import annotations

import ipaddress
from typing import Optional, Tuple

from ..ids import IdType


def identity_text(identity: Optional[Tuple[int, bytes]]) -> str:
    """Addresses and names as text; binary identities (DN, key id) as `type:hex`."""
    if not identity:
        return ""
    id_type, data = identity
    if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
        try:
            return str(ipaddress.ip_address(data))
        except ValueError:
            return "address:" + data.hex()
    if id_type in (IdType.ID_FQDN, IdType.ID_RFC822_ADDR):
        return data.decode("ascii", "backslashreplace")
    try:
        name = IdType(id_type).name
    except ValueError:
        name = "id%d" % id_type
    return "%s:%s" % (name, data.hex())
