"""The IKEv2 engine: every IKE SA of the daemon, driven by datagrams, commands and time.

Sans-I/O (DESIGN.md): `receive`, `initiate`, `terminate` and `tick` take the current time and queue
output events (`pop_events`): datagrams to send, Child SAs to install or remove, failures to report.
All randomness (SPIs, nonces, key exchanges, IVs, jitter) comes from the injected `random_bytes` and
`key_exchange_factory`, so two engines in one process negotiate byte for byte reproducibly.

The engine keeps the table of IKE SAs and hands each message to its SA's TaskManager (manager.py), which
runs the exchanges as tasks (tasks/); what only the engine can do itself is the stateless half of
IKE_SA_INIT under load (cookies and half-open limits, RFC 7296 §2.6, cookies.py) and the choice of the
connections a peer may be. ike/README.md says which file implements which RFC section.

Time: `now` is monotonic and drives every timer. Certificate validity needs wall-clock time, which
comes from the injected `wall_clock` (epoch seconds; `time.time` by default).
"""

from __future__ import annotations

import logging
import os
import struct
import time
from typing import Callable, Dict, Iterable, List, Optional, Tuple

from ..crypto.ke import new_key_exchange
from ..crypto.sk import IvStream
from ..ids import ExchangeType
from ..text import printable
from ..wire.codec import enum_name
from ..wire.errors import WireError
from ..wire.message import decode_message
from . import admission, duplicates, lifetimes, restarts, timers
from .cookies import CookieJar, HalfOpenGuard
from .describe import describe_sa
from .events import Address, Failure, IkeSaDown, IkeSaUp, ResolvePeer, SendDatagram, SendKeepalive
from .fragments import FragmentBudget, Reassembler
from .impair import Impair
from .manager import TaskManager
from .policy import ChildPolicy, IkePolicy, policy_signature
from .sa import AUTHENTICATING, CONNECTING, DEAD, DELETING, ESTABLISHED, INSTALLED, ChildSa, IkeSa
from .tasks import ike_reauth
from .tasks.child_create import ChildCreate
from .tasks.child_delete import delete_child, remove_child
from .tasks.child_rekey import ChildRekey
from .tasks.ike_auth import IkeAuth
from .tasks.ike_delete import delete_ike_sa
from .tasks.ike_init import ZERO_SPI, IkeInit
from .tasks.ike_rekey import IkeRekey

log = logging.getLogger("pyike.ike")

HALF_OPEN_TIMEOUT = 30.0
MAX_CHILD_SAS = 100  # Child SAs on one IKE SA (rekeys aside); more are refused with NO_ADDITIONAL_SAS
KEEPALIVE_INTERVAL = 20.0  # RFC 3948 §4: keep the NAT mapping alive; 20 s is the usual choice


class RetransmitPolicy:
    """RFC 7296 §2.1/§2.4: exponential back-off, then give up on the peer."""

    def __init__(self, timeout: float = 2.0, base: float = 1.8, tries: int = 5):
        self.timeout, self.base, self.tries = timeout, base, tries

    def delay(self, tries: int) -> float:
        return self.timeout * (self.base**tries)

    def span(self) -> float:
        """How long a request is retransmitted before its SA is given up: the longest a peer can take
        to send (or retransmit) a message we wait for."""
        return sum(self.delay(tries) for tries in range(self.tries + 1))


