"""XFRM interfaces of route-based connections (mode route): ``ip link add NAME type xfrm if_id N``.

The daemon creates each interface at start (and on a reload that adds one), gives it its addresses and
MTU and sets it up; the states and policies of the connection's Child SAs carry the same if_id, so the
kernel encrypts what is routed into the interface and delivers what they decrypt from it. An interface
of the same name left by a crashed run (an XFRM interface with the same if_id) is taken over; one of
another kind or if_id is refused, never deleted. Stop and a reload that drops the connection delete it.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional

from .children import DataplaneError
from .link_config import configure_link

log = logging.getLogger("pyike.kernel")


def _ipr() -> Any:
    from pyroute2 import IPRoute  # only in kernel mode

    return IPRoute()


class XfrmInterfaces:
    """The interfaces this daemon made, by name (-> if_id)."""

    def __init__(self, ipr_factory: Callable[[], Any] = _ipr) -> None:
        self._factory = ipr_factory
        self._ipr: Optional[Any] = None
        self.ours: Dict[str, int] = {}

    def sync(self, wanted: Dict[str, Any]) -> None:
        """Make the interfaces ``wanted`` (name -> config.model.RouteInterface) exist as configured and
        delete ours that are not wanted any more. Raises DataplaneError or OSError naming the interface; a
        link of a wanted name that cannot be ours refuses before anything changes."""
        ipr = self._netlink()
        for spec in wanted.values():
            self._check(ipr, spec)
        for name in [name for name in self.ours if name not in wanted]:
            self.remove(
                name
            )  # first: a renamed interface may take over its if_id, which the kernel keeps unique
        for spec in wanted.values():
            self.ensure(spec)

    @staticmethod
    def _check(ipr: Any, spec: Any) -> None:
        """Refuse a link of the wanted name that is not an XFRM interface with the wanted if_id."""
        found = ipr.link_lookup(ifname=spec.name)
        if not found:
            return
        kind, if_id = _xfrm_kind(ipr.get_links(found[0])[0])
        if (kind, if_id) != ("xfrm", spec.if_id):
            raise DataplaneError(
                "interface %s exists and is not an XFRM interface with if_id %d (it is %s%s): remove it "
                "or give the connection another interface name"
                % (spec.name, spec.if_id, kind or "of unknown kind", " if_id %s" % if_id if if_id else "")
            )

    def ensure(self, spec: Any) -> None:
        ipr = self._netlink()
        self._check(ipr, spec)
        found = ipr.link_lookup(ifname=spec.name)
        if found:
            if spec.name not in self.ours:
                log.info("interface %s (if_id %d) is there already (an earlier run's): taking it over",
                         spec.name, spec.if_id)  # fmt: skip
        else:
            try:
                ipr.link("add", ifname=spec.name, kind="xfrm", xfrm_if_id=spec.if_id)
            except Exception as exc:  # pyroute2's NetlinkError carries the kernel's errno
                raise DataplaneError(
                    "cannot create XFRM interface %s (if_id %d): %s" % (spec.name, spec.if_id, exc)
                ) from None
            found = ipr.link_lookup(ifname=spec.name)
            log.info("interface %s (if_id %d) created", spec.name, spec.if_id)
        self.ours[spec.name] = spec.if_id
        try:
            configure_link(ipr, found[0], spec)
        except Exception as exc:
            raise DataplaneError(
                "interface %s: cannot set its addresses, MTU or state: %s" % (spec.name, exc)
            ) from None

    def remove(self, name: str) -> None:
        self.ours.pop(name, None)
        ipr = self._netlink()
        try:
            found = ipr.link_lookup(ifname=name)
            if found:
                ipr.link("del", index=found[0])
                log.info("interface %s deleted", name)
        except Exception as exc:
            log.warning("cannot delete interface %s: %s", name, exc)

    def close(self) -> None:
        for name in list(self.ours):
            self.remove(name)
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _netlink(self) -> Any:
        if self._ipr is None:
            self._ipr = self._factory()
        return self._ipr


def _xfrm_kind(link: Any) -> tuple:
    info = link.get_attr("IFLA_LINKINFO")
    if info is None:
        return None, None
    kind = info.get_attr("IFLA_INFO_KIND")
    data = info.get_attr("IFLA_INFO_DATA")
    if_id = data.get_attr("IFLA_XFRM_IF_ID") if kind == "xfrm" and data is not None else None
    return kind, if_id
