"""Traps: Child SAs that come up when traffic wants them (start_action, close_action and dpd_action trap).

A trap is what a configured child's selectors ask of the dataplane before any SA exists: routes for its
remote selectors into the TUN device (none for a route-based connection, whose own TUN device the operator
routes into) and a policy without an SA (RFC 4301 §4.4.1: traffic to PROTECT).
The first packet that matches it is an "acquire" (§5.1: no SA for a PROTECT entry, so key management
is invoked): the daemon initiates the child, and the Child SA's own policy, installed next to the trap,
takes the traffic from then on (esp/spd.py: an SA policy wins over a trap of the same selectors, a more
specific trap wins over a wider SA). The trap stays when the Child SA goes, so the next packet brings it
back; a reload or (for traps close_action and dpd_action installed) a terminate removes it.

Bounded: one acquire in flight per trap; after a failed one (a Failure of its connection, or no Child SA
within `acquire_timeout`) the next waits BACKOFF_FIRST seconds, doubling up to BACKOFF_MOST. Packets
that meet a trap while its acquire is under way are held, HOLD_PACKETS at most and for HOLD_SECONDS,
and sent through the new Child SA once it is installed: the first packet of a flow (a TCP SYN, a DNS
query, a ping) then need not wait for its sender to retransmit it, a second or more later. Every other
packet that meets a trap is dropped and counted.

With the kernel dataplane the trap is a set of XFRM policies without a state and the kernel reports the
acquire (kernel_traps.py); it drops the packets itself, so nothing is held, and ``packets`` counts its
acquire messages (one per template and per net.core.xfrm_acq_expires, 30 s).
"""

from __future__ import annotations

import collections
import functools
import ipaddress
import logging
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

from ..esp import Policy
from ..esp.inner import flow_key
from ..selectors import TrafficSelector, describe
from .routes import networks_of_range

log = logging.getLogger("pyike.traps")

HOLD_PACKETS = 8
HOLD_SECONDS = 3.0
BACKOFF_FIRST = 1.0
BACKOFF_MOST = 30.0
ALREADY_UP_PAUSE = 1.0  # a packet the Child SA's narrowed selectors leave to the trap: look again then

# Why a trap exists; a start_action trap is configuration and outlives a terminate, the others do not.
ORIGINS = ("start_action", "close_action", "dpd_action")

Key = Tuple[str, str]
Acquire = Callable[[str, str], bool]  # (conn, child) -> False when the child is up already


class Trap:
    """One trap: its selectors, dataplane policy and routes, and the state of its acquire."""

    def __init__(self, conn: str, child: str, origin: str, local_ts, remote_ts) -> None:
        self.conn, self.child, self.origin = conn, child, origin
        self.local_ts: Tuple[TrafficSelector, ...] = tuple(local_ts)
        self.remote_ts: Tuple[TrafficSelector, ...] = tuple(remote_ts)
        self.policy: Optional[Policy] = None
        self.spd: Any = None  # the SPD the policy is in: the main TUN's or a route-based connection's
        self.if_id = 0  # the route-based connection's interface it is bound to; 0: none
        self.routes: List[Tuple[str, Optional[str]]] = []
        self.acquiring_since: Optional[float] = None
        self.not_before = 0.0  # no acquire before this time (back-off)
        self.failures = 0  # in a row
        self.held: Deque[Tuple[float, bytes]] = collections.deque()
        self.counters = dict.fromkeys(
            ("acquires", "failed_acquires", "packets", "held", "sent_held", "dropped"), 0
        )
        self.last_failure = ""

    @property
    def name(self) -> str:
        return "%s/%s" % (self.conn, self.child)

    def state(self, now: float) -> str:
        if self.acquiring_since is not None:
            return "acquiring"
        return "backoff" if now < self.not_before else "idle"


