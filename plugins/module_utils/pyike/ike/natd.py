"""NAT detection (RFC 7296 §2.23): SHA-1 over SPIs, address and port of each end."""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from typing import Tuple


def natd_hash(spi_i: bytes, spi_r: bytes, address: Tuple[str, int]) -> bytes:
    ip = ipaddress.ip_address(address[0]).packed
    return hashlib.sha1(spi_i + spi_r + ip + struct.pack("!H", address[1])).digest()  # noqa: S324 - mandated by §2.23
