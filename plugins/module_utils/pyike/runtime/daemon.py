"""The daemon: configuration, the IKE engine, the ESP dataplane and the control socket in one loop.

This is the only place where the sans-I/O engine meets the clock and the sockets: datagrams from
the dataplane go to `Engine.receive`, the engine's events become datagrams, installed Child SAs
and log lines, and a timer task calls `Engine.tick` at the engine's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..config.errors import ConfigError
from ..config.load import load_config
from ..crypto.certs import as_utc, not_valid_after, not_valid_before, subject_text
from ..crypto.features import is_before_42
from ..esp import OutboundSA
from ..ike.engine import Engine, RetransmitPolicy
from ..ike.events import (
    ChildSaDown,
    ChildSaOutbound,
    ChildSaUp,
    Failure,
    IkeSaDown,
    IkeSaUp,
    SendDatagram,
    SendKeepalive,
)
from ..ike.impair import Impair
from ..ike.policy import IkePolicy, policy_from_config
from .actions import ConnectionActions
from .choice import AUTO, KERNEL, USERSPACE, DataplaneChoice, DataplaneUnavailable, choose_dataplane
from .commands import DEFAULT_INITIATE_WAIT, MAX_INITIATE_WAIT, Commands
from .control import ControlError, ControlServer
from .dataplane import Dataplane
from .errors import describe_error
from .installer import INBOUND_LINGER, ChildSaInstaller, _local_address_in
from .local_addresses import LocalAddresses
from .netlink import Netlink
from .routes import RouteManager
from .tun import Tun
from .udp import RawEspEndpoint, dual_stack_wanted, enable_esp_in_udp, open_endpoints, raw_esp_addresses

log = logging.getLogger("pyike.daemon")

SEQUENCE_POLL_INTERVAL = 5.0  # seconds between checks of every SA's sequence-number limit
FLUSH_ROUNDS = (
    8  # engine events answered by engine calls (a failed install) queue more; the rest waits a tick
)
__all__ = [
    "DEFAULT_INITIATE_WAIT",
    "INBOUND_LINGER",
    "MAX_INITIATE_WAIT",
    "Daemon",
    "describe_error",
    "impair_refusal",
    "run_daemon",
]


class StartError(Exception):
    """A step of the daemon's start failed; str() names the step and the cause."""


@contextlib.contextmanager
def _start_step(what: str) -> Iterator[None]:
    try:
        yield
    except StartError:
        raise
    except Exception as exc:
        raise StartError("%s: %s" % (what, describe_error(exc))) from exc


def _event_subject(event: object) -> str:
    """What an engine event concerns, for a log line: its type, connection/child, SAs and peer."""
    parts = []
    conn, child = getattr(event, "conn", None), getattr(event, "child", None)
    if conn:
        parts.append("%s/%s" % (conn, child) if child else str(conn))
    if getattr(event, "ike_sa", None):
        parts.append("IKE SA %s" % event.ike_sa)
    if isinstance(getattr(event, "spi_in", None), int):
        parts.append("CHILD_SA %08x_i" % event.spi_in)
    remote = getattr(event, "remote", None)
    if isinstance(remote, tuple) and len(remote) == 2:
        parts.append("peer %s:%s" % remote)
    return "%s (%s)" % (type(event).__name__, ", ".join(parts) or "no SA")


def _policies(config: Any, raw_esp: bool = True) -> Dict[str, IkePolicy]:
    policies = {name: policy_from_config(conn) for name, conn in config.connections.items()}
    if not raw_esp:  # without a raw ESP socket every Child SA must use UDP encapsulation
        for policy in policies.values():
            policy.force_encap = True
    return policies