class Engine:
    def __init__(
        self,
        policies: Dict[str, IkePolicy],
        random_bytes: Callable[[int], bytes] = os.urandom,
        key_exchange_factory: Callable[[int], object] = new_key_exchange,
        retransmit: Optional[RetransmitPolicy] = None,
        ike_port: int = 500,
        nat_t_port: int = 4500,
        fragment_size: int = 1280,
        guard: Optional[HalfOpenGuard] = None,
        wall_clock: Callable[[], float] = time.time,
        max_child_sas: int = MAX_CHILD_SAS,
        impair: Optional[Impair] = None,
    ):
        self.policies = dict(policies)
        self.wall_clock = wall_clock  # epoch seconds, only for certificate validity (RFC 5280 §6.1.3)
        self.ike_port, self.nat_t_port = ike_port, nat_t_port
        self.random_bytes = random_bytes
        self.new_ke = key_exchange_factory
        self.retransmit = retransmit or RetransmitPolicy()
        self.sas: Dict[bytes, IkeSa] = {}  # by our SPI
        self.child_owners: Dict[int, IkeSa] = {}  # inbound SPI of every Child SA -> its IKE SA
        self.max_child_sas = max_child_sas
        self.half_open: Dict[Tuple[bytes, str], IkeSa] = {}  # responder: (SPIi, peer ip) -> SA
        self.events: List[object] = []
        self.counters: Dict[str, int] = {}
        # (connection, child or None) -> when to initiate it again (restarts.py): dpd_action restart,
        # close_action start, a Child SA the peer refused for now (TEMPORARY_FAILURE, §2.25), a peer's DNS
        # name that did not resolve
        self.restarts: Dict[Tuple[str, Optional[str]], float] = {}
        self.close_backoff = restarts.Backoff(restarts.RESTART_DELAY, restarts.MAX_CLOSE_DELAY)
        self.resolve_backoff = restarts.Backoff(restarts.RESOLVE_RETRY, restarts.MAX_RESOLVE_RETRY)
        # connection -> the addresses its peer's DNS name resolved to last (the runtime says); a responder
        # accepts IKE_SA_INIT for it from these (admission.candidates)
        self.peer_addresses: Dict[str, Tuple[str, ...]] = {}
        self.fragment_size = fragment_size  # RFC 7383 §2.5.1: 1280 is safe on every path
        self.fragment_budget = FragmentBudget()
        self.cookies = CookieJar(self.random_bytes, 0.0)
        self.guard = guard or HalfOpenGuard()
        self.impair = impair or Impair()
        self.clock = 0.0  # the `now` of the call being processed (held datagrams are sent relative to it)
        self._serial = 0

    # --- output and services of the tasks -------------------------------------------------------------
    def pop_events(self) -> List[object]:
        events, self.events = self.events, []
        return events

    def emit(self, event: object) -> None:
        self.events.append(event)

    def count(self, what: str) -> None:
        self.counters[what] = self.counters.get(what, 0) + 1

    def send(self, sa: IkeSa, datagrams: List[bytes], local: Optional[Address] = None,
             remote: Optional[Address] = None) -> None:  # fmt: skip
        for data in datagrams:
            event = SendDatagram(data, local or sa.local, remote or sa.remote)
            self.events.extend(self.impair.outgoing(event, self.clock) if self.impair else [event])

    def fail(self, sa: IkeSa, what: str, reason: str) -> None:
        log.warning("%s: %s failed: %s", sa.key, what, reason)
        self.events.append(Failure(sa.policy.name, what, reason))

    def handler_failed(self, sa: Optional[IkeSa], what: str, exc: Exception) -> None:
        """A bug met by a peer's message: counted and logged (escaped: the text may hold peer data)."""
        self.count("handler_errors")
        log.error("%s: internal error while processing %s: %s: %s", sa.key if sa is not None else "-", what,
                  type(exc).__name__, printable(str(exc)))  # fmt: skip
        log.debug("traceback of the internal error", exc_info=exc)

    def limit(self, name: str) -> int:
        """A limit of the engine by name (the `limit` impairment can make it count as reached)."""
        return self.impair.limit(name, getattr(self, name))

    def new_child_spi(self) -> int:
        """A random inbound ESP SPI that no Child SA of ours uses (RFC 4303 §2.1: it names the SA)."""
        while True:
            spi = struct.unpack("!I", self.random_bytes(4))[0]
            if spi > 255 and spi not in self.child_owners:  # 1..255 are reserved by IANA
                return spi

    def owns_child(self, child: Optional[ChildSa]) -> bool:
        sa = self.child_owners.get(child.spi_in) if child is not None else None
        return sa is not None and child in sa.children

    def iv_source(self) -> Callable[[int], bytes]:
        """Where a new IKE SA's IVs come from: the system's randomness, or (randomness injected for
        reproducible tests) a stream of the SA's own seeded from it (crypto.sk.IvStream)."""
        return os.urandom if self.random_bytes is os.urandom else IvStream(self.random_bytes(32))

    def new_reassembler(self, sa: IkeSa) -> None:
        """RFC 7383 reassembly with the SA's (new) inbound keys; what the old one held is given back."""
        if sa.reassembler is not None:
            sa.reassembler.clear()
        sa.reassembler = Reassembler(sa.cipher_in, self.fragment_budget, address=sa.remote[0])

    # --- the table of IKE SAs -------------------------------------------------------------------------
    def new_sa(self, policy: IkePolicy, initiator: bool, spi_i: bytes, spi_r: bytes, local: Address,
               remote: Address, now: float) -> IkeSa:  # fmt: skip
        self._serial += 1
        sa = IkeSa("%s#%d" % (policy.name, self._serial), policy, initiator, spi_i, spi_r, local, remote, now,
                   last_received_at=now)  # fmt: skip
        sa.tasks = TaskManager(self, sa)
        return sa

    def register(self, sa: IkeSa) -> None:
        self.sas[sa.our_spi] = sa

    def initiate_sa(self, policy: IkePolicy, child: Optional[ChildPolicy], now: float,
                    remote_ip: Optional[str] = None) -> IkeSa:  # fmt: skip
        """A new IKE SA as initiator, IKE_SA_INIT under way (also for reauthentication, §2.8.3)."""
        sa = self.new_sa(policy, True, self.random_bytes(8), ZERO_SPI, (policy.local_address, self.ike_port),
                         (remote_ip or policy.remote_address, policy.remote_port), now)  # fmt: skip
        self.register(sa)
        sa.tasks.initiate(IkeInit(self, sa, child), now)
        return sa

    def established(self, sa: IkeSa, now: float) -> None:
        sa.move_to(ESTABLISHED)
        sa.established_at = now
        lifetimes.schedule_ike(self, sa, now)
        if sa.local_behind_nat:
            sa.next_keepalive_at = now + KEEPALIVE_INTERVAL
        log.info("%s: IKE_SA established between %s and %s (%s)", sa.key, sa.local[0], sa.remote[0],
                 sa.proposal_text)  # fmt: skip
        self.emit(IkeSaUp(sa.policy.name, sa.key, sa.local, sa.remote))
        ike_reauth.on_established(self, sa, now)
        duplicates.note_duplicate(self, sa, now)

    def deleting(self, sa: IkeSa, now: float) -> None:
        """`sa` is on its way out (a DELETE, ours or the peer's after a rekey, §1.4.1/§2.18): no new
        exchanges on it, and it goes at `delete_by` whatever the peer does."""
        sa.move_to(DELETING)
        sa.delete_by = now + self.retransmit.span()

    def close_half_open(self, sa: IkeSa) -> None:
        key = (sa.spi_i, sa.remote[0])
        if self.half_open.get(key) is sa:
            del self.half_open[key]
            self.guard.closed(key[1])

    def drop_sa(self, sa: IkeSa, reason: str, quiet: bool = False, now: Optional[float] = None) -> None:
        if sa.state == DEAD:
            return
        restarts.after_drop(self, sa, reason, now)
        ike_reauth.on_dropped(sa, now)
        was_up = sa.up
        for child in list(sa.children):
            remove_child(self, sa, child, reason)
        sa.move_to(DEAD)
        sa.next_keepalive_at = None
        sa.tasks.clear()
        self.sas.pop(sa.our_spi, None)
        self.close_half_open(sa)
        if sa.reassembler is not None:
            sa.reassembler.clear()
        if was_up or not quiet:
            self.emit(IkeSaDown(sa.policy.name, sa.key, reason))

    # --- commands ---------------------------------------------------------------------------------------
    def initiate(self, conn: str, child: Optional[str], now: float, remote_ip: Optional[str] = None) -> str:
        """Start an IKE SA for `conn` (with its first Child SA, or `child`), or add `child` to the IKE SA
        the connection has; returns the IKE SA's key. A peer given as a DNS name is resolved first: without
        `remote_ip` the engine asks the runtime (ResolvePeer) and returns "", and the runtime calls again
        with the address it found (or `resolve_failed`)."""
        self.clock = now
        policy = self.policies.get(conn)
        if policy is None:
            raise KeyError("no connection named %r" % conn)
        if not policy.can_initiate:
            raise ValueError("connection %r has remote address %%any: it can only respond" % conn)
        child_policy = self._child_policy(policy, child)
        sa = self.current_sa(conn)
        if sa is not None:
            # Already up or coming up: never a second IKE SA. A child that is not there yet is added with
            # CREATE_CHILD_SA (§1.3.1), once the IKE SA is up if it is still coming up.
            wanted = child_policy.name if child_policy is not None else None
            if wanted and wanted not in self._children_of(sa) and (sa.state == ESTABLISHED or sa.initiator):
                sa.tasks.initiate(ChildCreate(self, sa, child_policy), now)
            return sa.key
        if remote_ip is None and policy.remote_address is None:
            self.emit(ResolvePeer(conn, child_policy.name if child_policy else None, policy.remote_host))
            return ""
        if remote_ip is not None and policy.remote_host:
            restarts.resolved(self, conn)
        return self.initiate_sa(policy, child_policy, now, remote_ip).key

    def current_sa(self, conn: str) -> Optional[IkeSa]:
        """The IKE SA that `initiate` would use for `conn` (the newest up or coming up), if any."""
        current = [sa for sa in self.sas.values() if sa.reauth_by is None and sa.retiring is None]
        for sa in sorted(current, key=lambda sa: sa.created_at, reverse=True):  # the newest first
            if sa.policy.name == conn and sa.state in (CONNECTING, AUTHENTICATING, ESTABLISHED):
                return sa
        return None

    @staticmethod
    def _children_of(sa: IkeSa) -> List[str]:
        """The Child SAs `sa` has or is negotiating (in IKE_SA_INIT/IKE_AUTH or CREATE_CHILD_SA)."""
        names = [child.name for child in sa.children]
        for task in sa.tasks.tasks():
            if isinstance(task, ChildCreate) and task.policy is not None:
                names.append(task.policy.name)
            elif isinstance(task, IkeInit) and task.child is not None:
                names.append(task.child.name)
            elif isinstance(task, IkeAuth) and task.child is not None and task.child.policy is not None:
                names.append(task.child.policy.name)
        return names

    def resolve_failed(self, conn: str, children: Iterable[Optional[str]], host: str, reason: str,
                       now: float) -> None:  # fmt: skip
        """The runtime could not resolve `host` (ResolvePeer) for `children`: a Failure, another try later."""
        self.clock = now
        restarts.resolve_failed(self, conn, children, host, reason, now)

    def set_peer_addresses(self, conn: str, addresses: Tuple[str, ...]) -> None:
        """What `conn`'s peer name resolved to last: the addresses a responder accepts it from."""
        self.peer_addresses[conn] = tuple(addresses)

    def terminate(self, conn: str, now: float) -> int:
        """Delete every IKE SA of `conn` (§1.4.1), and cancel its restarts; returns how many were found."""
        self.clock = now
        restarts.cancel(self, conn)
        found = [sa for sa in self.sas.values() if sa.policy.name == conn and sa.state != DEAD]
        for sa in found:
            if sa.state == ESTABLISHED:
                for child in list(sa.children):
                    remove_child(self, sa, child, "terminated by operator")
                delete_ike_sa(self, sa, "deleted", now, quiet=False)
            elif sa.state != DELETING:  # a DELETING SA goes once its DELETE exchange is answered
                self.drop_sa(sa, "terminated by operator")
        return len(found)

    def update_policies(self, policies: Dict[str, IkePolicy], now: float) -> None:
        """Reload: SAs of removed or changed connections are deleted; new ones apply to new SAs."""
        for name, old in self.policies.items():
            new = policies.get(name)
            if new is None or policy_signature(new) != policy_signature(old):
                self.terminate(name, now)
            if new is None or new.remote_host != old.remote_host:
                self.peer_addresses.pop(name, None)
        self.policies = dict(policies)

    def rekey_child(self, conn: str, child_name: Optional[str], now: float) -> int:
        """Rekey the installed Child SAs of `conn` (one child, or all); returns how many were started."""
        self.clock = now
        started = 0
        for sa in self._established(conn):
            for child in list(sa.children):
                if child.state == INSTALLED and child_name in (None, child.name) and child.policy is not None:
                    sa.tasks.initiate(ChildRekey(self, sa, child), now)
                    started += 1
        return started

    def rekey_ike(self, conn: str, now: float) -> int:
        self.clock = now
        started = 0
        for sa in self._established(conn):
            if not any(isinstance(task, IkeRekey) for task in sa.tasks.tasks()) and sa.reauth_by is None:
                sa.tasks.initiate(IkeRekey(self, sa), now)
                started += 1
        return started

    def reauthenticate(self, conn: str, now: float) -> int:
        """Reauthenticate the established IKE SAs of `conn` now; returns how many were started."""
        self.clock = now
        return sum(
            1
            for sa in self._established(conn)
            if sa.reauth_of is None and ike_reauth.start_reauth(self, sa, now)
        )

    def _established(self, conn: str) -> List[IkeSa]:
        return [sa for sa in list(self.sas.values()) if sa.policy.name == conn and sa.state == ESTABLISHED]

    # --- the runtime reports --------------------------------------------------------------------------
    def child_volume_reached(self, spi_in: int, hard: bool, now: float, what: str = "volume") -> bool:
        """An ESP SA of the Child SA with inbound SPI `spi_in` crossed its soft (rekey) or hard (delete)
        `what` limit ("bytes", "packets", "sequence numbers"); returns whether anything was started."""
        self.clock = now
        found = self._child_by_spi_in(spi_in)
        return found is not None and timers.volume_reached(self, found[0], found[1], hard, now, what)

    def child_install_failed(self, spi_in: int, reason: str, now: float) -> bool:
        """The runtime could not install the Child SA with inbound SPI `spi_in` (ChildSaUp). The peer
        believes it is up, so it is deleted (§1.4.1) and the failure reported; returns whether a DELETE
        was started."""
        self.clock = now
        found = self._child_by_spi_in(spi_in)
        if found is None:
            return False
        sa, child = found
        self.fail(sa, "install CHILD_SA %s" % child.name, reason)
        if child.delete_sent or sa.state != ESTABLISHED:
            return False
        delete_child(self, sa, child, "it could not be installed", now)
        return True

    def _child_by_spi_in(self, spi_in: int) -> Optional[Tuple[IkeSa, ChildSa]]:
        sa = self.child_owners.get(spi_in)
        child = next((c for c in sa.children if c.spi_in == spi_in), None) if sa is not None else None
        return (sa, child) if child is not None else None

    # --- time -------------------------------------------------------------------------------------------
    def next_deadline(self) -> Optional[float]:
        deadlines = list(self.restarts.values())
        for sa in self.sas.values():
            deadlines.append(sa.tasks.next_deadline())
            if not sa.initiator and sa.state == CONNECTING:
                deadlines.append(sa.created_at + HALF_OPEN_TIMEOUT)
            if sa.state == DELETING:
                deadlines.append(sa.delete_by)
            deadlines.append(sa.next_keepalive_at)
            if sa.state == ESTABLISHED:
                deadlines += lifetimes.deadlines(sa) + duplicates.deadlines(sa)
            if sa.reassembler is not None:
                deadlines.append(sa.reassembler.next_deadline())
        deadlines.append(self.impair.next_deadline())
        deadlines = [d for d in deadlines if d is not None]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> None:
        self.clock = now
        self.events.extend(self.impair.release(now))
        restarts.run(self, now)
        for sa in list(self.sas.values()):
            try:
                self._tick_sa(sa, now)
            except Exception as exc:  # else the same error would come back every tick
                self.handler_failed(sa, "its timers", exc)
                self.fail(sa, "timers", "internal error; the IKE SA is deleted")
                self.drop_sa(sa, "internal error in its timers", now=now)

    def _tick_sa(self, sa: IkeSa, now: float) -> None:
        if sa.reassembler is not None:
            sa.reassembler.expire(now)
        if not sa.initiator and sa.state == CONNECTING and now >= sa.created_at + HALF_OPEN_TIMEOUT:
            self.drop_sa(sa, "half-open IKE SA timed out", quiet=True)
            return
        if sa.state == DELETING and sa.delete_by is not None and now >= sa.delete_by:
            self.drop_sa(sa, "the peer did not delete it in time", quiet=True, now=now)
            return
        if sa.state == ESTABLISHED:
            timers.run(self, sa, now)
            duplicates.run_timers(self, sa, now)
        if sa.next_keepalive_at is not None and now >= sa.next_keepalive_at:
            self.emit(SendKeepalive(sa.local, sa.remote))
            sa.next_keepalive_at = now + KEEPALIVE_INTERVAL
        exhausted = sa.tasks.tick(now)
        if exhausted is not None:
            self.fail(
                sa,
                enum_name(ExchangeType, exhausted.exchange),
                "no answer after %d retransmits" % exhausted.tries,
            )
            self.drop_sa(sa, "peer not responding", now=now)

    # --- input ------------------------------------------------------------------------------------------
    def receive(self, data: bytes, local: Address, remote: Address, now: float) -> None:
        """One IKE datagram (non-ESP marker already removed) from `remote` to `local`."""
        self.clock = now
        if self.impair and not self.impair.incoming(data):
            return
        try:
            message = decode_message(data)
        except WireError as exc:
            self.count("invalid_messages")
            log.debug("dropping malformed IKE message from %s: %s", remote[0], exc)
            return
        header = message.header
        if header.exchange == ExchangeType.IKE_SA_INIT and not header.response:
            try:
                admission.on_init_request(self, message, local, remote, now)
            except Exception as exc:  # a bug must cost this request, never the daemon
                self.handler_failed(None, "IKE_SA_INIT request from %s" % remote[0], exc)
                half_open = self.half_open.get((header.spi_i, remote[0]))
                if half_open is not None and half_open.state == CONNECTING:
                    self.drop_sa(half_open, "internal error", quiet=True)
            return
        sa = self.sas.get(header.spi_r if header.initiator else header.spi_i)
        if sa is None or sa.state == DEAD:
            self.count("unknown_spi")
        elif header.response:
            sa.tasks.on_response(message, now)
        else:
            sa.tasks.on_request(message, local, remote, now)

    def responder_candidates(self, local_ip: str, remote_ip: str) -> List[IkePolicy]:
        return admission.candidates(self.policies.values(), local_ip, remote_ip, self.peer_addresses)

    def _child_policy(self, policy: IkePolicy, child: Optional[str]) -> Optional[ChildPolicy]:
        if child is None:
            return next(iter(policy.children.values()), None)
        if child not in policy.children:
            raise KeyError("connection %r has no child %r" % (policy.name, child))
        return policy.children[child]

    # --- introspection ----------------------------------------------------------------------------------
    def describe_sas(self, now: float) -> List[dict]:
        return [describe_sa(sa, now) for sa in self.sas.values()]
