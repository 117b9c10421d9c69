"""pyroute2's IPRoute on a thread of its own, usable inside and outside a running asyncio loop.

pyroute2 0.9 builds its synchronous IPRoute on asyncio and refuses to start inside a running
event loop; 0.7 has no asynchronous API at all. One worker thread that owns the IPRoute socket
serves both the same way. Calls block the caller until netlink answers (milliseconds): fine for
links and routes, which change only when Child SAs come and go, never per packet.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional

NETLINK_TIMEOUT = 10.0


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
        return executor.submit(self._run, fn, args, kwargs).result(NETLINK_TIMEOUT)

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
            executor.submit(self._close_ipr).result(NETLINK_TIMEOUT)
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
