"""What the daemon does for a connection beyond the engine's exchanges: start_action (start, trap), the
traps close_action and dpd_action ask for, acquires, and resolving peers given as DNS names.

The engine decides when (events.ResolvePeer, InstallTrap, PeerUnmatched; restarts.py); this module does
the waiting and the dataplane side, on the daemon's event loop: look-ups run on resolver.py's threads,
traps live in traps.py.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import Any, Callable, Dict, List, Optional, Set

from ..ike.events import Failure, InstallTrap, PeerUnmatched, ResolvePeer
from ..ike.sa import ESTABLISHED
from ..selectors import address_ranges
from .installer import route_if_id
from .resolver import RESOLVE_TIMEOUT, PeerNames, ResolveError, Resolver
from .traps import Traps

log = logging.getLogger("pyike.daemon")

ACQUIRE_SLACK = 5.0  # seconds an acquire may take beyond resolution and the retransmission schedule


class ConnectionActions:
    """Start actions, traps and peer names for one daemon (`daemon` gives engine, dataplane and config)."""

    def __init__(self, daemon: Any, route_source: Callable[[List[Any]], Optional[str]],
                 resolver: Optional[Resolver] = None) -> None:  # fmt: skip
        self.daemon = daemon
        self.engine = daemon.engine
        self.route_source = route_source  # an address of ours inside some selectors (route preference)
        self.resolver = resolver or Resolver()
        self.names = PeerNames()
        self.traps: Optional[Traps] = None
        self.tasks: Set[asyncio.Future] = set()  # look-ups under way (kept referenced, cancelled at close)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Once the dataplane runs: traps need its SPD and routes (or its kernel policies)."""
        timeout = self.engine.retransmit.span() + self.resolver.timeout + ACQUIRE_SLACK
        self.traps = Traps(self.daemon.dataplane, self._acquire, loop.call_soon, timeout)

    def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.traps is not None:
            self.traps.remove_all("the daemon stops")
        self.resolver.close()

    # --- start actions (at start and after a reload) ---------------------------------------------------
    def apply_start_actions(self) -> None:
        """start: initiate; trap: install the trap. Traps a reload no longer wants go; every peer name is
        resolved once, so that a responder knows its peers' addresses."""
        now = time.monotonic()
        self._prune_traps()
        for name, policy in self.engine.policies.items():
            for child in policy.children.values():
                if child.start_action == "trap":
                    self.install_trap(name, child.name, "start_action")
                elif child.start_action == "start":
                    try:
                        self.engine.initiate(name, child.name, now)
                    except (KeyError, ValueError) as exc:
                        log.error("cannot start %s/%s: %s", name, child.name, exc)
            if policy.remote_host and self.names.refresh_due(name, now):
                self._spawn(self._look_up(name, policy.remote_host, initiate=False))

    def _prune_traps(self) -> None:
        """Remove traps whose connection or child is gone, whose selectors or interface changed, or whose
        reason no longer holds (start_action, close_action or dpd_action is not trap any more)."""
        if self.traps is None:
            return
        for trap in list(self.traps.traps.values()):
            policy = self.engine.policies.get(trap.conn)
            child = policy.children.get(trap.child) if policy is not None else None
            wanted = self._trap_wanted(trap.conn, trap.child, trap.origin)
            same = (
                child is not None
                and (
                    tuple(address_ranges(child.local_ts)),
                    tuple(address_ranges(child.remote_ts)),
                )
                == (trap.local_ts, trap.remote_ts)
                and route_if_id(self.daemon.config, trap.conn) == trap.if_id
            )
            if not (wanted and same):
                self.traps.remove(trap.conn, trap.child, "the configuration changed")

    def _trap_wanted(self, conn: str, child_name: str, origin: str) -> bool:
        """Whether the configuration still asks for a trap of this origin."""
        policy = self.engine.policies.get(conn)
        child = policy.children.get(child_name) if policy is not None else None
        if child is None:
            return False
        return {
            "start_action": child.start_action == "trap",
            "close_action": child.close_action == "trap",
            "dpd_action": policy.dpd_action == "trap",
        }[origin]

    def terminated(self, conn: str) -> None:
        """Our terminate: traps that close_action or dpd_action installed go (start_action's stay)."""
        if self.traps is not None:
            self.traps.remove_all(
                "terminated by operator", keep=lambda trap: trap.conn != conn or trap.origin == "start_action"
            )

    # --- engine events -----------------------------------------------------------------------------------
    def act_on(self, event: object) -> bool:
        """Handle the events of this module; False for any other event."""
        if isinstance(event, ResolvePeer):
            if self.names.want(event.conn, event.child):
                self._spawn(self._look_up(event.conn, event.host, initiate=True))
        elif isinstance(event, InstallTrap):
            log.info("%s/%s: %s; %s trap", event.conn, event.child, event.reason, event.origin)
            self.install_trap(event.conn, event.child, event.origin)
        elif isinstance(event, PeerUnmatched):
            now = time.monotonic()
            for name, policy in self.engine.policies.items():
                if policy.remote_host and policy.local_address == event.local[0]:
                    if self.names.refresh_due(name, now):
                        self._spawn(self._look_up(name, policy.remote_host, initiate=False))
        else:
            return False
        return True

    def failed(self, failure: Failure) -> None:
        if self.traps is not None:
            self.traps.conn_failed(failure.conn, "%s failed: %s" % (failure.what, failure.reason))

    def child_up(self, conn: str, child: str) -> None:
        if self.traps is not None:
            self.traps.child_up(conn, child)

    # --- traps -------------------------------------------------------------------------------------------
    def install_trap(self, conn: str, child: str, origin: str) -> None:
        policy = self.engine.policies.get(conn)
        config = policy.children.get(child) if policy is not None else None
        if self.traps is None or config is None:
            return
        local_ts, remote_ts = address_ranges(config.local_ts), address_ranges(config.remote_ts)
        # the kernel's policy templates name the IKE addresses (a peer's DNS name: as last resolved)
        peer = policy.remote_address or next(iter(self.engine.peer_addresses.get(conn, ())), None)
        if peer is None and policy.remote_host and self.traps.kernel and origin == "start_action":
            log.info("%s/%s: the %s trap waits for %s to resolve", conn, child, origin, policy.remote_host)
            return  # _look_up installs it
        try:
            self.traps.install(conn, child, origin, local_ts, remote_ts, self.route_source(local_ts),
                               local=policy.local_address, peer=peer,
                               if_id=route_if_id(self.daemon.config, conn))  # fmt: skip
        except (OSError, ValueError) as exc:
            log.error("%s/%s: cannot install the trap: %s", conn, child, exc)
            self.daemon._failed(Failure(conn, "install the trap of %s" % child, str(exc)))

    def _acquire(self, conn: str, child: str) -> bool:
        """A packet met the trap of `conn`/`child`: initiate it (False: it is up already)."""
        for sa in self.engine.sas.values():
            if (
                sa.policy.name == conn
                and sa.state == ESTABLISHED
                and any(c.name == child for c in sa.children)
            ):
                return False
        self.engine.initiate(conn, child, time.monotonic())
        self.daemon._flush()
        return True

    # --- peers given as DNS names --------------------------------------------------------------------------
    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _look_up(self, conn: str, host: str, initiate: bool) -> None:
        """Resolve `host` for `conn`; then initiate the children waiting for it (`initiate`) or only note
        the addresses (a responder's refresh)."""
        policy = self.engine.policies.get(conn)
        local = ipaddress.ip_address(policy.local_address)
        try:
            addresses: List[str] = await self.resolver.resolve(host, local.version, local.is_loopback)
            error = ""
        except ResolveError as exc:
            addresses, error = [], str(exc)
        except Exception as exc:  # a bug must cost this look-up only
            addresses, error = [], "internal error: %s: %s" % (type(exc).__name__, exc)
            log.error("%s: looking up %s failed", conn, host, exc_info=True)
        now = time.monotonic()
        children = self.names.take(conn) if initiate else set()
        policy = self.engine.policies.get(conn)
        if policy is None or policy.remote_host != host:
            return  # a reload removed or changed the connection meanwhile
        if error:
            if initiate:
                self.engine.resolve_failed(conn, children, host, error, now)
            else:
                log.warning("%s: cannot resolve the peer's name %s: %s", conn, host, error)
            self.daemon._flush()
            return
        before = self.engine.peer_addresses.get(conn)
        self.engine.set_peer_addresses(conn, tuple(addresses))
        if not before and getattr(self.daemon.dataplane, "kernel", False):
            # a kernel trap's templates name the peer's address: the start_action traps can go in now
            for child in policy.children.values():
                if child.start_action == "trap":
                    self.install_trap(conn, child.name, "start_action")
        if before != tuple(addresses):
            log.info("%s: %s resolves to %s%s", conn, host, ", ".join(addresses),
                     " (was %s)" % ", ".join(before) if before else "")  # fmt: skip
        for child in sorted(children, key=lambda name: name or ""):
            try:
                self.engine.initiate(conn, child, now, remote_ip=addresses[0])
            except (KeyError, ValueError) as exc:  # the child went with a reload
                log.warning("%s: cannot initiate %s: %s", conn, child or "", exc)
        self.daemon._flush()

    def describe_peer(self, conn: str) -> Dict[str, Any]:
        policy = self.engine.policies[conn]
        return {
            "remote_host": policy.remote_host,
            "peer_addresses": list(self.engine.peer_addresses.get(conn, ())),
            "resolve_timeout": RESOLVE_TIMEOUT if policy.remote_host else None,
        }