class Daemon(Commands, ChildSaInstaller):
    def __init__(self, config_path: str, config: Any, allow_impair: bool = False):
        self.config_path = config_path
        self.config = config
        self.allow_impair = allow_impair
        self.raw_esp = True
        settings = config.settings
        self.engine = Engine(
            _policies(config),
            retransmit=RetransmitPolicy(
                settings.retransmit_timeout, settings.retransmit_base, settings.retransmit_tries
            ),
            ike_port=settings.ike_port,
            nat_t_port=settings.nat_t_port,
            impair=Impair(settings.impair),
        )
        self.dataplane: Any = None  # Dataplane (userspace) or KernelDataplane
        self.dataplane_choice: Optional[DataplaneChoice] = None
        self.control: Optional[ControlServer] = None
        self.failures: List[Tuple[float, Failure]] = []  # recent, for `initiate` answers and `stats`
        self._children: Dict[int, str] = {}  # spi_in -> dataplane child id (rekeyed SAs and twins share it)
        self._outbound: Dict[int, Tuple[str, OutboundSA, Tuple[str, int]]] = {}  # spi_in -> its outbound SA
        self._lingering: List[Tuple[float, str, int]] = []  # (until, child id, spi_in) of replaced SAs
        self._wake: Optional[asyncio.Event] = None  # created inside the running loop (Python 3.9)
        self._stopping: Optional[asyncio.Event] = None
        self._waiters: List[Tuple[str, Optional[str], asyncio.Future]] = []
        self._started = time.monotonic()
        self._ipr: Optional[Netlink] = None  # address look-ups, opened on first use
        self._local_addresses: Optional[LocalAddresses] = None
        self.event_errors = 0  # engine events the daemon failed to act on (each logged with its SA)
        # start_action, traps, acquires and peers given as DNS names (actions.py)
        self.actions = ConnectionActions(
            self, lambda selectors: _local_address_in(selectors, self._addresses())
        )

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> int:
        settings = self.config.settings
        loop = asyncio.get_running_loop()
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        try:
            self.dataplane_choice = choose_dataplane(settings.dataplane)
        except DataplaneUnavailable as exc:
            raise StartError(str(exc)) from None
        listen = [str(address) for address in settings.listen]
        tun: Optional[Tun] = None
        routes: Optional[RouteManager] = None
        endpoints: Optional[List[Any]] = None
        if self.dataplane_choice.mode == KERNEL:
            endpoints = self._kernel_dataplane(listen)  # None: auto fell back to userspace
        choice = self.dataplane_choice
        (log.info if choice.complete else log.warning)("dataplane: %s (%s)", choice.mode, choice.reason)
        if endpoints is None:
            with _start_step("TUN device %s (MTU %d)" % (settings.tun_name, settings.tun_mtu)):
                tun = Tun(settings.tun_name, mtu=settings.tun_mtu)
            _no_redirects(tun.name)
            endpoints = self._userspace_endpoints(listen)
            routes = RouteManager(tun.name)
            self.dataplane = Dataplane(tun, endpoints, routes=routes, ike_handler=self._on_ike)
        if _route_interfaces(self.config):
            kind = "XFRM interfaces" if getattr(self.dataplane, "kernel", False) else "TUN devices"
            with _start_step("%s of the route-based connections" % kind):
                self.dataplane.interfaces.sync(_route_interfaces(self.config))
        self.dataplane.limits.on_limit = self._on_volume_limit
        self.dataplane.start(loop)
        self.actions.start(loop)
        self.control = ControlServer(settings.control_socket, self._handlers())
        with _start_step("control socket %s" % settings.control_socket):
            await self.control.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload()))
        log.info(
            "pyike daemon started: %s, IKE on %s%s ports %d/%d, control %s",
            "TUN %s" % tun.name if tun is not None else "kernel ESP (XFRM)",
            ", ".join(listen),
            " (dual-stack: IPv4 too)" if dual_stack_wanted(listen) else "",
            settings.ike_port,
            settings.nat_t_port,
            settings.control_socket,
        )
        _log_cryptography()
        _check_own_certificates(self.config)
        self._start_actions()
        timer = asyncio.ensure_future(self._timer())
        poll = asyncio.ensure_future(self._poll_sequence_limits())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait((stopping, timer, poll), return_when=asyncio.FIRST_COMPLETED)
        status = 0
        for task, what in ((timer, "the engine's timer"), (poll, "the sequence-number poll")):
            if task.done() and not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                log.error("%s failed, stopping: %s", what, describe_error(exc), exc_info=exc)
                status = 1
        stopping.cancel()
        log.info("stopping: deleting IKE SAs")
        for name in list(self.engine.policies):
            self.engine.terminate(name, time.monotonic())
        self._flush()
        await asyncio.sleep(0.2)  # let DELETE requests leave
        timer.cancel()
        poll.cancel()
        self.actions.close()
        await self.control.close()
        self.dataplane.close()
        if routes is not None:
            routes.cleanup()
        if self._local_addresses is not None:
            self._local_addresses.close()
        if self._ipr is not None:
            self._ipr.close()
        for endpoint in endpoints:
            endpoint.close()
        if tun is not None:
            tun.close()
        return status

    def _userspace_endpoints(self, listen: List[str]) -> List[Any]:
        settings = self.config.settings
        with _start_step(
            "UDP ports %d/%d on %s" % (settings.ike_port, settings.nat_t_port, ", ".join(listen))
        ):
            endpoints: List[Any] = open_endpoints(listen, (settings.ike_port, settings.nat_t_port))
        try:
            for address in raw_esp_addresses(listen):  # raw sockets are never dual-stack
                endpoints.append(RawEspEndpoint(address))
        except OSError as exc:
            log.warning("no raw ESP socket (%s): every Child SA will use ESP in UDP", describe_error(exc))
            for endpoint in [e for e in endpoints if isinstance(e, RawEspEndpoint)]:
                endpoint.close()
                endpoints.remove(endpoint)
            self.raw_esp = False
            self.engine.policies = _policies(self.config, raw_esp=False)
        return endpoints

    def _kernel_dataplane(self, listen: List[str]) -> Optional[List[Any]]:
        """XFRM states and policies: IKE sockets only (no GRO/GSO: the kernel decapsulates ESP in UDP
        on the NAT-T socket), and what a crashed daemon left in the kernel flushed first.

        Every IKE socket bypasses IPsec (per-socket policies, as strongSwan's bypass_socket()), so that
        a Child SA whose selectors cover the IKE endpoints cannot capture IKE. If the kernel refuses
        that or ESP in UDP on a real socket, ``auto`` falls back to the userspace dataplane (returns
        None, with the reason in ``dataplane_choice``); ``kernel`` cannot start."""
        from .kernel_dataplane import KernelDataplane  # pyroute2: only in kernel mode
        from .xfrm import bypass_socket

        settings = self.config.settings
        with _start_step(
            "UDP ports %d/%d on %s" % (settings.ike_port, settings.nat_t_port, ", ".join(listen))
        ):
            endpoints: List[Any] = open_endpoints(
                listen, (settings.ike_port, settings.nat_t_port), gro=False, gso=False
            )
        step = "ESP in UDP on the NAT-T socket (UDP_ENCAP_ESPINUDP)"
        try:
            try:
                for endpoint in endpoints:
                    if endpoint.nat_t:
                        enable_esp_in_udp(endpoint)
                step = "IPsec bypass policies on the IKE sockets (IP_XFRM_POLICY)"
                for endpoint in endpoints:
                    bypass_socket(endpoint.sock)
            except OSError as exc:
                if self.dataplane_choice is None or self.dataplane_choice.setting != AUTO:
                    raise StartError("%s: %s" % (step, describe_error(exc))) from exc
                for endpoint in endpoints:
                    endpoint.close()
                self.dataplane_choice = DataplaneChoice(
                    USERSPACE,
                    AUTO,
                    "auto: kernel ESP is there, but %s failed: %s" % (step, describe_error(exc)),
                )
                return None
            with _start_step("XFRM netlink"):
                self.dataplane = KernelDataplane(
                    endpoints, nat_t_port=settings.nat_t_port, ike_handler=self._on_ike
                )
                states, policies = self.dataplane.flush()
        except StartError:
            for endpoint in endpoints:
                endpoint.close()
            raise
        if states or policies:
            log.warning(
                "removed %d state(s) and %d policy(ies) an earlier run left in the kernel", states, policies
            )
        return endpoints

    def _start_actions(self) -> None:
        self.actions.apply_start_actions()
        self._flush()

    async def _timer(self) -> None:
        while True:
            traps = self.actions.traps
            deadlines = [self.engine.next_deadline(), self._linger_deadline()]
            deadlines.append(traps.next_deadline() if traps is not None else None)
            deadlines = [d for d in deadlines if d is not None]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            self.engine.tick(time.monotonic())
            self._flush(wake_timer=False)
            self._expire_lingering(time.monotonic())
            if traps is not None:
                traps.expire(time.monotonic())

    async def _poll_sequence_limits(self) -> None:
        """Byte and packet limits are checked after every batch; sequence numbers need a look now and then."""
        while True:
            await asyncio.sleep(SEQUENCE_POLL_INTERVAL)
            self.dataplane.limits.check(everything=True)

    # --- engine <-> runtime ------------------------------------------------------------------
    def _on_ike(self, data: bytes, source: Tuple[str, int], local: Tuple[str, int]) -> None:
        self.engine.receive(data, local, source, time.monotonic())
        self._flush()

    def _on_volume_limit(self, spi_in: int, hard: bool, what: str) -> None:
        """An ESP SA crossed a byte, packet or sequence-number limit: the engine rekeys or deletes."""
        acted = self.engine.child_volume_reached(spi_in, hard, time.monotonic(), what)
        if hard and not acted and getattr(self.dataplane, "kernel", False):
            try:  # the kernel has deleted the state already: a pair the engine lets go may carry traffic
                self._outbound_gone(spi_in)
            except (OSError, ValueError) as exc:
                log.error("cannot move the traffic off SA pair %08x_i: %s", spi_in, describe_error(exc))
        self._flush()

    def _flush(self, wake_timer: bool = True) -> None:
        """Act on the engine's events, each on its own: one that fails is logged with the SA it
        concerns and counted, and the others still happen (so that engine and dataplane agree on
        everything else). Then the timer task re-reads the engine's next deadline."""
        for _round in range(FLUSH_ROUNDS):  # acting on an event may make the engine queue more
            events = self.engine.pop_events()
            if not events:
                break
            for event in events:
                try:
                    self._act_on(event)
                except Exception as exc:
                    self.event_errors += 1
                    subject = _event_subject(event)
                    log.error("cannot act on %s: %s", subject, describe_error(exc), exc_info=True)
                    conn = getattr(event, "conn", None)
                    if conn:
                        self._failed(Failure(conn, "act on %s" % subject, describe_error(exc)))
        if wake_timer and self._wake is not None:
            self._wake.set()

    def _act_on(self, event: object) -> None:
        if isinstance(event, SendDatagram):
            try:
                self.dataplane.send_ike(event.data, event.local, event.remote)
            except (OSError, ValueError) as exc:
                log.warning("cannot send IKE message to %s:%d: %s", event.remote[0], event.remote[1], exc)
        elif isinstance(event, SendKeepalive):
            try:
                self.dataplane.send_keepalive(event.local, event.remote)
            except ValueError as exc:
                log.warning("cannot send a NAT keepalive to %s:%d: %s", event.remote[0], event.remote[1], exc)
        elif isinstance(event, ChildSaUp):
            self._install(event)
        elif isinstance(event, ChildSaOutbound):
            self._switch_outbound(event.spi_in)
        elif isinstance(event, ChildSaDown):
            self._remove(event)
            log.info(
                "%s/%s: CHILD_SA %08x_i removed: %s", event.conn, event.child, event.spi_in, event.reason
            )
        elif isinstance(event, Failure):
            log.warning("%s: %s failed: %s", event.conn, event.what, event.reason)
            self._failed(event)
        elif isinstance(event, IkeSaUp):
            log.info(
                "%s: IKE SA %s up between %s and %s",
                event.conn,
                event.ike_sa,
                event.local[0],
                event.remote[0],
            )
        elif isinstance(event, IkeSaDown):
            log.info("%s: IKE SA %s down: %s", event.conn, event.ike_sa, event.reason)
        else:
            self.actions.act_on(event)

    def _failed(self, failure: Failure) -> None:
        """Keep a failure for `stats` and tell whoever waits for its connection in `initiate`."""
        self.failures.append((time.monotonic(), failure))
        del self.failures[:-50]
        self._resolve(failure.conn, None, error=failure)
        self.actions.failed(failure)

    def _addresses(self) -> LocalAddresses:
        if self._local_addresses is None:
            self._local_addresses = LocalAddresses(self._netlink())
        return self._local_addresses

    def _netlink(self) -> Netlink:
        if self._ipr is None:
            self._ipr = Netlink()  # pyroute2 on its own thread: it cannot run inside our event loop
        return self._ipr

    def _resolve(self, conn: str, child: Optional[str], error: Optional[Failure] = None) -> None:
        for waiter in list(self._waiters):
            name, wanted_child, future = waiter
            if name == conn and (error is not None or wanted_child in (None, child)) and not future.done():
                future.set_result(error)
                self._waiters.remove(waiter)

    async def _reload(self, raise_errors: bool = False) -> Dict[str, Any]:
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, the running configuration stays: %s", exc)
            if raise_errors:
                raise ControlError("reload refused, the running configuration stays:\n%s" % exc) from None
            return {}
        refusal = impair_refusal(config, self.allow_impair)
        if refusal:
            log.error("reload refused, the running configuration stays: %s", refusal)
            if raise_errors:
                raise ControlError("reload refused, the running configuration stays:\n%s" % refusal)
            return {}
        try:
            if self.dataplane is not None:  # None only before the start
                self.dataplane.interfaces.sync(_route_interfaces(config))
        except (OSError, ValueError) as exc:
            refusal = describe_error(exc)
        if refusal:
            log.error("reload refused, the running configuration stays: %s", refusal)
            if raise_errors:
                raise ControlError("reload refused, the running configuration stays:\n%s" % refusal)
            return {}
        self.engine.impair = Impair(config.settings.impair)
        before = set(self.engine.policies)
        for name in _route_changes(self.config, config):
            # the engine's policy signature knows nothing of interfaces: its SAs would stay bound to the old one
            log.info("%s: its mode or interface changed: deleting its SAs", name)
            self.engine.terminate(name, time.monotonic())
        self.engine.update_policies(_policies(config, self.raw_esp), time.monotonic())
        self.config = config
        _check_own_certificates(config)
        self._flush()
        self._start_actions()
        restart = _restart_needed(self.dataplane_choice, config)
        if restart:
            log.warning(restart)
        if getattr(self.dataplane, "kernel", False):
            try:
                states, policies = self.dataplane.reconcile()
            except OSError as exc:
                log.warning("cannot check the kernel for stale states and policies: %s", describe_error(exc))
            else:
                if states or policies:
                    log.info("removed %d stale state(s) and %d policy(ies) from the kernel", states, policies)
        after = set(self.engine.policies)
        message = "reloaded %s: %d connection(s), added %s, removed %s" % (
            self.config_path,
            len(after),
            sorted(after - before) or "none",
            sorted(before - after) or "none",
        )
        if restart:
            message += "; " + restart
        log.info(message)
        return {"message": message}


