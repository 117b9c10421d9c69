"""The ESP packet pump: TUN <-> SPD/SAD and the ESP core <-> UDP (RFC 3948) or raw ESP sockets.

One :class:`Dataplane` serves one TUN queue and its sockets from an asyncio loop
(``loop.add_reader``); it holds no global state, so later several TUN queues, each served by its
own process with its own Child SAs (RFC 9611 style), can each run one. Per wakeup it drains a
batch:

* TUN readable: read up to ``batch`` packets into reused buffers, SPD lookup, encapsulate, and
  send each SA's packets to its peer together (UDP GSO runs).
* socket readable: receive up to ``batch`` datagrams (UDP GRO runs), demultiplex RFC 3948 (IKE
  behind the non-ESP marker to the IKE handler, NAT keepalives counted, ESP to the SAD),
  decapsulate (replay, ICV, padding and inbound selector checks are the ESP core's), and write
  the inner packets to the TUN device — as TCP super-packets when the TUN has a virtio-net
  header (:mod:`.gro`).
* route-based connections (mode route) have a TUN device and an SPD of their own
  (:mod:`.route_tuns`); what their Child SAs decrypt goes to their device.

Nothing here logs or raises per packet: every packet that is not forwarded is counted under a
reason — in the SA's ``drops`` (ESP core), in the SAD's or SPD's ``drops``, or in this object's
:class:`DataplaneDrops`.

The IKE side drives it with :meth:`Dataplane.install_child` / :meth:`Dataplane.remove_child`,
and for make-before-break rekeying (RFC 7296 §2.8) :meth:`Dataplane.add_inbound`, then
:meth:`Dataplane.switch_outbound`, then later :meth:`Dataplane.remove_inbound`. ESP packets that
arrive before their inbound SA is installed are kept for a moment (:mod:`.early`) and decrypted by
:meth:`Dataplane.add_inbound`. IKE messages that arrive on the sockets go to
``ike_handler(data, source, local)`` (without the non-ESP marker); :meth:`Dataplane.send_ike`
sends them (adding it on NAT-T ports).

Several queues later: create the TUN with ``Tun(..., multi_queue=True)``, give each worker
process ``tun.open_queue()`` and its own ``UdpEndpoint(..., reuse_port=True)`` and one Dataplane;
each process then needs Child SAs of its own (sequence numbers and replay windows cannot be
shared between processes), i.e. one SA pair per queue as RFC 9611 describes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from ..esp import SAD, SPD, InboundSA, OutboundSA, Policy, SelectorSet
from .children import (
    Address,
    Child,
    DataplaneDrops,
    DataplaneError,
    Endpoint,
    IoCounters,
    Selectors,
    _add_counts,
    _selectors,
    _sources,
    ike_socket_for,
)
from .early import EarlyPackets
from .gro import TcpCoalescer
from .lifetimes import VolumeWatch
from .route_tuns import RouteTun, RouteTuns
from .routes import RouteManager, networks_of_range
from .tun import Tun
from .udp import NON_ESP_MARKER, RawEspEndpoint, UdpEndpoint

log = logging.getLogger("pyike.dataplane")

__all__ = ["DEFAULT_BATCH", "Dataplane", "DataplaneError"]

DEFAULT_BATCH = 64
_SPI = struct.Struct("!I")
IkeHandler = Callable[[bytes, Address, Address], None]


class Dataplane:
    """The packet pump of one TUN queue and its sockets; see the module docstring."""

    def __init__(
        self,
        tun: Tun,
        endpoints: Sequence[Endpoint],
        *,
        routes: Optional[RouteManager] = None,
        route_source: Union[str, Sequence[str], None] = None,
        batch: int = DEFAULT_BATCH,
        ike_handler: Optional[IkeHandler] = None,
        gro: bool = True,
    ):
        self.tun = tun
        self.endpoints = list(endpoints)
        self.routes = routes
        self.route_source = route_source
        self.batch = batch
        tun.set_batch(batch)
        self.ike_handler = ike_handler
        self.spd = SPD()
        self.sad = SAD()
        # ESP that arrives before its SA (the peer may send as soon as it has answered): see early.py
        self.early = EarlyPackets()
        self.sad.on_unknown = self.early.hold
        self.drops = DataplaneDrops()
        self.io = IoCounters()
        self._children: Dict[str, Child] = {}
        self._tx: Dict[OutboundSA, Child] = {}
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._coalescer = TcpCoalescer() if (gro and tun.vnet_hdr) else None
        # byte/packet/sequence-number lifetimes (RFC 4301 §4.4.2.1), checked after each batch while any
        # SA has a byte or packet limit; the owner sets `limits.on_limit`
        self.limits = VolumeWatch()
        # route-based connections (mode route): a TUN device and SPD each (route_tuns.py), by if_id, and
        # the inbound SPIs whose packets go to one of them instead of the main TUN
        self.interfaces = RouteTuns(self, tun.mtu, gro)
        self._route_tuns: Dict[int, RouteTun] = {}
        self._routed: Dict[int, RouteTun] = {}

    def __repr__(self) -> str:
        return "<Dataplane %s children=%d>" % (self.tun.name, len(self._children))

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        """Start serving the TUN queue and the sockets on ``loop`` (default: the running loop)."""
        if self._loop is not None:
            return
        loop = loop or asyncio.get_running_loop()
        loop.add_reader(self.tun.fd, self._on_tun)
        for endpoint in self.endpoints:
            loop.add_reader(endpoint.fileno(), self._on_socket, endpoint)
        for route_tun in self._route_tuns.values():
            loop.add_reader(route_tun.tun.fd, self._on_route_tun, route_tun)
        self._loop = loop

    def stop(self) -> None:
        """Stop serving; SAs, policies and routes stay (see :meth:`close`)."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        loop.remove_reader(self.tun.fd)
        for endpoint in self.endpoints:
            loop.remove_reader(endpoint.fileno())
        for route_tun in self._route_tuns.values():
            loop.remove_reader(route_tun.tun.fd)

    def close(self) -> None:
        """Stop, remove every child and its routes, close the route-based connections' TUN devices; the
        main TUN and the sockets belong to the caller."""
        self.stop()
        for child_id in list(self._children):
            self.remove_child(child_id)
        self.interfaces.close()

    def attach(self, route_tun: RouteTun) -> None:
        """Serve a route-based connection's TUN device (called by ``self.interfaces``)."""
        self._route_tuns = {**self._route_tuns, route_tun.if_id: route_tun}
        if self._loop is not None:
            self._loop.add_reader(route_tun.tun.fd, self._on_route_tun, route_tun)

    def unwatch(self, route_tun: RouteTun) -> None:
        """Stop reading a route-based connection's TUN device (its fd is about to close or is dead)."""
        if self._loop is not None:
            self._loop.remove_reader(route_tun.tun.fd)

    def detach(self, route_tun: RouteTun) -> None:
        """Stop serving a TUN device that is about to close; its children are removed after it."""
        self._route_tuns = {if_id: rt for if_id, rt in self._route_tuns.items() if rt is not route_tun}
        self._routed = {spi: rt for spi, rt in self._routed.items() if rt is not route_tun}
        route_tun.pending.clear()
        self.unwatch(route_tun)

    # --- the IKE side's API ------------------------------------------------------------------
    def install_child(
        self,
        child_id: str,
        outbound_sa: Optional[OutboundSA],
        inbound_sa: Optional[InboundSA],
        local_ts: Selectors,
        remote_ts: Selectors,
        peer: Address,
        encap: bool = True,
        *,
        local: Optional[str] = None,
        route: bool = True,
        route_source: Union[str, Sequence[str], None] = None,
        if_id: int = 0,
    ) -> None:
        """Install a Child SA: policy local_ts -> remote_ts through ``outbound_sa`` to ``peer``.

        ``encap``: ESP in UDP (RFC 3948) from our NAT-T socket (on address ``local`` if given,
        which is also the packets' source address on a wildcard socket), else raw ESP. The
        inbound SA is checked against the selectors (set on it if it has none). With a route
        manager, routes to the remote selectors go into the TUN device, with ``route_source``
        (an address, or one per IP version) as preferred source for routes of the same IP version.
        ``if_id``: the child of a route-based connection, whose TUN device (``self.interfaces``) carries
        its traffic; its policy goes into that device's SPD, and no route is set (the operator routes).
        """
        if child_id in self._children:
            raise DataplaneError("child %r is already installed; remove it or rekey it" % child_id)
        local_sel = _selectors(local_ts)
        remote_sel = _selectors(remote_ts)
        endpoint = self._endpoint_for(peer, encap, local)
        peer = (peer[0], int(peer[1]) if encap else 0)
        if inbound_sa is not None and inbound_sa.spi in self.sad:
            raise DataplaneError("inbound SPI %#010x is already installed" % inbound_sa.spi)
        route_tun = self.route_tun_of(if_id)
        policy = Policy(child_id, local_sel, remote_sel, outbound_sa)
        child = Child(child_id, policy, endpoint, peer, encap, local if endpoint.wildcard else None)
        child.route_tun = route_tun
        if route and self.routes is not None and route_tun is None:
            sources = _sources(route_source or self.route_source)
            try:
                for ts in remote_sel:
                    source = sources.get(ts.version)
                    for network in networks_of_range(ts.start, ts.end, ts.version):
                        self.routes.add(network, source)
                        child.routes.append((network, source))
            except OSError:
                for network, source in child.routes:
                    self.routes.remove(network, source)
                raise
        self._children[child_id] = child
        if inbound_sa is not None:
            self.add_inbound(child_id, inbound_sa)
        if outbound_sa is not None:
            self._publish_tx(add=(outbound_sa, child))
        self._spd_of(child).add(policy)

    def remove_child(self, child_id: str) -> None:
        """Remove the policy, every SA and the routes of a child (unknown ids are ignored)."""
        child = self._children.pop(child_id, None)
        if child is None:
            return
        self._spd_of(child).remove(child_id)
        if child.outbound is not None:
            child.retire_outbound(child.outbound)
            self._publish_tx(remove=child.outbound)
            self.limits.remove(child.outbound)
        for spi in list(child.inbound):
            self.sad.remove(spi)
            self._unroute(spi)
            sa = child.inbound.pop(spi)
            child.retire_inbound(sa)
            self.limits.remove(sa)
        if self.routes is not None:
            for network, source in child.routes:
                self.routes.remove(network, source)
        child.routes = []

    def add_inbound(self, child_id: str, inbound_sa: InboundSA) -> None:
        """Accept packets of a new inbound SA too (rekey, step 1), and those that came before it."""
        child = self._child(child_id)
        if inbound_sa.selectors is None:
            inbound_sa.selectors = SelectorSet(child.local_ts, child.remote_ts)
        try:
            self.sad.add(inbound_sa)
        except ValueError as exc:
            raise DataplaneError(str(exc)) from None
        child.inbound[inbound_sa.spi] = inbound_sa
        if child.route_tun is not None:
            self._routed = {**self._routed, inbound_sa.spi: child.route_tun}
        early = self.early.take(inbound_sa.spi)
        if early:
            inner = [packet for packet in map(inbound_sa.decapsulate, early) if packet is not None]
            self.io.early_in += len(inner)
            if child.route_tun is not None:
                child.route_tun.pending.extend(inner)
                self._flush_routed()
            else:
                self._to_tun(inner)

    def switch_outbound(
        self, child_id: str, outbound_sa: OutboundSA, peer: Optional[Address] = None
    ) -> Optional[OutboundSA]:
        """Send through ``outbound_sa`` from now on (rekey, step 2); returns the old SA."""
        child = self._child(child_id)
        old = child.outbound
        if peer is not None:
            child.peer = (peer[0], int(peer[1]) if child.encap else 0)
        self._publish_tx(add=(outbound_sa, child), remove=old)
        child.outbound = outbound_sa
        self._spd_of(child).switch_sa(child_id, outbound_sa)
        if old is not None and old is not outbound_sa:
            child.retire_outbound(old)
            self.limits.remove(old)
        return old

    def remove_inbound(self, child_id: str, spi: int) -> Optional[InboundSA]:
        """Stop accepting packets of an old inbound SA (rekey, step 3)."""
        child = self._child(child_id)
        sa = child.inbound.pop(spi, None)
        if sa is not None:
            self.sad.remove(spi)
            self._unroute(spi)
            child.retire_inbound(sa)
            self.limits.remove(sa)
        return sa

    def watch(self, sa: Union[InboundSA, OutboundSA], key: int, limits: Any) -> None:
        """Report `sa`'s byte, packet and sequence-number limits (an ``ike.events.VolumeLimits``) to
        ``limits.on_limit`` under `key`; the watch ends when the SA is removed or replaced."""
        self.limits.add(sa, key, limits)

    def outbound_of(self, child_id: str) -> Optional[OutboundSA]:
        """The SA a child sends through now."""
        return self._child(child_id).outbound

    def update_peer(self, child_id: str, peer: Address) -> None:
        """The peer's address or NAT mapping changed (RFC 7296 §2.23)."""
        child = self._child(child_id)
        child.peer = (peer[0], int(peer[1]) if child.encap else 0)

    @property
    def children(self) -> Tuple[str, ...]:
        return tuple(self._children)

    def child_stats(self, child_id: str) -> Dict[str, Any]:
        return self._child(child_id).stats()

    def stats(self) -> Dict[str, Any]:
        """Per child: bytes/packets in and out, drops by reason; and the pump's own counters."""
        drops = self.drops.as_dict()
        _add_counts(drops, self.sad.drops)
        for name, value in self.spd.drops.as_dict().items():
            drops["spd_" + name] = value
        endpoints = {}
        for endpoint in self.endpoints:
            name = "%s:%d" % endpoint.local if endpoint.local[1] else "%s/esp" % endpoint.local[0]
            endpoints[name] = dict(endpoint.counters.as_dict(), gro=endpoint.gro, gso=endpoint.gso)
        return {
            "tun": self.tun.name,
            "children": {child_id: child.stats() for child_id, child in self._children.items()},
            "drops": drops,
            "io": self.io.as_dict(),
            "endpoints": endpoints,
            "interfaces": {rt.name: _interface_stats(rt) for rt in self._route_tuns.values()},
        }

    # --- IKE messages ------------------------------------------------------------------------
    def send_ike(self, data: bytes, local: Address, peer: Address) -> bool:
        """Send an IKE message from our (address, port) to the peer; the marker is added on 4500.

        From a wildcard socket the message leaves from ``local``'s address all the same: a reply
        must come from the address the peer sent its request to.
        """
        return self._udp_for(local, peer).send_ike(data, peer, local[0])

    def send_keepalive(self, local: Address, peer: Address) -> bool:
        """A NAT keepalive (RFC 3948 §2.3) from our NAT-T (address, port)."""
        return self._udp_for(local, peer).send_keepalive(peer, local[0])

    def _udp_for(self, local: Address, peer: Address) -> UdpEndpoint:
        return ike_socket_for(self.endpoints, local, peer)

    def _deliver_ike(self, data: bytes, source: Address, local: Address) -> None:
        self.io.ike_in += 1
        handler = self.ike_handler
        if handler is None:
            self.drops.ike_unhandled += 1
            return
        try:
            handler(data, source, local)
        except Exception:  # the IKE side's bug must not stop the dataplane
            log.exception("IKE handler failed on a message from %s:%d", source[0], source[1])

    # --- internals ---------------------------------------------------------------------------
    def route_tun_of(self, if_id: int) -> Optional[RouteTun]:
        """The TUN device of a route-based connection's if_id; None for 0 (policy-based)."""
        if not if_id:
            return None
        route_tun = self._route_tuns.get(if_id)
        if route_tun is None:
            raise DataplaneError("no interface with if_id %d: its route-based connection has none" % if_id)
        return route_tun

    def spd_for(self, if_id: int) -> SPD:
        """The SPD that a policy of ``if_id`` belongs in (traps.py)."""
        route_tun = self.route_tun_of(if_id)
        return route_tun.spd if route_tun is not None else self.spd

    def _spd_of(self, child: Child) -> SPD:
        return child.route_tun.spd if child.route_tun is not None else self.spd

    def _unroute(self, spi: int) -> None:
        if spi in self._routed:
            self._routed = {key: rt for key, rt in self._routed.items() if key != spi}

    def _child(self, child_id: str) -> Child:
        child = self._children.get(child_id)
        if child is None:
            raise DataplaneError("no child %r is installed" % child_id)
        return child

    def _endpoint_for(self, peer: Address, encap: bool, local: Optional[str]) -> Endpoint:
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        for endpoint in self.endpoints:
            if family not in endpoint.families:
                continue
            if local is not None and endpoint.local[0] != local and not endpoint.wildcard:
                continue
            if encap and isinstance(endpoint, UdpEndpoint) and endpoint.nat_t:
                return endpoint
            if not encap and isinstance(endpoint, RawEspEndpoint):
                return endpoint
        raise DataplaneError(
            "no %s socket%s for peer %s"
            % ("NAT-T UDP" if encap else "raw ESP", " on %s" % local if local else "", peer[0])
        )

    def _publish_tx(
        self, add: Optional[Tuple[OutboundSA, Child]] = None, remove: Optional[OutboundSA] = None
    ) -> None:
        table = dict(self._tx)
        if remove is not None:
            table.pop(remove, None)
        if add is not None:
            table[add[0]] = add[1]
        self._tx = table

    # --- the hot paths -----------------------------------------------------------------------
    def _on_tun(self) -> None:
        """TUN readable: encrypt a batch and send it, one GSO run per SA where possible."""
        packets = self.tun.read_batch()
        io = self.io
        io.tun_wakeups += 1
        if not packets:
            return
        io.tun_rx += len(packets)
        self.send_inner(packets)

    def _on_route_tun(self, route_tun: RouteTun) -> None:
        """A route-based connection's TUN device readable: the same, through its own SPD."""
        try:
            packets = route_tun.tun.read_batch()
        except OSError as exc:  # the device was deleted from outside: its fd reports EBADFD for ever
            self._route_tun_broken(route_tun, exc)
            return
        io = self.io
        io.tun_wakeups += 1
        if not packets:
            return
        io.tun_rx += len(packets)
        self.send_inner(packets, route_tun.spd)

    def send_inner(self, packets: Sequence[bytes], spd: Optional[SPD] = None) -> None:
        """Protect and send inner packets as if read from the TUN device whose SPD is ``spd`` (default: the
        main one); also those a trap held."""
        lookup = (self.spd if spd is None else spd).lookup  # an empty SPD is falsy: never fall back
        groups: Dict[OutboundSA, List[bytes]] = {}
        last_sa = None
        last = None
        for packet in packets:
            sa = lookup(packet)
            if sa is None:
                continue  # counted by the SPD
            esp = sa.encapsulate(packet)
            if esp is None:
                continue  # counted by the SA
            if sa is not last_sa:
                last = groups.get(sa)
                if last is None:
                    last = groups[sa] = []
                last_sa = sa
            last.append(esp)
        tx = self._tx
        for sa, esps in groups.items():
            child = tx.get(sa)
            if child is None:
                self.drops.no_tx_path += len(esps)
                continue
            failed = child.endpoint.send_esp(esps, child.peer, child.source)
            if failed:
                child.tx_errors += failed
                self.drops.tx_error += failed
        if self.limits.counting:
            self.limits.check()

    def _on_socket(self, endpoint: Endpoint) -> None:
        """Socket readable: demultiplex, decrypt and write a batch to the TUN device."""
        io = self.io
        io.rx_wakeups += 1
        recv = endpoint.recv
        view = endpoint.view
        buffer = endpoint.buffer
        # with route-based connections configured every packet is asked where it goes: a Child SA installed
        # by an IKE message earlier in this very batch may be one of theirs
        decapsulate = self._decapsulate_routed if self._route_tuns else self.sad.decapsulate
        nat_t = endpoint.nat_t
        is_raw = isinstance(endpoint, RawEspEndpoint)
        marker = NON_ESP_MARKER
        inner: List[bytes] = []
        append = inner.append
        datagrams = 0
        keepalives = 0
        invalid = 0
        for count in range(self.batch):
            try:
                start, end, segment, source, local = recv()
            except BlockingIOError:
                datagrams = count
                break
            except OSError:
                datagrams = count
                break  # e.g. a queued ICMP error; the next wakeup goes on
            if is_raw:
                packet = decapsulate(view[start:end])
                if packet is not None:
                    append(packet)
                continue
            if not nat_t:
                self._deliver_ike(bytes(view[start:end]), source, local)
                continue
            position = start
            while position < end:
                stop = position + segment
                if stop > end:
                    stop = end
                if buffer.startswith(marker, position, stop):
                    self._deliver_ike(bytes(view[position + 4 : stop]), source, local)
                elif stop - position < 8:
                    if stop - position == 1 and buffer[position] == 0xFF:
                        keepalives += 1  # RFC 3948 §2.3: keeps the NAT mapping, nothing else
                    else:
                        invalid += 1
                else:
                    packet = decapsulate(view[position:stop])
                    if packet is not None:
                        append(packet)
                position = stop
        else:
            datagrams = self.batch
        io.udp_rx += datagrams
        if keepalives:
            io.keepalives_in += keepalives
        if invalid:
            self.drops.invalid_datagram += invalid
        self._to_tun(inner)

    def _route_tun_broken(self, route_tun: RouteTun, exc: OSError) -> None:
        route_tun.broken = exc.strerror or str(exc)
        self.unwatch(route_tun)
        log.error("interface %s: cannot read from its TUN device (%s), deleted from outside? Its traffic "
                  "stops; a reload or restart creates it again", route_tun.name, route_tun.broken)  # fmt: skip

    def _decapsulate_routed(self, packet) -> Optional[bytes]:
        """SAD.decapsulate while route-based children are installed: their inner packets are kept for
        their own TUN device (written by _to_tun after the batch), the others returned."""
        inner = self.sad.decapsulate(packet)
        if inner is None:
            return None
        route_tun = self._routed.get(_SPI.unpack_from(packet, 0)[0])
        if route_tun is None:
            return inner
        route_tun.pending.append(inner)
        return None

    def _to_tun(self, inner: List[bytes]) -> None:
        """Write decrypted packets to the TUN device (TCP segments coalesced where the TUN allows)."""
        if inner:
            self._write(self.tun, self._coalescer, inner)
        if self._route_tuns:
            self._flush_routed()
        if self.limits.counting:
            self.limits.check()

    def _flush_routed(self) -> None:
        for route_tun in self._route_tuns.values():
            if route_tun.pending:
                inner, route_tun.pending = route_tun.pending, []
                self._write(route_tun.tun, route_tun.coalescer, inner)

    def _write(self, tun: Tun, coalescer: Optional[TcpCoalescer], inner: List[bytes]) -> None:
        self.io.tun_tx += len(inner)
        if coalescer is not None:
            failed = tun.write_vnet(coalescer.coalesce(inner))
        else:
            failed = tun.write_batch(inner)
        if failed:
            self.drops.tun_write += failed


def _interface_stats(route_tun: RouteTun) -> Dict[str, Any]:
    drops = {"spd_" + name: value for name, value in route_tun.spd.drops.as_dict().items()}
    return {
        "if_id": route_tun.if_id,
        "policies": len(route_tun.spd),
        "drops": drops,
        "broken": route_tun.broken,
    }
