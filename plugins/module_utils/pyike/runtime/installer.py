"""Child SAs from the engine's events into the dataplane: install (ChildSaUp), rekey make-before-break
(RFC 7296 §2.8: new inbound SA first, the outbound switch now or at ChildSaOutbound), remove (ChildSaDown),
and the inbound SAs that linger a moment after a rekey replaced them.

A mixin of runtime.daemon.Daemon (its engine, dataplane, netlink and the tables below).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Optional, Tuple

from ..esp import InboundSA, OutboundSA, SelectorSet, make_cipher
from ..ids import IntegId
from ..ike.events import ChildSaDown, ChildSaUp
from ..selectors import address_ranges
from .errors import describe_error
from .local_addresses import LocalAddresses

log = logging.getLogger("pyike.daemon")

# An inbound SA replaced by a rekey accepts packets this much longer: ESP (raw socket) and IKE (UDP)
# arrive on different sockets, so the peer's last packets on the old SA may be read after the DELETE
# exchange that removed it. The peer sends nothing new on it; replays are still refused. strongSwan keeps
# such SAs 5 s (charon.delete_rekeyed_delay); 2 s lost nothing in the lab's rekey-under-load runs.
INBOUND_LINGER = 2.0


class ChildSaInstaller:
    """The Child SA half of the daemon (mixed into Daemon, which sets up `_children`, `_outbound` and
    `_lingering`)."""

    def _remove(self, event: ChildSaDown) -> None:
        """One SA pair goes; the dataplane child (policy, routes) only with the last SA pair sharing it."""
        child_id = self._children.pop(event.spi_in, None)
        gone = self._outbound.pop(event.spi_in, None)
        if child_id is None:
            return
        # Not event.replaced: that counts twins in a parallel IKE SA (reauthentication), which are
        # dataplane children of their own; here only the SAs of this dataplane child matter.
        others = [spi for spi, other in self._children.items() if other == child_id]
        if not others:
            self.dataplane.remove_child(child_id)
            return
        try:
            if gone is not None and self.dataplane.outbound_of(child_id) is gone[1]:
                # The engine moves the traffic first; should it not have, send through the newest SA left.
                log.warning("%s: outbound SA %08x removed while in use", child_id, gone[1].spi)
                self._switch_outbound(others[-1])
        finally:  # a refused switch must not keep the deleted pair's inbound state for good
            self._lingering.append((time.monotonic() + INBOUND_LINGER, child_id, event.spi_in))

    def _linger_deadline(self) -> Optional[float]:
        return min(at for at, _child_id, _spi in self._lingering) if self._lingering else None

    def _expire_lingering(self, now: float) -> None:
        """Remove the replaced inbound SAs whose INBOUND_LINGER is over (with their child, if it went)."""
        keep = []
        for at, child_id, spi in self._lingering:
            if at > now:
                keep.append((at, child_id, spi))
            elif child_id in self.dataplane.children:
                self.dataplane.remove_inbound(child_id, spi)
        self._lingering = keep

    def _install(self, event: ChildSaUp) -> None:
        integ = event.integ_id if event.integ_id else IntegId.NONE
        # the dataplane enforces address ranges; selectors of other TS types mean nothing to it
        local_ts, remote_ts = address_ranges(event.local_ts), address_ranges(event.remote_ts)
        extra: Dict[str, Any] = {"if_id": route_if_id(self.config, event.conn)}
        try:
            if getattr(self.dataplane, "kernel", False):
                from .kernel_dataplane import kernel_sa_pair  # pyroute2: only in kernel mode

                outbound, inbound = kernel_sa_pair(event)  # the kernel encrypts: it gets the keys
                extra["trap"] = "%s/%s" % (event.conn, event.child)  # takes its trap's policies over
            else:
                outbound = OutboundSA(
                    event.spi_out,
                    make_cipher(event.encr_id, event.encr_key_out, integ, event.integ_key_out),
                    event.esn,
                )
                inbound = InboundSA(
                    event.spi_in,
                    make_cipher(event.encr_id, event.encr_key_in, integ, event.integ_key_in),
                    event.esn,
                    selectors=SelectorSet(local_ts, remote_ts),
                )
            if event.rekey_of is not None and event.rekey_of in self._children:
                self._install_rekeyed(event, outbound, inbound)
                self._watch(event, outbound, inbound)
                return
            child_id = "%s/%s/%08x" % (event.conn, event.child, event.spi_in)
            self.dataplane.install_child(
                child_id,
                outbound,
                inbound,
                local_ts,
                remote_ts,
                event.remote,
                event.encap,
                local=event.local[0],
                route_source=_local_addresses_in(event.local_ts, self._addresses()),
                **extra,
            )
        except (OSError, ValueError) as exc:
            log.error("%s/%s: cannot install CHILD_SA %08x_i: %s", event.conn, event.child, event.spi_in, exc)
            # The peer believes the Child SA is up: the engine reports the failure and deletes it.
            self.engine.child_install_failed(event.spi_in, describe_error(exc), time.monotonic())
            return
        self._children[event.spi_in] = child_id
        self._outbound[event.spi_in] = (child_id, outbound, event.remote)
        self._watch(event, outbound, inbound)
        log.info(
            "%s/%s: CHILD_SA installed, SPIs %08x_i %08x_o, %s",
            event.conn,
            event.child,
            event.spi_in,
            event.spi_out,
            "ESP in UDP" if event.encap else "ESP",
        )
        self._resolve(event.conn, event.child)
        self.actions.child_up(event.conn, event.child)

    def _watch(self, event: ChildSaUp, outbound: OutboundSA, inbound: InboundSA) -> None:
        if event.limits is not None:
            self.dataplane.watch(inbound, event.spi_in, event.limits)
            self.dataplane.watch(outbound, event.spi_in, event.limits)

    def _install_rekeyed(self, event: ChildSaUp, outbound: OutboundSA, inbound: InboundSA) -> None:
        """Make-before-break (RFC 7296 §2.8): new inbound SA first, the outbound switch now or later."""
        child_id = self._children[event.rekey_of]
        self.dataplane.add_inbound(child_id, inbound)
        self._children[event.spi_in] = child_id
        self._outbound[event.spi_in] = (child_id, outbound, event.remote)
        if event.outbound:
            self.dataplane.switch_outbound(child_id, outbound, event.remote)
        log.info(
            "%s/%s: CHILD_SA SPIs %08x_i %08x_o join %08x_i (%s)",
            event.conn,
            event.child,
            event.spi_in,
            event.spi_out,
            event.rekey_of,
            "sending now" if event.outbound else "sending later",
        )
        self._resolve(event.conn, event.child)

    def _outbound_gone(self, spi_in: int) -> None:
        """The kernel deleted a state of pair `spi_in` at its hard limit, and the engine keeps that pair
        only until the peer's DELETE (a rekey it answered, or lost a collision of): if the pair's
        outbound SA still carries the traffic, send through the newest pair of the same child now. The
        peer has that pair installed since the rekey's response (RFC 7296 §2.8)."""
        gone = self._outbound.get(spi_in)
        if gone is None or self.dataplane.outbound_of(gone[0]) is not gone[1]:
            return
        newer = [
            spi
            for spi, (child_id, _out, _remote) in self._outbound.items()
            if child_id == gone[0] and spi != spi_in
        ]
        if newer:
            log.warning("%s: outbound SA %08x reached its hard limit before the peer's DELETE; sending "
                        "through the new one now", gone[0], gone[1].spi)  # fmt: skip
            self._switch_outbound(newer[-1])

    def _switch_outbound(self, spi_in: int) -> None:
        """Send through the outbound SA installed with inbound SPI `spi_in` (make-before-break)."""
        waiting = self._outbound.get(spi_in)
        if waiting is not None:
            child_id, outbound, remote = waiting
            if self.dataplane.outbound_of(child_id) is not outbound:
                self.dataplane.switch_outbound(child_id, outbound, remote)


def route_if_id(config, conn: str) -> int:
    """The if_id of a route-based connection's XFRM interface; 0 for a policy-based one."""
    connection = config.connections.get(conn)
    return connection.interface.if_id if connection is not None and connection.interface is not None else 0


def _local_address_in(selectors, addresses: LocalAddresses) -> Optional[str]:
    """An address of this host inside our side's selectors (the first found, of either version)."""
    found = _local_addresses_in(selectors, addresses)
    return found[0] if found else None


def _local_addresses_in(selectors, local_addresses: LocalAddresses) -> Tuple[str, ...]:
    """Addresses of this host inside our side's selectors, the first of each IP version, as the sources
    for tunnel routes (traffic the gateway itself sends then matches the policy, as strongSwan does; a
    child with IPv4 and IPv6 selectors needs one of each)."""
    try:
        addresses = local_addresses.current()
    except (OSError, ValueError, RuntimeError):
        return ()
    ranges = address_ranges(selectors)
    found: Dict[int, str] = {}
    for address in addresses:
        if address.version not in found and any(
            ts.version == address.version and ts.start <= int(address) <= ts.end for ts in ranges
        ):
            found[address.version] = str(address)
    return tuple(found.values())