class Traps:
    """The daemon's traps over one dataplane (its SPD and route manager)."""

    def __init__(self, dataplane: Any, acquire: Acquire, defer: Callable[..., Any], acquire_timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.dataplane = dataplane
        self.acquire = acquire  # starts the initiation; called outside the packet path (`defer`)
        self.defer = defer  # loop.call_soon
        self.acquire_timeout = acquire_timeout
        self.clock = clock
        self.traps: Dict[Key, Trap] = {}
        self.by_policy: Dict[str, Trap] = {}
        self.kernel = getattr(dataplane, "kernel", False)  # policies and acquires in the kernel

    # --- installing and removing ---------------------------------------------------------------------
    def install(self, conn: str, child: str, origin: str, local_ts: Sequence[TrafficSelector],
                remote_ts: Sequence[TrafficSelector], route_source: Optional[str] = None,
                local: Optional[str] = None, peer: Optional[str] = None, if_id: int = 0) -> bool:  # fmt: skip
        """Install a trap (False: there is one already; a start_action origin wins over the others).
        Raises OSError when its routes (or kernel policies) cannot be set (nothing stays installed then).
        ``local`` and ``peer``: the IKE addresses, which the kernel's policy templates name; ``if_id``: the
        XFRM interface of a route-based connection."""
        existing = self.traps.get((conn, child))
        if existing is not None:
            if origin == "start_action":
                existing.origin = origin
            return False
        trap = Trap(conn, child, origin, local_ts, remote_ts)
        trap.if_id = if_id
        if self.kernel:
            on_acquire = functools.partial(self._on_acquire, trap)
            self.dataplane.install_trap(
                trap.name, local_ts, remote_ts, local, peer, on_acquire, route_source, if_id
            )
            self._installed(trap)
            return True
        trap.spd = self.dataplane.spd_for(if_id)  # raises DataplaneError (a ValueError) for a missing one
        routes = self.dataplane.routes if not if_id else None  # a route-based connection: the operator routes
        try:
            for ts in trap.remote_ts if routes is not None else ():
                for network in networks_of_range(ts.start, ts.end, ts.version):
                    routes.add(network, route_source if _same_version(route_source, ts) else None)
                    trap.routes.append((network, route_source if _same_version(route_source, ts) else None))
        except OSError:
            self._remove_routes(trap)
            raise
        trap.policy = Policy("trap:" + trap.name, trap.local_ts, trap.remote_ts, acquire=self._on_packet)
        trap.spd.add(trap.policy)
        self.by_policy[trap.policy.name] = trap
        self._installed(trap)
        return True

    def _installed(self, trap: Trap) -> None:
        self.traps[(trap.conn, trap.child)] = trap
        log.info("%s: trap installed (%s): %s === %s", trap.name, trap.origin,
                 ", ".join(describe(trap.local_ts)), ", ".join(describe(trap.remote_ts)))  # fmt: skip

    def remove(self, conn: str, child: str, why: str) -> bool:
        trap = self.traps.pop((conn, child), None)
        if trap is None:
            return False
        if self.kernel:
            self.dataplane.remove_trap(trap.name)
        if trap.policy is not None:
            trap.spd.remove(trap.policy.name)
            self.by_policy.pop(trap.policy.name, None)
        self._remove_routes(trap)
        trap.counters["dropped"] += len(trap.held)
        trap.held.clear()
        log.info("%s: trap removed: %s", trap.name, why)
        return True

    def remove_all(self, why: str, keep: Callable[[Trap], bool] = lambda trap: False) -> None:
        for trap in list(self.traps.values()):
            if not keep(trap):
                self.remove(trap.conn, trap.child, why)

    def _remove_routes(self, trap: Trap) -> None:
        for network, source in trap.routes:
            try:
                self.dataplane.routes.remove(network, source)
            except OSError as exc:
                log.warning("%s: cannot remove the trap's route %s: %s", trap.name, network, exc)
        trap.routes = []

    # --- the packet path (called by the SPD for a packet that matches a trap) --------------------------
    def _on_packet(self, policy: Policy, packet) -> None:
        trap = self.by_policy.get(policy.name)
        if trap is None:
            return
        if self._acquire_unless_busy(trap, lambda: _flow(packet)) or trap.acquiring_since is not None:
            self._hold(trap, packet, self.clock())
        else:
            trap.counters["dropped"] += 1  # back-off after a failed acquire

    def _on_acquire(self, trap: Trap, flow: str) -> None:
        """The kernel's acquire for the trap (kernel_traps.py): it dropped the packet and asks no more
        for this template until its larval state expires (30 s); nothing is held here."""
        if self.traps.get((trap.conn, trap.child)) is trap:
            self._acquire_unless_busy(trap, lambda: flow)

    def _acquire_unless_busy(self, trap: Trap, flow: Callable[[], str]) -> bool:
        """Count a packet that met the trap; start an acquire unless one is under way or the back-off
        after a failed one holds. True when it started one."""
        trap.counters["packets"] += 1
        now = self.clock()
        if trap.acquiring_since is not None or now < trap.not_before:
            return False
        trap.acquiring_since = now
        trap.counters["acquires"] += 1
        log.info("%s: acquire: %s matches the trap, initiating (RFC 4301 §5.1)", trap.name, flow())
        self.defer(self._start, trap)
        return True

    def _hold(self, trap: Trap, packet, now: float) -> None:
        if len(trap.held) >= HOLD_PACKETS:
            trap.counters["dropped"] += 1
            return
        trap.held.append((now, bytes(packet)))  # a view of a reused buffer: copied
        trap.counters["held"] += 1

    def _start(self, trap: Trap) -> None:
        if self.traps.get((trap.conn, trap.child)) is not trap or trap.acquiring_since is None:
            return  # removed, or already done, meanwhile
        try:
            started = self.acquire(trap.conn, trap.child)
        except Exception as exc:  # a bug or a refusal: the acquire fails, the daemon goes on
            self._failed(trap, "cannot initiate: %s" % exc)
            return
        if not started:  # the Child SA is up: the packets are outside its (narrowed) selectors
            trap.acquiring_since = None
            trap.not_before = self.clock() + ALREADY_UP_PAUSE
            trap.counters["dropped"] += len(trap.held)
            trap.held.clear()

    # --- what the daemon reports -----------------------------------------------------------------------
    def child_up(self, conn: str, child: str) -> None:
        """The Child SA of a trap is installed: send what was held through it."""
        trap = self.traps.get((conn, child))
        if trap is None:
            return
        trap.acquiring_since = None
        trap.failures, trap.not_before = 0, 0.0
        now = self.clock()
        held = [packet for at, packet in trap.held if now - at <= HOLD_SECONDS]
        trap.counters["dropped"] += len(trap.held) - len(held)
        trap.held.clear()
        if held:
            trap.counters["sent_held"] += len(held)
            self.dataplane.send_inner(held, trap.spd)

    def conn_failed(self, conn: str, reason: str) -> None:
        """A negotiation of `conn` failed: so did every acquire of it under way."""
        for trap in list(self.traps.values()):
            if trap.conn == conn and trap.acquiring_since is not None:
                self._failed(trap, reason)

    def _failed(self, trap: Trap, reason: str) -> None:
        trap.acquiring_since = None
        trap.failures += 1
        trap.counters["failed_acquires"] += 1
        delay = min(BACKOFF_FIRST * 2 ** (trap.failures - 1), BACKOFF_MOST)
        trap.not_before = self.clock() + delay
        trap.counters["dropped"] += len(trap.held)
        trap.held.clear()
        trap.last_failure = reason
        log.warning("%s: acquire failed: %s; the next one waits %.0fs", trap.name, reason, delay)

    def next_deadline(self) -> Optional[float]:
        times = [t.acquiring_since + self.acquire_timeout for t in self.traps.values() if t.acquiring_since]
        return min(times) if times else None

    def expire(self, now: float) -> None:
        """Acquires that got no Child SA within `acquire_timeout` count as failed."""
        for trap in list(self.traps.values()):
            if trap.acquiring_since is not None and now >= trap.acquiring_since + self.acquire_timeout:
                self._failed(trap, "no Child SA within %.0fs" % self.acquire_timeout)

    # --- listings ----------------------------------------------------------------------------------------
    def describe(self) -> List[Dict[str, Any]]:
        now = self.clock()
        return [
            dict(
                trap.counters,
                conn=trap.conn,
                child=trap.child,
                origin=trap.origin,
                state=trap.state(now),
                local_ts=[str(ts) for ts in trap.local_ts],
                remote_ts=[str(ts) for ts in trap.remote_ts],
                held_now=len(trap.held),
                backoff_seconds=round(max(0.0, trap.not_before - now), 1),
                last_failure=trap.last_failure,
            )
            for trap in sorted(self.traps.values(), key=lambda trap: (trap.conn, trap.child))
        ]


def _same_version(address: Optional[str], ts: TrafficSelector) -> bool:
    return address is not None and ipaddress.ip_address(address).version == ts.version


def _flow(packet) -> str:
    key = flow_key(packet)
    if key is None:
        return "a packet"
    return "%s -> %s" % (ipaddress.ip_address(key[1]), ipaddress.ip_address(key[2]))
