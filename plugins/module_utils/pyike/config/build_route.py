"""The builder's route-based part: a connection's mode and, for mode route, its XFRM interface."""

from __future__ import annotations

import ipaddress
import zlib
from typing import Any, Dict, Optional, Tuple

from . import schema as defaults
from .build_base import BuilderBase
from .errors import Path
from .model import ConnectionConfig, RouteInterface


def default_if_id(name: str) -> int:
    """A stable if_id for an interface name (CRC-32, never 0): the same after a reload or a reordering."""
    return zlib.crc32(name.encode()) or 1


class RouteParts(BuilderBase):
    """mode and interface of one connection; names and if_ids unique across connections."""

    def route_mode(self, path: Path, raw: Dict[str, Any]) -> Optional[Tuple[str, Optional[RouteInterface]]]:
        mode = self._get(raw, "mode", path, "str", defaults.DEFAULT_MODE)
        if mode != "route":
            if "interface" in raw:
                self.add((*path, "interface"), "is only used with mode: route")
                return None
            return mode, None
        if "interface" not in raw:
            self.add((*path, "interface"), "is required with mode: route (at least its name)")
            return None
        where = (*path, "interface")
        spec = self._get(raw, "interface", path, "dict")
        name = self._get(spec, "name", where, "str")
        if_id = self._get(spec, "if_id", where, "int", default_if_id(name))
        addresses = []
        for index, text in enumerate(self._get(spec, "addresses", where, "list", [])):
            try:
                addresses.append(str(ipaddress.ip_interface(text.strip())))
            except ValueError:
                self.add((*where, "addresses", index), "%r is not an address with a prefix length" % text)
                return None
        mtu = self._get(spec, "mtu", where, "int", None) if "mtu" in spec else None
        return mode, RouteInterface(name, if_id, tuple(addresses), mtu)

    def check_interfaces(self, connections: Dict[str, ConnectionConfig], tun_name: str) -> None:
        """One interface per route-based connection: names and if_ids unique, and not the main TUN device's."""
        names: Dict[str, str] = {}
        if_ids: Dict[int, str] = {}
        for conn_name, conn in connections.items():
            interface = conn.interface
            if interface is None:
                continue
            path = ("connections", conn_name, "interface")
            if interface.name == tun_name:
                self.add(
                    (*path, "name"),
                    "%s is the userspace dataplane's TUN device (settings.tun_name)" % tun_name,
                )
            if interface.name in names:
                self.add(
                    (*path, "name"),
                    "%s is connection %r's interface already" % (interface.name, names[interface.name]),
                )
            names.setdefault(interface.name, conn_name)
            if interface.if_id in if_ids:
                self.add((*path, "if_id"), "%d is connection %r's interface's if_id already; set if_id on one"
                         % (interface.if_id, if_ids[interface.if_id]))  # fmt: skip
            if_ids.setdefault(interface.if_id, conn_name)