def _route_interfaces(config: Any) -> Dict[str, Any]:
    """The interfaces (XFRM or TUN) the route-based connections want, by name."""
    return {c.interface.name: c.interface for c in config.connections.values() if c.interface is not None}


def _route_changes(old: Any, new: Any) -> List[str]:
    """Connections of both configurations whose mode or interface (name, if_id) differs."""

    def binding(conn: Any) -> tuple:
        return conn.mode, (conn.interface.name, conn.interface.if_id) if conn.interface is not None else None

    return sorted(
        name
        for name, conn in new.connections.items()
        if name in old.connections and binding(old.connections[name]) != binding(conn)
    )


def _restart_needed(choice: Optional[DataplaneChoice], config: Any) -> str:
    """A warning if the reloaded configuration asks for another dataplane: the dataplane is chosen at
    start (sockets, TUN device or XFRM), so a new settings.dataplane takes effect at the next restart."""
    wanted = getattr(config.settings, "dataplane", None)
    if choice is None or wanted is None or wanted == choice.setting:
        return ""
    return "settings.dataplane changed from %s to %s: the %s dataplane stays until the daemon restarts" % (
        choice.setting,
        wanted,
        choice.mode,
    )


def _log_cryptography() -> None:
    """Which cryptography runs: one before 42 makes an OpenSSL context per ESP packet (much slower)."""
    import cryptography

    where = os.path.dirname(os.path.dirname(cryptography.__file__ or ""))
    if is_before_42():
        log.info("cryptography %s from %s: older than 42, the userspace ESP dataplane runs about 2.5 times "
                 "slower than with a newer one (pyike.ipsec.engine option cryptography_wheel)",
                 cryptography.__version__, where)  # fmt: skip
    else:
        log.info("cryptography %s from %s", cryptography.__version__, where)


