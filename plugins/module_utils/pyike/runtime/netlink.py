"""pyroute2's IPRoute on a thread of its own, usable inside and outside a running asyncio loop.

pyroute2 0.9 builds its synchronous IPRoute on asyncio and refuses to start inside a running
event loop; 0.7 has no asynchronous API at all. One worker thread that owns the IPRoute socket
serves both the same way. Calls block the caller until netlink answers (milliseconds): fine for
links and routes, which change only when Child SAs come and go, never per packet.

There is no time limit on a call. The first one imports pyroute2 and opens its socket on the
worker thread, which takes a tenth of a second of CPU here but tens of seconds on a starved
machine (a VM without hardware virtualisation, a busy gateway); a limit there once killed the
daemon at start with an empty message (TimeoutError has none). The kernel answers netlink
requests; a call that is merely slow is logged every NETLINK_SLOW seconds and waited for.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Callable, Optional

log = logging.getLogger("pyike.netlink")

NETLINK_SLOW = 10.0  # seconds after which a call still waiting is logged (and then every NETLINK_SLOW)


class Netlink:
    """``call(fn, *args)`` runs ``fn(ipr, *args)`` on the netlink thread and returns its result.

    ``fn`` must consume generators (pyroute2 0.9 returns them) before returning.
    """

    def __init__(self) -> None:
        self._executor: Optional[ThreadPoolExecutor] = None
        self._ipr = None
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pyike-netlink")
            executor = self._executor
        return _wait(executor.submit(self._run, fn, args, kwargs), getattr(fn, "__qualname__", repr(fn)))

    def _run(self, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self._ipr is None:
            from pyroute2 import IPRoute

            self._ipr = IPRoute()
        return fn(self._ipr, *args, **kwargs)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            _wait(executor.submit(self._close_ipr), "closing the netlink socket")
        finally:
            executor.shutdown(wait=True)

    def _close_ipr(self) -> None:
        ipr, self._ipr = self._ipr, None
        if ipr is not None:
            ipr.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _wait(future: Future, what: str) -> Any:
    """The call's result, however long it takes; a slow one is logged, never abandoned."""
    waited = 0.0
    while not wait((future,), timeout=NETLINK_SLOW).done:
        waited += NETLINK_SLOW
        log.warning(
            "netlink request %s still running after %.0f s; waiting on (a busy machine?)", what, waited
        )
    return future.result()
