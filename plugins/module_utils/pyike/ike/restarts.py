"""When the engine initiates again by itself, and how long it waits first.

* dpd_action (RFC 7296 §2.4): the peer stopped answering; restart initiates the connection again after
  RESTART_DELAY, trap asks the runtime for a trap per Child SA that was up (InstallTrap).
* close_action (strongSwan's names): the peer closed a Child SA, by deleting it (§1.4.1) or its IKE SA,
  and neither a rekey (§2.8) nor a reauthentication (§2.8.3, a twin in a parallel IKE SA) replaced it.
  trap asks for a trap; start initiates the child again, after RESTART_DELAY doubled for each time the
  peer closed it again within STABLE_TIME of our restart (up to MAX_CLOSE_DELAY), so a peer that keeps
  deleting it meets a slower and slower loop, never a tight one.
* a peer's DNS name that could not be resolved (ResolvePeer): tried again after RESOLVE_RETRY, doubling
  up to MAX_RESOLVE_RETRY, until it resolves or the connection is terminated or removed.
* a Child SA the peer refused for now with TEMPORARY_FAILURE (§2.25, tasks/child_create.py).

All of them land in `engine.restarts` ((connection, child or None) -> when), which `run` starts; our own
terminate cancels them (`cancel`).
"""

from __future__ import annotations

import logging
from typing import Dict, Iterable, Optional, Tuple

from .duplicates import has_twin
from .events import Failure, InstallTrap
from .sa import REKEYED, ChildSa, IkeSa

log = logging.getLogger("pyike.ike")

RESTART_DELAY = 2.0  # dpd_action restart, close_action start: seconds before initiating again
MAX_CLOSE_DELAY = 300.0
STABLE_TIME = 60.0  # a close later than this after our restart starts the back-off afresh
RESOLVE_RETRY = 2.0
MAX_RESOLVE_RETRY = 60.0

Key = Tuple[str, Optional[str]]


class Backoff:
    """Per key: how often in a row something failed (or was closed), and when we last tried again."""

    def __init__(self, first: float, most: float) -> None:
        self.first, self.most = first, most
        self.state: Dict[Key, Tuple[int, float]] = {}

    def next_delay(self, key: Key, now: float, window: Optional[float] = None) -> float:
        """The delay before the next try; with `window`, a failure that comes more than that many seconds
        after the last try starts the count afresh."""
        count, last_try = self.state.get(key, (0, now))
        if window is not None and now - last_try > window:
            count = 0
        delay = min(self.first * 2**count, self.most)
        self.state[key] = (count + 1, now + delay)
        return delay

    def forget(self, conn: str) -> None:
        for key in [key for key in self.state if key[0] == conn]:
            del self.state[key]


def schedule(engine, key: Key, at: float) -> None:
    """Initiate `key` at `at` (or earlier, if something already asked for that)."""
    current = engine.restarts.get(key)
    engine.restarts[key] = at if current is None else min(current, at)


def cancel(engine, conn: str) -> None:
    """Our own terminate: no restart, no retry of a resolution, a fresh back-off next time."""
    for key in [key for key in engine.restarts if key[0] == conn]:
        del engine.restarts[key]
    engine.close_backoff.forget(conn)
    engine.resolve_backoff.forget(conn)


def run(engine, now: float) -> None:
    """Start the restarts that are due (Engine.tick)."""
    for key, at in list(engine.restarts.items()):
        if now < at:
            continue
        del engine.restarts[key]
        conn, child = key
        policy = engine.policies.get(conn)
        if policy is None or not policy.can_initiate or (child is not None and child not in policy.children):
            continue  # removed or changed by a reload meanwhile
        engine.initiate(conn, child, now)


def after_drop(engine, sa: IkeSa, reason: str, now: Optional[float]) -> None:
    """dpd_action, when `sa` goes because the peer stopped answering (the manager gave up on it)."""
    policy = engine.policies.get(sa.policy.name)
    if policy is None or not policy.can_initiate or now is None or reason != "peer not responding":
        return
    if policy.dpd_action == "restart":
        schedule(engine, (policy.name, None), now + RESTART_DELAY)
    elif policy.dpd_action == "trap":
        for name in sorted({child.name for child in sa.children if child.name in policy.children}):
            engine.emit(InstallTrap(policy.name, name, "dpd_action", "the peer stopped answering"))


def peer_closed(engine, sa: IkeSa, child: ChildSa, now: float) -> None:
    """close_action, when the peer deleted `child` or its IKE SA. Call it before `child` is removed."""
    if child.state == REKEYED or child.delete_sent or has_twin(engine, sa, child):
        return  # replaced by a rekey or a reauthentication, or our own DELETE crossed the peer's
    if any(other is not child and other.name == child.name and not other.going for other in sa.children):
        return  # the redundant SA of a rekey collision (§2.8.1): the other one stays
    policy = engine.policies.get(sa.policy.name)
    configured = policy.children.get(child.name) if policy is not None else None
    if configured is None or not policy.can_initiate or configured.close_action == "none":
        return
    if configured.close_action == "trap":
        engine.emit(InstallTrap(policy.name, child.name, "close_action", "closed by the peer"))
        return
    key = (policy.name, child.name)
    delay = engine.close_backoff.next_delay(key, now, window=STABLE_TIME)
    engine.count("close_restarts")
    log.info("%s: CHILD_SA %s closed by the peer; close_action start initiates it again in %.0fs", sa.key,
             child.name, delay)  # fmt: skip
    schedule(engine, key, now + delay)


def resolve_failed(engine, conn: str, children: Iterable[Optional[str]], host: str, reason: str,
                   now: float) -> None:  # fmt: skip
    """The runtime could not resolve `host`, the peer of `conn`, for `children`: report it, try again later."""
    policy = engine.policies.get(conn)
    engine.count("resolve_failures")
    if policy is None or policy.remote_host != host:
        return  # removed or changed by a reload meanwhile
    delay = engine.resolve_backoff.next_delay((conn, None), now)
    log.warning("%s: cannot resolve the peer's name %s: %s; trying again in %.0fs", conn, host, reason, delay)
    engine.emit(Failure(conn, "resolve %s" % host, "%s (trying again in %.0fs)" % (reason, delay)))
    for child in set(children) or {None}:
        if child is None or child in policy.children:
            schedule(engine, (conn, child), now + delay)


def resolved(engine, conn: str) -> None:
    """A resolution of `conn`'s peer worked: the next failure starts the back-off afresh."""
    engine.resolve_backoff.forget(conn)
