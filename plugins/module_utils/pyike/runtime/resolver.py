"""Resolving peers given as DNS names, off the event loop and within a deadline.

``getaddrinfo`` blocks (it reads /etc/hosts, then asks the resolvers of /etc/resolv.conf, and a resolver
that never answers costs its timeout times its attempts), so each look-up runs on a small thread pool
and the loop waits for it at most RESOLVE_TIMEOUT seconds. A thread cannot be cancelled: a look-up that
missed its deadline keeps its thread until the C library gives up, and while it does, another look-up
of the same name fails at once instead of taking a second thread (LookupStuck). So a name whose DNS
never answers holds one thread at most, and a full pool makes new look-ups wait for their deadline,
never the loop. The threads are daemon threads: a look-up blocked in the C library does not hold up the
daemon's exit (ThreadPoolExecutor's threads are joined when the interpreter exits).

What an answer may hold is checked (a hostile or broken DNS server chooses it): only addresses of the
wanted family, no unspecified, multicast, broadcast or link-local address, no loopback address unless
the local address is one, and at most MAX_ADDRESSES of them, in the resolver's order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import queue
import socket
import threading
from typing import Callable, Dict, List, Optional, Set, Tuple

RESOLVE_TIMEOUT = 5.0  # seconds the daemon waits for one look-up
MAX_ADDRESSES = 8  # addresses kept of one answer
MAX_THREADS = 4  # look-ups that may run at once (each blocked one holds a thread)

Lookup = Callable[..., list]  # socket.getaddrinfo's signature


class ResolveError(Exception):
    """A name did not resolve to a usable address; str() says why (without a traceback's noise)."""


class LookupStuck(ResolveError):
    """The previous look-up of the name is still blocked in the C library."""


def usable_addresses(infos: list, version: int, allow_loopback: bool) -> Tuple[List[str], List[str]]:
    """(usable, refused) addresses of a getaddrinfo answer, each once, in the answer's order."""
    usable: List[str] = []
    refused: List[str] = []
    for info in infos:
        try:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        except (ValueError, IndexError, TypeError):
            continue
        text = str(address)
        if text in usable or text in refused or address.version != version:
            continue
        bad = address.is_unspecified or address.is_multicast or address.is_link_local
        bad = bad or (address.version == 4 and text == "255.255.255.255")
        bad = bad or (address.is_loopback and not allow_loopback)
        (refused if bad else usable).append(text)
    return usable[:MAX_ADDRESSES], refused


class LookupThreads:
    """Up to `size` daemon threads that run submitted calls in order; a concurrent.futures.Future each."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.threads: List[threading.Thread] = []
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a call: each takes the next one queued
        self._queued = 0  # calls no thread has taken yet

    def submit(self, function: Callable[..., list], *args) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((future, function, args))
        with self._lock:
            self._queued += 1
            if self._queued > self._idle and len(self.threads) < self.size:
                thread = threading.Thread(
                    target=self._work, name="pyike-dns-%d" % len(self.threads), daemon=True
                )
                self.threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            item = self._queue.get()
            with self._lock:
                self._idle -= 1
                if item is None:
                    return
                self._queued -= 1
            future, function, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # the waiter reports it
                future.set_exception(exc)

    def shutdown(self) -> None:
        """Idle threads end now, busy ones after their call; nobody waits for them."""
        for _thread in self.threads:
            self._queue.put(None)


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


class Resolver:
    """Look-ups of peer names on a thread pool, each bounded by a deadline."""

    def __init__(self, timeout: float = RESOLVE_TIMEOUT, lookup: Lookup = socket.getaddrinfo) -> None:
        self.timeout = timeout
        self.lookup = lookup
        self._pool: Optional[LookupThreads] = None
        self._running: Dict[Tuple[str, int], concurrent.futures.Future] = {}  # look-ups not finished
        self._late: Set[Tuple[str, int]] = set()  # of those, the ones that missed a deadline

    async def resolve(self, name: str, version: int, allow_loopback: bool = False) -> List[str]:
        """The usable IPv`version` addresses of `name`; ResolveError says why there are none."""
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        key = (name, family)
        if key in self._late:
            raise LookupStuck(
                "the previous look-up of %s is still waiting for the DNS (no answer within %gs)"
                % (name, self.timeout)
            )
        future = self._running.get(key)
        if future is None:  # else share the look-up under way
            if self._pool is None:
                self._pool = LookupThreads(MAX_THREADS)
            future = self._running[key] = self._pool.submit(self._lookup, name, family)
            future.add_done_callback(lambda _done: self._finished(key))
        waited = asyncio.wrap_future(future)
        waited.add_done_callback(_retrieve)  # its error is ours to report, or moot after a deadline
        try:
            # shield: a waiter that gives up must not cancel a look-up another one shares
            infos = await asyncio.wait_for(asyncio.shield(waited), self.timeout)
        except asyncio.TimeoutError:
            if not future.done():
                self._late.add(key)
            raise ResolveError("no answer within %gs" % self.timeout) from None
        except socket.gaierror as exc:
            raise ResolveError(exc.strerror or str(exc)) from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise ResolveError("%s: %s" % (type(exc).__name__, exc)) from None
        usable, refused = usable_addresses(infos, version, allow_loopback)
        if not usable:
            if refused:
                raise ResolveError("the answer holds no usable IPv%d address (refused: %s)"
                                   % (version, ", ".join(refused[:MAX_ADDRESSES])))  # fmt: skip
            raise ResolveError("no IPv%d address" % version)
        return usable

    def _finished(self, key: Tuple[str, int]) -> None:  # on the pool's thread; set ops are atomic
        self._running.pop(key, None)
        self._late.discard(key)

    def _lookup(self, name: str, family: int) -> list:
        return self.lookup(name, None, family, socket.SOCK_DGRAM, socket.IPPROTO_UDP)

    def close(self) -> None:
        """Stop the pool without waiting for look-ups still blocked in the C library."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class PeerNames:
    """Which names are being resolved for which connection and children, and when a responder's names
    were last refreshed (PeerUnmatched: at most once per REFRESH_INTERVAL)."""

    REFRESH_INTERVAL = 30.0

    def __init__(self) -> None:
        self.pending: Dict[str, Set[Optional[str]]] = {}  # connection -> children waiting to initiate
        self.refreshed_at: Dict[str, float] = {}  # connection -> last look-up that was not an initiation

    def want(self, conn: str, child: Optional[str]) -> bool:
        """Record that `child` waits for `conn`'s name; True if a look-up must start (none is running)."""
        first = conn not in self.pending
        self.pending.setdefault(conn, set()).add(child)
        return first

    def take(self, conn: str) -> Set[Optional[str]]:
        return self.pending.pop(conn, set())

    def refresh_due(self, conn: str, now: float) -> bool:
        if (
            conn in self.pending
            or now - self.refreshed_at.get(conn, -self.REFRESH_INTERVAL) < self.REFRESH_INTERVAL
        ):
            return False
        self.refreshed_at[conn] = now
        return True
