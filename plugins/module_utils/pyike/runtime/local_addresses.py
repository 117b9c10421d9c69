"""This host's IP addresses, dumped over netlink once and again only after the kernel reports a change.

Every Child SA install looks for our address inside its local selectors (the preferred source of its
routes, installer.py). A pyroute2 address dump costs about a millisecond of Python per call, on the
path from IKE_AUTH to "installed", so the list is kept. A netlink socket subscribed to the kernel's
address notifications (RTMGRP_IPV4_IFADDR, RTMGRP_IPV6_IFADDR; rtnetlink(7)) says when it is stale:
any message on it, or an overflow (ENOBUFS), and the next look-up dumps again. The socket is only
drained, never parsed. It is subscribed before the first dump, so no change goes unseen.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Optional, Tuple, Union

from .netlink import Netlink

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100
IpAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


class LocalAddresses:
    """``current()``: the host's addresses now; a dump only when the kernel announced a change."""

    def __init__(self, netlink: Netlink) -> None:
        self._netlink = netlink
        self._known: Optional[Tuple[IpAddress, ...]] = None
        self._watch = _open_watch()  # None: no notifications here, so every look-up dumps

    def current(self) -> Tuple[IpAddress, ...]:
        if self._watch is None or _drained_any(self._watch) or self._known is None:
            self._known = self._netlink.call(
                lambda ipr: tuple(ipaddress.ip_address(a.get_attr("IFA_ADDRESS")) for a in ipr.get_addr())
            )
        return self._known

    def close(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()


def _open_watch() -> Optional[socket.socket]:
    try:
        sock = socket.socket(
            socket.AF_NETLINK,
            socket.SOCK_RAW | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC,
            socket.NETLINK_ROUTE,
        )
    except OSError:
        return None
    try:
        sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    except OSError:
        sock.close()
        return None
    return sock


def _drained_any(sock: socket.socket) -> bool:
    """Read every waiting notification; True if there was one (or the queue overflowed)."""
    changed = False
    while True:
        try:
            sock.recv(65536)
        except BlockingIOError:
            return changed
        except OSError:  # ENOBUFS: notifications were lost, so something changed; the next recv goes on
            return True
        changed = True
