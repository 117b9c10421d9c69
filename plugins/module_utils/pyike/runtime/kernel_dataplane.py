"""The kernel dataplane: Child SAs as XFRM states and policies, ESP moved by the kernel (settings.dataplane).

It offers the daemon the API of the userspace :class:`~.dataplane.Dataplane` (install_child,
add_inbound, switch_outbound, remove_inbound, remove_child, child_stats, stats, send_ike...), but
nothing passes through Python except IKE: the kernel encrypts, decrypts, checks replay and selectors.

Per Child SA (one reqid from :data:`.xfrm.REQID_MIN` up, RFC 4301 §4.4 SPD/SAD in the kernel):

* an inbound and an outbound tunnel-mode ESP state (``ip xfrm state``), ESP in UDP (RFC 3948) with
  the ports of the IKE SA when NAT-T is in use: the kernel decapsulates ESP arriving on our NAT-T
  socket because that socket has ``UDP_ENCAP_ESPINUDP`` set (:func:`.udp.enable_esp_in_udp`), and
  passes IKE (behind the non-ESP marker) on to the socket;
* per pair of local and remote prefix an ``out`` policy whose template names the outbound SPI, and
  ``in`` and ``fwd`` policies accepting any SA of the reqid, at strongSwan's priorities.

Make-before-break rekeying (RFC 7296 §2.8): the new inbound state is added first (the in policy
accepts both SAs of the reqid), then the outbound switch rewrites the out policies' template SPI to
the new outbound state (XFRM_MSG_UPDPOLICY, atomic per policy; the kernel picks states by the
template's SPI, xfrm_state_find()); the old outbound state stays (with its sequence number, should a
switch come back to it) until the daemon removes its inbound partner after the DELETE exchange.

Traffic the gateway itself sends to the remote selectors must match the out policy, so like strongSwan
the routes to the remote selectors (table 220, :class:`.routes.RouteManager`) follow the path to the
peer with a preferred source inside our selectors; without them the kernel would pick the public
address and the packet would leave in the clear.

Counters come from the kernel (XFRM_MSG_GETAE: bytes, packets, sequence number; no keys). The states carry
the negotiated byte and packet lifetimes (and the sequence-number limit as the outbound soft packet
limit): the kernel reports a soft crossing with XFRM_MSG_EXPIRE, which rekeys the Child SA at once, and
deletes a state at its hard limit and reports that too (RFC 4301 §4.4.2.1). The counters are also
polled on the daemon's slow timer (:class:`PolledVolumeWatch`), should an event be lost. Time
lifetimes stay with the engine; the states carry the hard one plus a margin, and 2^32-1 packets without
ESN: should the daemon die, its SAs still end, and the policies then drop the traffic instead of
passing it in the clear. Everything with
our reqids is flushed at start (a crash leaves states behind), on close, and what no installed child
owns after a reload.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..esp.counters import Traffic
from ..ike.lifetimes import SEQ_MAX
from .children import Address, DataplaneError, Endpoint, _selectors, _sources, ike_socket_for
from .kernel_traps import KernelTrap, KernelTraps
from .lifetimes import VolumeWatch
from .routes import RouteManager, networks_of_range
from .udp import NON_ESP_MARKER, UdpEndpoint
from .xfrm import (
    PROBE_REQID,
    REQID_MAX,
    REQID_MIN,
    AcquireInfo,
    ExpireInfo,
    PolicySpec,
    Selector,
    StateSpec,
    Xfrm,
    XfrmEvents,
    missing,
)
from .xfrm_interfaces import XfrmInterfaces
from .xfrm_msg import XFRM_INF
from .xfrm_selectors import policy_specs

log = logging.getLogger("pyike.kernel")

LIFETIME_MARGIN = 60  # seconds the kernel keeps a state past the engine's hard lifetime (a backstop only)
MAX_PREVIOUS_OUT = 4  # outbound states kept after a switch, awaiting their DELETE (oldest go first)
ROUTE_PROTOCOL = 0x70  # rtm_protocol of our routes in table 220 ("p"; iproute2's rt_protos leaves it free)

IkeHandler = Callable[[bytes, Address, Address], None]


class KernelSA:
    """One direction of a Child SA as the kernel backend keeps it: SPI, transforms, limits and, until
    the kernel has them, keys; ``traffic`` is refreshed from the kernel's counters. ``partner`` is the
    inbound SPI of an outbound SA's pair (its state goes with that one's)."""

    __slots__ = ("encr_id", "encr_key", "esn", "gone", "installed", "integ_id", "integ_key", "life_time",
                 "limits", "oseq", "outbound", "partner", "spi", "traffic")  # fmt: skip

    def __init__(self, spi: int, encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes, esn: bool,
                 *, outbound: bool = False, partner: int = 0, life_time: float = 0.0, limits: Any = None):  # fmt: skip
        self.spi = spi
        self.encr_id = encr_id
        self.encr_key = bytes(encr_key)
        self.integ_id = integ_id
        self.integ_key = bytes(integ_key)
        self.esn = esn
        self.outbound = outbound
        self.partner = partner
        self.life_time = life_time
        self.limits = limits
        self.installed = False  # once True the keys are gone: the kernel has them
        self.traffic = Traffic()
        self.oseq = 0  # the last sequence number the kernel sent (XFRM_MSG_GETAE)
        self.gone = False  # the kernel deleted the state at a hard lifetime

    def __repr__(self) -> str:
        return "<KernelSA %08x>" % self.spi

    @property
    def seq(self) -> int:
        return self.oseq

    @property
    def exhausted(self) -> bool:
        return not self.esn and self.oseq >= SEQ_MAX


def kernel_sa_pair(event: Any) -> Tuple[KernelSA, KernelSA]:
    """(outbound, inbound) of an ``ike.events.ChildSaUp``."""
    integ = event.integ_id or 0
    life = dict(life_time=event.life_time, limits=event.limits)
    outbound = KernelSA(event.spi_out, event.encr_id, event.encr_key_out, integ, event.integ_key_out, event.esn,
                        outbound=True, partner=event.spi_in, **life)  # fmt: skip
    inbound = KernelSA(
        event.spi_in, event.encr_id, event.encr_key_in, integ, event.integ_key_in, event.esn, **life
    )
    return outbound, inbound


class KernelChild:
    __slots__ = ("child_id", "encap", "if_id", "inbound", "local", "local_ts", "outbound", "peer", "policies",
                 "previous_out", "remote_ts", "reqid", "retired_in", "retired_out", "routes")  # fmt: skip

    def __init__(
        self,
        child_id: str,
        reqid: int,
        local: str,
        peer: Address,
        encap: bool,
        local_ts,
        remote_ts,
        if_id: int = 0,
    ):
        self.child_id = child_id
        self.if_id = if_id  # route-based: the XFRM interface whose traffic it carries
        self.reqid = reqid
        self.local = local
        self.peer = peer
        self.encap = encap
        self.local_ts = local_ts
        self.remote_ts = remote_ts
        self.outbound: Optional[KernelSA] = None
        self.inbound: Dict[int, KernelSA] = {}
        self.previous_out: List[KernelSA] = []  # switched away from, kept until their partner goes
        self.policies: List[PolicySpec] = []
        self.routes: List[Tuple[str, Optional[str]]] = []
        self.retired_in = Traffic()
        self.retired_out = Traffic()


class PolledVolumeWatch(VolumeWatch):
    """Byte and packet lifetimes of kernel SAs, should an XFRM_MSG_EXPIRE be lost: the counters are read
    from the kernel before each check (the daemon checks every few seconds)."""

    def __init__(self, refresh: Callable[[List[Any]], None]) -> None:
        super().__init__()
        self._refresh = refresh
        self.counting = 0  # nothing to check per batch: the kernel has no batches here

    def add(self, sa: Any, key: int, limits: Any) -> None:
        super().add(sa, key, limits)
        self.counting = 0

    def check(self, everything: bool = False) -> int:
        if not everything or not self._watches:
            return 0
        self._refresh(list(self._watches))
        return super().check(everything=True)


class KernelDataplane(KernelTraps):
    """Child SAs in the kernel's XFRM tables; IKE on the daemon's UDP sockets (see the module docstring);
    traps as policies without a state (kernel_traps.py)."""

    kernel = True

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        nat_t_port: int,
        ike_handler: Optional[IkeHandler] = None,
        xfrm: Optional[Xfrm] = None,
        routes: Optional[RouteManager] = None,
        events: Callable[[], Any] = XfrmEvents,
        interfaces: Optional[XfrmInterfaces] = None,
    ):
        self.endpoints = list(endpoints)
        self.interfaces = interfaces if interfaces is not None else XfrmInterfaces()  # mode route
        self.events = events  # opened by start(): the kernel's acquires and expires
        self._events: Optional[Any] = None
        self._traps: Dict[str, KernelTrap] = {}
        self.nat_t_port = nat_t_port
        self.ike_handler = ike_handler
        self.xfrm = xfrm or Xfrm()
        self.routes = routes if routes is not None else RouteManager(None, protocol=ROUTE_PROTOCOL)
        self._children: Dict[str, KernelChild] = {}
        # from a random point: a larval acquire state that a crashed run left for a reqid (30 s in the
        # kernel, no SPI to delete it by) would hold back the first acquire of a trap that got it again
        self._next_reqid = REQID_MIN + secrets.randbelow(REQID_MAX - REQID_MIN - 1)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.io = {"ike_in": 0, "keepalives_in": 0, "invalid_datagram": 0, "ike_unhandled": 0}
        self.limits = PolledVolumeWatch(self._refresh)

    def __repr__(self) -> str:
        return "<KernelDataplane children=%d>" % len(self._children)

    # --- lifecycle ---------------------------------------------------------------------------
    def flush(self) -> Tuple[int, int]:
        """Remove every state and policy with our reqids and our routes (what a crashed daemon left
        behind); returns (states, policies)."""
        try:
            routes = self.routes.flush_protocol()
        except OSError as exc:
            log.warning("%s", exc)
        else:
            if routes:
                log.info("removed %d route(s) an earlier run left in table %d", routes, self.routes.table)
        return self.xfrm.flush_ours()

    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if self._loop is not None:
            return
        loop = loop or asyncio.get_running_loop()
        for endpoint in self.endpoints:
            loop.add_reader(endpoint.fileno(), self._on_socket, endpoint)
        self._loop = loop
        try:
            self._events = self.events()
        except OSError as exc:  # lifetimes are still polled; traps stay silent
            log.error("cannot listen for the kernel's acquires and expires: %s", exc)
        else:
            loop.add_reader(self._events.fileno(), self._on_events)

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            for endpoint in self.endpoints:
                loop.remove_reader(endpoint.fileno())
        events, self._events = self._events, None
        if events is not None:
            if loop is not None:
                loop.remove_reader(events.fileno())
            events.close()

    def close(self) -> None:
        """Stop, remove every child, then flush whatever else carries our reqids."""
        self.stop()
        for child_id in list(self._children):
            try:
                self.remove_child(child_id)
            except OSError as exc:
                log.warning("cannot remove %s from the kernel: %s", child_id, exc)
        try:
            self.flush()
        finally:
            self.interfaces.close()
            self.xfrm.close()
            self.routes.cleanup()
            self.routes.close()

    def reconcile(self) -> Tuple[int, int]:
        """Delete our states and policies that no installed child owns (after a reload)."""
        owned_states = {(c.reqid, sa.spi) for c in self._children.values() for sa in self._sas(c)}
        owned = {c.reqid for c in self._children.values()} | {t.reqid for t in self._traps.values()}
        states = policies = 0
        for info in self.xfrm.policies():
            if info.reqid is not None and REQID_MIN <= info.reqid <= REQID_MAX and info.reqid not in owned:
                self._quietly(self.xfrm.delete_policy, _selector_of(info), info.direction)
                policies += 1
        for state in self.xfrm.states():
            if (
                state.spi
                and REQID_MIN <= state.reqid <= REQID_MAX
                and (state.reqid, state.spi) not in owned_states
            ):
                self._quietly(self.xfrm.delete_state, state.dst, state.spi, state.src)
                states += 1
        return states, policies

    # --- the IKE side's API ------------------------------------------------------------------
    def install_child(
        self,
        child_id: str,
        outbound_sa: Optional[KernelSA],
        inbound_sa: Optional[KernelSA],
        local_ts: Any,
        remote_ts: Any,
        peer: Address,
        encap: bool = True,
        *,
        local: Optional[str] = None,
        route: bool = True,
        route_source: Any = None,
        trap: Optional[str] = None,
        if_id: int = 0,
    ) -> None:
        """States (inbound first) and policies of a Child SA; on failure nothing of it stays installed.
        ``trap``: the name of the trap this child answers (kernel_traps.py), whose reqid and policies
        it takes over."""
        if child_id in self._children:
            raise DataplaneError("child %r is already installed; remove it or rekey it" % child_id)
        if not local:
            raise DataplaneError("child %r: the kernel needs our address of the IKE SA" % child_id)
        local_sel, remote_sel = _selectors(local_ts), _selectors(remote_ts)
        specs = policy_specs(local_sel, remote_sel, local, peer[0], 0, if_id=if_id)
        reqid = self._trap_reqid(trap, specs) or self._reqid()
        child = KernelChild(
            child_id, reqid, local, (peer[0], int(peer[1])), encap, local_sel, remote_sel, if_id
        )
        self._children[child_id] = child
        try:
            if inbound_sa is not None:
                self.add_inbound(child_id, inbound_sa)
            if outbound_sa is not None:
                self._add_state(child, outbound_sa, outbound=True)
                child.outbound = outbound_sa
            for spec in self._policy_specs(child):
                # a trap's policy is taken over; one another child holds is refused (EEXIST), as ever
                taken_over = self._trap_policy(spec) is not None and self._child_policy(spec) is None
                self.xfrm.add_policy(spec, update=taken_over)
                child.policies.append(spec)
            if route and not if_id:  # route-based: the operator's routes (or a routing daemon's) lead in
                child.routes = self._add_routes(child_id, child.remote_ts, peer[0], local, route_source)
        except (OSError, ValueError):
            self._remove(child)
            raise

    def remove_child(self, child_id: str) -> None:
        child = self._children.get(child_id)
        if child is not None:
            self._remove(child)

    def add_inbound(self, child_id: str, inbound_sa: KernelSA) -> None:
        """Accept packets of a new inbound SA too (rekey, step 1): the in policy takes any SA of the reqid."""
        child = self._child(child_id)
        if inbound_sa.spi in child.inbound:
            raise DataplaneError("inbound SPI %#010x is already installed" % inbound_sa.spi)
        self._add_state(child, inbound_sa, outbound=False)
        child.inbound[inbound_sa.spi] = inbound_sa

    def switch_outbound(
        self, child_id: str, outbound_sa: KernelSA, peer: Optional[Address] = None
    ) -> Optional[KernelSA]:
        """Send through ``outbound_sa`` from now on (rekey, step 2): install it (unless it is a previous
        one still in the kernel), point the out policies' templates at its SPI; the old outbound state
        stays until its inbound partner is removed. On failure the policies point where they did and
        the new state is gone. Returns the old SA."""
        child = self._child(child_id)
        old = child.outbound
        if old is outbound_sa:
            return old
        if peer is not None:
            self.update_peer(child_id, peer)
        kept = outbound_sa in child.previous_out
        if kept and outbound_sa.gone:
            raise DataplaneError("outbound SA %08x of %s was deleted by the kernel at its hard lifetime"
                                 % (outbound_sa.spi, child_id))  # fmt: skip
        if not kept:
            if outbound_sa.installed:
                raise DataplaneError("outbound SA %08x of %s was removed from the kernel; it needs a rekey"
                                     % (outbound_sa.spi, child_id))  # fmt: skip
            self._add_state(child, outbound_sa, outbound=True)
        switched: List[PolicySpec] = []
        try:
            for spec in child.policies:
                if spec.direction == "out":
                    self.xfrm.add_policy(dataclasses.replace(spec, spi=outbound_sa.spi), update=True)
                    switched.append(spec)
        except OSError:
            for spec in switched:
                self._quietly(self.xfrm.add_policy, spec, True)
            if not kept:
                self._quietly(self.xfrm.delete_state, *self._where(child, outbound_sa))
            raise
        for spec in switched:
            spec.spi = outbound_sa.spi
        child.outbound = outbound_sa
        if kept:
            child.previous_out.remove(outbound_sa)
        if old is not None and old.partner not in child.inbound:
            self._retire(child, old)  # its pair is gone already: nothing will come back to it
        elif old is not None:
            child.previous_out.append(old)
            while len(child.previous_out) > MAX_PREVIOUS_OUT:
                self._retire(child, child.previous_out.pop(0))
        return old

    def remove_inbound(self, child_id: str, spi: int) -> Optional[KernelSA]:
        """Stop accepting packets of an old inbound SA (rekey, step 3); its outbound partner goes too
        unless it is still the one we send through."""
        child = self._child(child_id)
        sa = child.inbound.pop(spi, None)
        if sa is not None:
            self._retire(child, sa)
        for previous in [p for p in child.previous_out if p.partner == spi]:
            child.previous_out.remove(previous)
            self._retire(child, previous)
        return sa

    def watch(self, sa: KernelSA, key: int, limits: Any) -> None:
        self.limits.add(sa, key, limits)

    def outbound_of(self, child_id: str) -> Optional[KernelSA]:
        return self._child(child_id).outbound

    def update_peer(self, child_id: str, peer: Address) -> None:
        child = self._child(child_id)
        if (peer[0], int(peer[1])) != child.peer:
            # the states name the old address and port: traffic goes on to it until a rekey
            log.warning("%s: the peer moved to %s:%d; the kernel dataplane keeps %s:%d (MIGRATE is not "
                        "implemented)", child_id, peer[0], peer[1], child.peer[0], child.peer[1])  # fmt: skip

    @property
    def children(self) -> Tuple[str, ...]:
        return tuple(self._children)

    def child_stats(self, child_id: str) -> Dict[str, Any]:
        child = self._child(child_id)
        self._refresh(list(self._sas(child)))
        out = child.outbound
        sas_out = [{"spi": sa.spi, "bytes": sa.traffic.bytes, "packets": sa.traffic.packets}
                   for sa in ([out] if out is not None else []) + child.previous_out]  # fmt: skip
        sas_in = [{"spi": sa.spi, "bytes": sa.traffic.bytes, "packets": sa.traffic.packets}
                  for sa in child.inbound.values()]  # fmt: skip
        return {
            "peer": "%s:%d" % child.peer if child.encap else child.peer[0],
            "encap": child.encap,
            "reqid": child.reqid,
            "local_ts": [repr(ts) for ts in child.local_ts],
            "remote_ts": [repr(ts) for ts in child.remote_ts],
            "routes": [network for network, _source in child.routes],
            "spi_out": out.spi if out is not None else None,
            "spi_in": sorted(child.inbound),
            "bytes_out": child.retired_out.bytes + sum(s["bytes"] for s in sas_out),
            "packets_out": child.retired_out.packets + sum(s["packets"] for s in sas_out),
            "bytes_in": child.retired_in.bytes + sum(s["bytes"] for s in sas_in),
            "packets_in": child.retired_in.packets + sum(s["packets"] for s in sas_in),
            "sas_out": sas_out,
            "sas_in": sas_in,
        }

    def stats(self) -> Dict[str, Any]:
        endpoints = {}
        for endpoint in self.endpoints:
            name = "%s:%d" % endpoint.local
            endpoints[name] = dict(
                endpoint.counters.as_dict(), esp_in_udp=bool(getattr(endpoint, "nat_t", False))
            )
        children = {}
        for child_id in self._children:
            try:
                children[child_id] = self.child_stats(child_id)
            except OSError as exc:
                children[child_id] = {"error": str(exc)}
        events = self._events
        return {"kernel": True, "children": children, "io": dict(self.io), "endpoints": endpoints,
                "drops": {"invalid_datagram": self.io["invalid_datagram"]},
                "xfrm_events": {"listening": events is not None,
                                "malformed": getattr(events, "malformed", 0),
                                "overruns": getattr(events, "overruns", 0)}}  # fmt: skip

    # --- IKE messages ------------------------------------------------------------------------
    def send_ike(self, data: bytes, local: Address, peer: Address) -> bool:
        return self._udp_for(local, peer).send_ike(data, peer, local[0])

    def send_keepalive(self, local: Address, peer: Address) -> bool:
        return self._udp_for(local, peer).send_keepalive(peer, local[0])

    def _udp_for(self, local: Address, peer: Address) -> UdpEndpoint:
        return ike_socket_for(self.endpoints, local, peer)

    def _on_socket(self, endpoint: UdpEndpoint) -> None:
        """IKE only: the kernel took ESP off the NAT-T socket (and ate NAT keepalives) before us."""
        for _count in range(64):
            try:
                start, end, _segment, source, local = endpoint.recv()
            except BlockingIOError:
                return
            except OSError:
                return  # e.g. a queued ICMP error; the next wakeup goes on
            data = bytes(endpoint.view[start:end])
            if endpoint.nat_t:
                if data.startswith(NON_ESP_MARKER):
                    data = data[4:]
                elif data == b"\xff":
                    self.io["keepalives_in"] += 1
                    continue
                else:
                    self.io["invalid_datagram"] += 1
                    continue
            self.io["ike_in"] += 1
            if self.ike_handler is None:
                self.io["ike_unhandled"] += 1
                continue
            try:
                self.ike_handler(data, source, local)
            except Exception:  # the IKE side's bug must not stop the dataplane
                log.exception("IKE handler failed on a message from %s:%d", source[0], source[1])

    # --- the kernel's events ------------------------------------------------------------------
    def _on_events(self) -> None:
        try:
            events = self._events.read() if self._events is not None else []
        except OSError as exc:  # say so, never stop the loop
            log.warning("cannot read the kernel's XFRM events: %s", exc)
            return
        for event in events:
            if isinstance(event, AcquireInfo):
                self._acquired(event)
            elif isinstance(event, ExpireInfo):
                self._expired(event)

    def _expired(self, expire: ExpireInfo) -> None:
        """A state of ours crossed a lifetime in the kernel (RFC 4301 §4.4.2.1): soft, the Child SA is
        rekeyed now (not at the next poll); hard, the kernel has deleted the state and the Child SA goes."""
        for child in self._children.values():
            for sa in self._sas(child):
                if sa.spi == expire.spi and self._where(child, sa)[0] == expire.dst and not sa.gone:
                    what = _what_expired(sa, expire)
                    log.info("%s: SA %08x crossed its %s %s lifetime in the kernel (XFRM_MSG_EXPIRE)",
                             child.child_id, sa.spi, "hard" if expire.hard else "soft", what)  # fmt: skip
                    if expire.hard:  # deleted: its last counters are these
                        sa.gone = True
                        sa.traffic.bytes, sa.traffic.packets = expire.bytes, expire.packets
                    self.limits.expired(sa, _key(sa), expire.hard, what)
                    return

    # --- internals ---------------------------------------------------------------------------
    def _child(self, child_id: str) -> KernelChild:
        child = self._children.get(child_id)
        if child is None:
            raise DataplaneError("no child %r is installed" % child_id)
        return child

    def _reqid(self) -> int:
        used = {child.reqid for child in self._children.values()} | {t.reqid for t in self._traps.values()}
        for _attempt in range(REQID_MAX - REQID_MIN):
            self._next_reqid = self._next_reqid + 1 if self._next_reqid < PROBE_REQID - 1 else REQID_MIN + 1
            if self._next_reqid not in used:
                return self._next_reqid
        raise DataplaneError("every reqid of ours is in use")

    @staticmethod
    def _sas(child: KernelChild) -> List[KernelSA]:
        current = [child.outbound] if child.outbound is not None else []
        return current + child.previous_out + list(child.inbound.values())

    @staticmethod
    def _where(child: KernelChild, sa: KernelSA) -> Tuple[str, int, str]:
        """(destination, SPI, source): how the kernel knows the SA's state."""
        if sa.outbound:
            return child.peer[0], sa.spi, child.local
        return child.local, sa.spi, child.peer[0]

    def _state(self, child: KernelChild, sa: KernelSA) -> StateSpec:
        dst, _spi, src = self._where(child, sa)
        encap = None
        if child.encap:
            encap = (self.nat_t_port, child.peer[1]) if sa.outbound else (child.peer[1], self.nat_t_port)
        spec = StateSpec(src, dst, sa.spi, child.reqid, sa.encr_id, sa.encr_key, sa.integ_id, sa.integ_key,
                         esn=sa.esn, encap=encap, if_id=child.if_id)  # fmt: skip
        # a backstop the engine never meets (it deletes at life_time): a dead daemon's SAs end
        if sa.life_time:
            spec.hard_seconds = int(sa.life_time) + LIFETIME_MARGIN
        limits = sa.limits
        if limits is not None:  # the kernel counts and reports the crossing (XFRM_MSG_EXPIRE)
            spec.soft_bytes = limits.soft_bytes or XFRM_INF
            spec.hard_bytes = limits.hard_bytes or XFRM_INF
            spec.soft_packets = limits.soft_packets or XFRM_INF
            spec.hard_packets = limits.hard_packets or XFRM_INF
            if sa.outbound and limits.soft_seq:
                spec.soft_packets = min(spec.soft_packets, limits.soft_seq)
        if sa.outbound and not sa.esn:
            spec.hard_packets = min(spec.hard_packets, SEQ_MAX)  # RFC 4303 §3.3.3: never wrap
        return spec

    def _add_state(self, child: KernelChild, sa: KernelSA, outbound: bool) -> None:
        if sa.outbound != outbound:
            raise DataplaneError("SA %08x is not %s" % (sa.spi, "outbound" if outbound else "inbound"))
        self.xfrm.add_state(self._state(child, sa))
        sa.installed = True
        sa.encr_key = sa.integ_key = b""  # the kernel has them; nothing re-installs an SA

    def _add_routes(self, name: str, remote_ts: Any, peer: str, local: str, route_source: Any) -> List[Any]:
        """Routes to the remote selectors along the path to the peer, with a source inside ours (only
        where this host has such an address: otherwise its own traffic cannot match the policy)."""
        routes = []
        for ts in remote_ts:
            source = _sources(route_source).get(ts.version)
            if source is None:
                continue
            for network in networks_of_range(ts.start, ts.end, ts.version):
                try:
                    self.routes.add(network, source, via=peer, via_source=local)
                except OSError as exc:  # the tunnel still carries the LANs' traffic; say what is missing
                    log.error("%s: the gateway's own traffic to %s is not routed into the tunnel: %s",
                              name, network, exc)  # fmt: skip
                    continue
                routes.append((network, source))
        return routes

    def _remove_routes(self, name: str, routes: List[Any]) -> None:
        for network, source in routes:
            try:
                self.routes.remove(network, source)
            except OSError as exc:
                log.warning("%s: %s", name, exc)

    @staticmethod
    def _policy_specs(child: KernelChild) -> List[PolicySpec]:
        spi = child.outbound.spi if child.outbound is not None else 0
        return policy_specs(child.local_ts, child.remote_ts, child.local, child.peer[0], child.reqid, spi,
                            child.if_id)  # fmt: skip

    def _retire(self, child: KernelChild, sa: KernelSA) -> None:
        """Fold the SA's last counters into the child's totals and delete its state."""
        self.limits.remove(sa)
        where = self._where(child, sa)
        try:
            if not sa.gone:  # else the hard expire brought the last counters
                _take(sa, self.xfrm.counters(*where))
        except OSError:
            pass  # gone already (its hard lifetime), or the kernel did not answer: the last counts stand
        total = child.retired_out if sa.outbound else child.retired_in
        total.bytes += sa.traffic.bytes
        total.packets += sa.traffic.packets
        self._quietly(self.xfrm.delete_state, *where)

    def _remove(self, child: KernelChild) -> None:
        self._children.pop(child.child_id, None)
        self._remove_routes(child.child_id, child.routes)
        child.routes = []
        for spec in child.policies:
            trapped = self._trap_policy(spec)
            if trapped is not None:  # the policy is the trap's again (kernel_traps.py)
                self._quietly(self.xfrm.add_policy, trapped[1], True)
            else:
                self._quietly(self.xfrm.delete_policy, spec.selector, spec.direction)
        child.policies = []
        for sa in self._sas(child):
            self._retire(child, sa)
        child.outbound, child.previous_out = None, []
        child.inbound.clear()

    def _refresh(self, sas: List[KernelSA]) -> None:
        """Read the kernel's counters of these SAs (XFRM_MSG_GETAE each: no keys in the answer)."""
        where = {}
        for child in self._children.values():
            for sa in self._sas(child):
                where[sa] = self._where(child, sa)
        for sa in sas:
            if sa not in where or sa.gone:
                continue
            try:
                counters = self.xfrm.counters(*where[sa])
            except OSError as exc:  # one SA's failure must not stop the poll of the others (or the daemon)
                if missing(exc):
                    self._deleted_by_kernel(sa)
                else:
                    log.warning("cannot read the counters of SA %08x: %s", sa.spi, exc)
                continue
            if counters.packets < sa.traffic.packets:  # a larval state took the SPI of the deleted one
                self._deleted_by_kernel(sa)
            else:
                _take(sa, counters)

    def _deleted_by_kernel(self, sa: KernelSA) -> None:
        """The kernel deleted a state of an installed child (its hard limit) and we missed the expire
        (an overrun event socket, or none): the same as a hard expire."""
        sa.gone = True
        log.warning(
            "SA %08x is gone from the kernel (a hard lifetime whose XFRM_MSG_EXPIRE was lost)", sa.spi
        )
        self.limits.expired(sa, _key(sa), True, "lifetime (the kernel deleted the state)")

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except OSError as exc:
            if not missing(exc):
                log.warning("%s", exc)


