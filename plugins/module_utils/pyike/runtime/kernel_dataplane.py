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
template's SPI, xfrm_state_find()) and deletes the old outbound state; the old inbound state goes
when the daemon removes it after the DELETE exchange.

Counters come from the kernel (XFRM_MSG_GETSA: bytes, packets, add and use time). Byte and packet
lifetimes are polled from those counters on the daemon's slow timer (:class:`PolledVolumeWatch`).
Everything with our reqids is flushed at start (a crash leaves states behind), on close, and what no
installed child owns after a reload.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..esp.counters import Traffic
from .children import Address, DataplaneError, Endpoint, _selectors
from .lifetimes import VolumeWatch
from .routes import networks_of_range
from .udp import NON_ESP_MARKER, UdpEndpoint
from .xfrm import PROBE_REQID, REQID_MAX, REQID_MIN, PolicySpec, Selector, StateSpec, Xfrm, XfrmError

log = logging.getLogger("pyike.kernel")

IkeHandler = Callable[[bytes, Address, Address], None]


class KernelSA:
    """One direction of a Child SA as the kernel backend keeps it: SPI, transforms and (in memory
    only, for the kernel) keys; ``traffic`` is refreshed from the kernel's counters."""

    __slots__ = ("encr_id", "encr_key", "esn", "integ_id", "integ_key", "spi", "traffic")

    def __init__(self, spi: int, encr_id: int, encr_key: bytes, integ_id: int, integ_key: bytes, esn: bool):
        self.spi = spi
        self.encr_id = encr_id
        self.encr_key = bytes(encr_key)
        self.integ_id = integ_id
        self.integ_key = bytes(integ_key)
        self.esn = esn
        self.traffic = Traffic()

    def __repr__(self) -> str:
        return "<KernelSA %08x>" % self.spi


def kernel_sa_pair(event: Any) -> Tuple[KernelSA, KernelSA]:
    """(outbound, inbound) of an ``ike.events.ChildSaUp``."""
    integ = event.integ_id or 0
    return (
        KernelSA(event.spi_out, event.encr_id, event.encr_key_out, integ, event.integ_key_out, event.esn),
        KernelSA(event.spi_in, event.encr_id, event.encr_key_in, integ, event.integ_key_in, event.esn),
    )


class KernelChild:
    __slots__ = ("child_id", "encap", "inbound", "local", "local_ts", "outbound", "peer", "policies", "remote_ts",
                 "reqid", "retired_in", "retired_out")  # fmt: skip

    def __init__(
        self, child_id: str, reqid: int, local: str, peer: Address, encap: bool, local_ts, remote_ts
    ):
        self.child_id = child_id
        self.reqid = reqid
        self.local = local
        self.peer = peer
        self.encap = encap
        self.local_ts = local_ts
        self.remote_ts = remote_ts
        self.outbound: Optional[KernelSA] = None
        self.inbound: Dict[int, KernelSA] = {}
        self.policies: List[PolicySpec] = []
        self.retired_in = Traffic()
        self.retired_out = Traffic()


class PolledVolumeWatch(VolumeWatch):
    """Byte and packet lifetimes of kernel SAs: the counters are read from the kernel before each check
    (the daemon checks every few seconds); the kernel refuses to wrap sequence numbers by itself."""

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