def _check_own_certificates(config: Any, now: Optional[float] = None) -> List[str]:
    """Warn about our own certificates that are not valid now: peers will refuse them. (The loader
    read them; validity is a matter of time, not of the configuration, so it does not refuse.)"""
    moment = as_utc(time.time() if now is None else now)
    warnings = []
    for name, conn in config.connections.items():
        credential = getattr(conn, "credential", None)
        if credential is None:
            continue
        certificate = credential.certificate
        if moment > not_valid_after(certificate):
            problem = "expired on %s" % not_valid_after(certificate).strftime("%Y-%m-%d %H:%M:%S UTC")
        elif moment < not_valid_before(certificate):
            problem = "is not valid before %s" % not_valid_before(certificate).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            )
        else:
            continue
        warnings.append(
            "connection %s: our certificate %s (%s) %s; peers will refuse it"
            % (name, subject_text(certificate), conn.cert, problem)
        )
    for warning in warnings:
        log.warning(warning)
    return warnings


def _no_redirects(ifname: str) -> None:
    """A hub forwards spoke-to-spoke traffic back out of the TUN device it came in on; the kernel
    would answer each such packet with an ICMP redirect, which is meaningless on a tunnel."""
    for name in ("all", ifname):
        try:
            with open("/proc/sys/net/ipv4/conf/%s/send_redirects" % name, "w") as handle:
                handle.write("0\n")
        except OSError as exc:
            log.debug("cannot turn off ICMP redirects on %s: %s", name, exc)