def _key(sa: KernelSA) -> int:
    """What the engine knows a Child SA's SAs by: the inbound SPI of the pair."""
    return sa.partner if sa.outbound else sa.spi


def _take(sa: KernelSA, counters: Any) -> None:
    sa.traffic.bytes, sa.traffic.packets, sa.oseq = counters.bytes, counters.packets, counters.oseq


def _what_expired(sa: KernelSA, expire: ExpireInfo) -> str:
    """Which lifetime an expire is about, from the state's counters and the negotiated limits."""
    bytes_limit = packets_limit = seq_limit = 0
    if sa.limits is not None:
        bytes_limit = sa.limits.hard_bytes if expire.hard else sa.limits.soft_bytes
        packets_limit = sa.limits.hard_packets if expire.hard else sa.limits.soft_packets
        seq_limit = sa.limits.soft_seq if sa.outbound and not expire.hard else 0
    if sa.outbound and not sa.esn and expire.hard:
        seq_limit = SEQ_MAX
    for limit, count, what in (
        (bytes_limit, expire.bytes, "bytes"),
        (packets_limit, expire.packets, "packets"),
        (seq_limit, expire.packets, "sequence numbers"),
    ):
        if limit and count >= limit:
            return what
    return "seconds"


def _selector_of(info: Any) -> Selector:
    f = info.fields
    return Selector(info.src, info.dst, f["proto"], f["sport"], f["sport_mask"], f["dport"], f["dport_mask"],
                    f["if_id"])  # fmt: skip