class KernelDataplane:
    """Child SAs in the kernel's XFRM tables; IKE on the daemon's UDP sockets (see the module docstring)."""

    kernel = True

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        nat_t_port: int,
        ike_handler: Optional[IkeHandler] = None,
        xfrm: Optional[Xfrm] = None,
    ):
        self.endpoints = list(endpoints)
        self.nat_t_port = nat_t_port
        self.ike_handler = ike_handler
        self.xfrm = xfrm or Xfrm()
        self.routes = None  # the kernel routes by its own tables; policies select what is protected
        self._children: Dict[str, KernelChild] = {}
        self._next_reqid = REQID_MIN
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.io = {"ike_in": 0, "keepalives_in": 0, "invalid_datagram": 0, "ike_unhandled": 0}
        self.limits = PolledVolumeWatch(self._refresh)

    def __repr__(self) -> str:
        return "<KernelDataplane children=%d>" % len(self._children)

    # --- lifecycle ---------------------------------------------------------------------------
    def flush(self) -> Tuple[int, int]:
        """Remove every state and policy with our reqids (what a crashed daemon left behind)."""
        return self.xfrm.flush_ours()

    def start(self, loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
        if self._loop is not None:
            return
        loop = loop or asyncio.get_running_loop()
        for endpoint in self.endpoints:
            loop.add_reader(endpoint.fileno(), self._on_socket, endpoint)
        self._loop = loop

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            for endpoint in self.endpoints:
                loop.remove_reader(endpoint.fileno())

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
            self.xfrm.close()

    def reconcile(self) -> Tuple[int, int]:
        """Delete our states and policies that no installed child owns (after a reload)."""
        owned_states = {(c.reqid, sa.spi) for c in self._children.values() for sa in self._sas(c)}
        owned = {c.reqid for c in self._children.values()}
        states = policies = 0
        for info in self.xfrm.policies():
            if info.reqid is not None and REQID_MIN <= info.reqid <= REQID_MAX and info.reqid not in owned:
                self._quietly(self.xfrm.delete_policy, _selector_of(info), info.direction)
                policies += 1
        for state in self.xfrm.states():
            if REQID_MIN <= state.reqid <= REQID_MAX and (state.reqid, state.spi) not in owned_states:
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
    ) -> None:
        """States (inbound first) and policies of a Child SA; on failure nothing of it stays installed."""
        if child_id in self._children:
            raise DataplaneError("child %r is already installed; remove it or rekey it" % child_id)
        if not local:
            raise DataplaneError("child %r: the kernel needs our address of the IKE SA" % child_id)
        child = KernelChild(child_id, self._reqid(), local, (peer[0], int(peer[1])), encap,
                            _selectors(local_ts), _selectors(remote_ts))  # fmt: skip
        self._children[child_id] = child
        try:
            if inbound_sa is not None:
                self.add_inbound(child_id, inbound_sa)
            if outbound_sa is not None:
                self._add_state(child, outbound_sa, outbound=True)
                child.outbound = outbound_sa
            for spec in self._policy_specs(child):
                self.xfrm.add_policy(spec)
                child.policies.append(spec)
        except (OSError, ValueError):
            self._remove(child, quiet=True)
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
        """Send through ``outbound_sa`` from now on (rekey, step 2): install it, point the out policies'
        templates at its SPI, delete the old outbound state. Returns the old SA."""
        child = self._child(child_id)
        old = child.outbound
        if old is outbound_sa:
            return old
        if peer is not None and (peer[0], int(peer[1])) != child.peer:
            log.warning("%s: the peer moved to %s:%d; the kernel dataplane keeps %s:%d (MIGRATE is not "
                        "implemented)", child_id, peer[0], peer[1], child.peer[0], child.peer[1])  # fmt: skip
        self._add_state(child, outbound_sa, outbound=True)
        child.outbound = outbound_sa
        for spec in child.policies:
            if spec.direction == "out":
                spec.spi = outbound_sa.spi
                self.xfrm.add_policy(spec, update=True)
        if old is not None:
            self._retire(child, old, outbound=True)
        return old

    def remove_inbound(self, child_id: str, spi: int) -> Optional[KernelSA]:
        """Stop accepting packets of an old inbound SA (rekey, step 3)."""
        child = self._child(child_id)
        sa = child.inbound.pop(spi, None)
        if sa is not None:
            self._retire(child, sa, outbound=False)
        return sa

    def watch(self, sa: KernelSA, key: int, limits: Any) -> None:
        self.limits.add(sa, key, limits)

    def outbound_of(self, child_id: str) -> Optional[KernelSA]:
        return self._child(child_id).outbound

    def update_peer(self, child_id: str, peer: Address) -> None:
        child = self._child(child_id)
        if (peer[0], int(peer[1])) != child.peer:
            log.warning("%s: the peer moved to %s:%d; the kernel dataplane keeps %s:%d (MIGRATE is not "
                        "implemented)", child_id, peer[0], peer[1], child.peer[0], child.peer[1])  # fmt: skip

    @property
    def children(self) -> Tuple[str, ...]:
        return tuple(self._children)

    def child_stats(self, child_id: str) -> Dict[str, Any]:
        child = self._child(child_id)
        self._refresh(list(self._sas(child)))
        out = child.outbound
        sas_out = []
        if out is not None:
            sas_out.append({"spi": out.spi, "bytes": out.traffic.bytes, "packets": out.traffic.packets})
        sas_in = [{"spi": sa.spi, "bytes": sa.traffic.bytes, "packets": sa.traffic.packets}
                  for sa in child.inbound.values()]  # fmt: skip
        return {
            "peer": "%s:%d" % child.peer if child.encap else child.peer[0],
            "encap": child.encap,
            "reqid": child.reqid,
            "local_ts": [repr(ts) for ts in child.local_ts],
            "remote_ts": [repr(ts) for ts in child.remote_ts],
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
            except XfrmError as exc:
                children[child_id] = {"error": str(exc)}
        return {"kernel": True, "children": children, "io": dict(self.io), "endpoints": endpoints,
                "drops": {"invalid_datagram": self.io["invalid_datagram"]}}  # fmt: skip

    # --- IKE messages ------------------------------------------------------------------------
    def send_ike(self, data: bytes, local: Address, peer: Address) -> bool:
        return self._udp_for(local, peer).send_ike(data, peer, local[0])

    def send_keepalive(self, local: Address, peer: Address) -> bool:
        return self._udp_for(local, peer).send_keepalive(peer, local[0])

    def _udp_for(self, local: Address, peer: Address) -> UdpEndpoint:
        family = socket.AF_INET6 if ":" in peer[0] else socket.AF_INET
        for endpoint in self.endpoints:
            if endpoint.local[1] == local[1] and family in endpoint.families:
                if endpoint.local[0] == local[0] or endpoint.wildcard:
                    return endpoint
        raise DataplaneError("no UDP socket on %s:%d to send IKE from" % local)

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

    # --- internals ---------------------------------------------------------------------------
    def _child(self, child_id: str) -> KernelChild:
        child = self._children.get(child_id)
        if child is None:
            raise DataplaneError("no child %r is installed" % child_id)
        return child

    def _reqid(self) -> int:
        used = {child.reqid for child in self._children.values()}
        for _attempt in range(REQID_MAX - REQID_MIN):
            self._next_reqid = self._next_reqid + 1 if self._next_reqid < PROBE_REQID - 1 else REQID_MIN + 1
            if self._next_reqid not in used:
                return self._next_reqid
        raise DataplaneError("every reqid of ours is in use")

    @staticmethod
    def _sas(child: KernelChild) -> List[KernelSA]:
        return ([child.outbound] if child.outbound is not None else []) + list(child.inbound.values())

    def _state(self, child: KernelChild, sa: KernelSA, outbound: bool) -> StateSpec:
        src, dst = (child.local, child.peer[0]) if outbound else (child.peer[0], child.local)
        encap = None
        if child.encap:
            encap = (self.nat_t_port, child.peer[1]) if outbound else (child.peer[1], self.nat_t_port)
        return StateSpec(src, dst, sa.spi, child.reqid, sa.encr_id, sa.encr_key, sa.integ_id, sa.integ_key,
                         esn=sa.esn, encap=encap)  # fmt: skip

    def _add_state(self, child: KernelChild, sa: KernelSA, outbound: bool) -> None:
        self.xfrm.add_state(self._state(child, sa, outbound))

    def _policy_specs(self, child: KernelChild) -> List[PolicySpec]:
        specs = []
        spi = child.outbound.spi if child.outbound is not None else 0
        for local in child.local_ts:
            for remote in child.remote_ts:
                if local.version != remote.version:
                    continue
                for out_sel in _pair_selectors(local, remote):
                    specs.append(PolicySpec(out_sel, "out", child.local, child.peer[0], child.reqid, spi=spi))
                    in_sel = out_sel.reversed()
                    for direction in ("in", "fwd"):
                        specs.append(PolicySpec(in_sel, direction, child.peer[0], child.local, child.reqid))
        return specs

    def _retire(self, child: KernelChild, sa: KernelSA, outbound: bool) -> None:
        """Fold the SA's last counters into the child's totals and delete its state."""
        self.limits.remove(sa)
        src, dst = (child.local, child.peer[0]) if outbound else (child.peer[0], child.local)
        try:
            info = self.xfrm.get_state(dst, sa.spi, src)
            sa.traffic.bytes, sa.traffic.packets = info.bytes, info.packets
        except XfrmError:
            pass
        total = child.retired_out if outbound else child.retired_in
        total.bytes += sa.traffic.bytes
        total.packets += sa.traffic.packets
        self._quietly(self.xfrm.delete_state, dst, sa.spi, src)

    def _remove(self, child: KernelChild, quiet: bool = False) -> None:
        self._children.pop(child.child_id, None)
        for spec in child.policies:
            self._quietly(self.xfrm.delete_policy, spec.selector, spec.direction)
        child.policies = []
        if child.outbound is not None:
            self._retire(child, child.outbound, outbound=True)
        for spi in list(child.inbound):
            self._retire(child, child.inbound.pop(spi), outbound=False)

    def _refresh(self, sas: List[KernelSA]) -> None:
        """Read the kernel's counters of these SAs (XFRM_MSG_GETSA each)."""
        where = {}
        for child in self._children.values():
            if child.outbound is not None:
                where[child.outbound] = (child.peer[0], child.local)
            for sa in child.inbound.values():
                where[sa] = (child.local, child.peer[0])
        for sa in sas:
            if sa not in where:
                continue
            dst, src = where[sa]
            try:
                info = self.xfrm.get_state(dst, sa.spi, src)
            except XfrmError as exc:
                log.warning("cannot read the counters of SA %08x: %s", sa.spi, exc)
                continue
            sa.traffic.bytes, sa.traffic.packets = info.bytes, info.packets

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except XfrmError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                log.warning("%s", exc)


def _pair_selectors(local: Any, remote: Any) -> List[Selector]:
    """The XFRM selectors (prefixes, protocol, ports) of one pair of traffic selectors, local -> remote."""
    selectors = []
    proto = max(local.protocol, remote.protocol)
    sport, sport_mask = _ports(local.start_port, local.end_port)
    dport, dport_mask = _ports(remote.start_port, remote.end_port)
    for src in networks_of_range(local.start, local.end, local.version):
        for dst in networks_of_range(remote.start, remote.end, remote.version):
            selectors.append(Selector(src, dst, proto, sport, sport_mask, dport, dport_mask))
    return selectors


def _ports(start: int, end: int) -> Tuple[int, int]:
    """(port, mask) of a port range: one port exactly, any port as 0/0, other ranges widened to their
    common leading bits (strongSwan ts2ports(); the kernel selector has no range)."""
    if start == end:
        return start, 0xFFFF
    mask = 0
    for bit in range(15, -1, -1):
        if (start >> bit) & 1 != (end >> bit) & 1:
            return start & mask, mask
        mask |= 1 << bit
    return start & mask, mask


def _selector_of(info: Any) -> Selector:
    f = info.fields
    return Selector(info.src, info.dst, f["proto"], f["sport"], f["sport_mask"], f["dport"], f["dport_mask"])