def impair_refusal(config: Any, allow_impair: bool) -> str:
    """Why a configuration with impairments (fault injection, lab tests only) is refused, or ""."""
    if config.settings.impair and not allow_impair:
        return (
            "settings.impair injects faults and is for lab tests only; start the daemon with "
            "--allow-impair to use it (impairments: %s)" % "; ".join(config.settings.impair)
        )
    return ""


def run_daemon(config_path: str, log_level: Optional[str] = None, allow_impair: bool = False) -> int:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        sys.stderr.write("pyike: %s\n" % exc)
        return 2
    refusal = impair_refusal(config, allow_impair)
    if refusal:
        sys.stderr.write("pyike: %s: %s\n" % (config_path, refusal))
        return 2
    level = (log_level or config.settings.log_level or "info").upper()
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output is per netlink message
    if os.geteuid() != 0:
        sys.stderr.write("pyike: the daemon needs root (TUN device, ports 500/4500, routes)\n")
        return 2
    try:
        return asyncio.run(Daemon(config_path, config, allow_impair).run())
    except StartError as exc:
        sys.stderr.write("pyike: cannot start: %s\n" % exc)
        return 1
    except OSError as exc:
        sys.stderr.write("pyike: %s\n" % describe_error(exc))
        return 1
    except Exception as exc:  # a bug: the traceback says where, the last line what
        traceback.print_exc()
        sys.stderr.write("pyike: internal error: %s\n" % describe_error(exc))
        return 1
