"""TUN devices of route-based connections (mode route) in the userspace dataplane.

The kernel dataplane gives a route-based connection an XFRM interface (xfrm_interfaces.py); here each
gets a TUN device of its own with the interface's name, addresses and MTU. What the operator (or a
routing daemon: FRR, BIRD) routes into the device is looked up in the device's own SPD, which holds
only that connection's policies, and what its Child SAs decrypt is written back to it; the if_id is only
the key that binds Child SAs and traps to their device, as it binds them to an XFRM interface.

A TUN device lives as long as the file descriptor the daemon holds (it is not persistent), so a crashed
run leaves none behind; an existing link of the same name is somebody else's and is refused.
"""

from __future__ import annotations

import logging
import socket
from typing import Any, Dict, List

from ..esp import SPD
from .children import DataplaneError
from .gro import TcpCoalescer
from .link_config import configure_link
from .netlink import Netlink
from .tun import Tun

log = logging.getLogger("pyike.dataplane")


class RouteTun:
    """One connection's TUN device, its SPD, and the packets decrypted for it in the current batch."""

    __slots__ = ("broken", "coalescer", "if_id", "name", "pending", "spd", "tun")

    def __init__(self, tun: Tun, if_id: int, gro: bool = True) -> None:
        self.tun = tun
        self.name = tun.name
        self.if_id = if_id
        self.spd = SPD()
        self.pending: List[bytes] = []
        self.coalescer = TcpCoalescer() if (gro and tun.vnet_hdr) else None
        self.broken = ""  # why the device cannot be read (deleted from outside); the next sync makes it again

    def __repr__(self) -> str:
        return "<RouteTun %s if_id=%d>" % (self.name, self.if_id)


class RouteTuns:
    """The route-based connections' TUN devices of one Dataplane, by name; the Dataplane serves them."""

    def __init__(self, dataplane: Any, default_mtu: int, gro: bool = True) -> None:
        self.dataplane = dataplane
        self.default_mtu = default_mtu
        self.gro = gro
        self.ours: Dict[str, RouteTun] = {}

    def sync(self, wanted: Dict[str, Any]) -> None:
        """Make the devices ``wanted`` (name -> config.model.RouteInterface) exist as configured and close
        ours that are not wanted any more. Raises DataplaneError naming the interface. What can be told in
        advance (a name taken by another link, a changed if_id) refuses before anything changes; after a
        failure while creating, the devices this call created are closed again."""
        for spec in wanted.values():
            self._check(spec)
        for name in [name for name in self.ours if name not in wanted]:
            self.remove(name)  # first: a new device may take over its if_id
        created = []
        try:
            for spec in wanted.values():
                if spec.name not in self.ours:
                    created.append(spec.name)
                self.ensure(spec)
        except Exception:
            for name in created:
                self.remove(name)
            raise

    def _check(self, spec: Any) -> None:
        route_tun = self.ours.get(spec.name)
        if route_tun is not None and route_tun.if_id != spec.if_id:
            raise DataplaneError(
                "interface %s has if_id %d; a new if_id (%d) takes a restart of the daemon"
                % (spec.name, route_tun.if_id, spec.if_id)
            )
        if route_tun is None and _link_exists(spec.name):
            raise DataplaneError(
                "interface %s exists already and is not this daemon's: remove it or give the connection "
                "another interface name" % spec.name
            )

    def ensure(self, spec: Any) -> None:
        self._check(spec)
        route_tun = self.ours.get(spec.name)
        if route_tun is not None and (route_tun.broken or not _link_exists(spec.name)):
            log.warning(
                "interface %s is gone (%s): creating it again", spec.name, route_tun.broken or "deleted"
            )
            self.dataplane.unwatch(route_tun)
            route_tun.tun.close()
            route_tun.tun = self._create(spec)  # the same RouteTun: its Child SAs and traps stay bound to it
            route_tun.broken = ""
            self.dataplane.attach(route_tun)
        if route_tun is None:
            route_tun = RouteTun(self._create(spec), spec.if_id, self.gro)
        try:
            with Netlink() as netlink:
                netlink.call(_configure, route_tun.name, spec)
        except Exception as exc:  # pyroute2's NetlinkError carries the kernel's errno
            if spec.name not in self.ours:
                route_tun.tun.close()
            raise DataplaneError(
                "interface %s: cannot set its addresses, MTU or state: %s" % (spec.name, exc)
            ) from None
        if spec.mtu and spec.mtu != route_tun.tun.mtu:
            route_tun.tun.configure(mtu=spec.mtu, up=True, txqlen=None)  # the receive buffers grow with it
        if spec.name not in self.ours:
            self.ours[spec.name] = route_tun
            self.dataplane.attach(route_tun)
            log.info("interface %s (TUN, if_id %d) created", spec.name, spec.if_id)

    def _create(self, spec: Any) -> Tun:
        try:
            return Tun(spec.name, mtu=spec.mtu or self.default_mtu)
        except OSError as exc:
            raise DataplaneError("cannot create TUN device %s: %s" % (spec.name, exc)) from None

    def remove(self, name: str) -> None:
        route_tun = self.ours.pop(name, None)
        if route_tun is None:
            return
        self.dataplane.detach(route_tun)
        route_tun.tun.close()  # the kernel deletes the device with its last file descriptor
        log.info("interface %s deleted", name)

    def close(self) -> None:
        for name in list(self.ours):
            self.remove(name)


def _configure(ipr: Any, name: str, spec: Any) -> None:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise DataplaneError("TUN device %s vanished after it was created" % name)
    configure_link(ipr, found[0], spec)


def _link_exists(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
    except OSError:
        return False
    return True
