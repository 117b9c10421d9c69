"""The selector sets of one Child SA (RFC 4301 §4.4.1, RFC 7296 §2.9).

A :class:`SelectorSet` holds the local and remote traffic selectors (:class:`..selectors.TrafficSelector`)
of a Child SA. The SA covers every combination of one local and one remote selector (RFC 7296 §2.9):
outbound, the source must be in a local and the destination in a remote selector; inbound the other
way round.
"""

from __future__ import annotations

from typing import Dict, Iterable, Tuple

from ..selectors import TrafficSelector
from .inner import FlowKey, address_key, flow_key

DEFAULT_CACHE_SIZE = 1024


def _side_matches(selectors: Tuple[TrafficSelector, ...], version, address, protocol, port) -> bool:
    return any(ts.covers(version, address, protocol, port) for ts in selectors)


def key_matches(
    key: FlowKey, source_side: Tuple[TrafficSelector, ...], destination_side: Tuple[TrafficSelector, ...]
) -> bool:
    """Whether a packet's source lies in ``source_side`` and its destination in ``destination_side``."""
    version, src, dst, protocol, sport, dport = key
    return _side_matches(source_side, version, int.from_bytes(src, "big"), protocol, sport) and _side_matches(
        destination_side, version, int.from_bytes(dst, "big"), protocol, dport
    )


class SelectorSet:
    """The local and remote traffic selectors of one Child SA."""

    __slots__ = ("_addresses_only", "_cache", "_cache_size", "local", "remote")

    def __init__(
        self,
        local: Iterable[TrafficSelector],
        remote: Iterable[TrafficSelector],
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        self.local = tuple(local)
        self.remote = tuple(remote)
        if not self.local or not self.remote:
            raise ValueError("a Child SA needs at least one local and one remote traffic selector")
        # subnet-to-subnet selectors (any protocol, any port): the addresses alone decide
        self._addresses_only = all(ts.protocol == 0 and ts.any_port for ts in self.local + self.remote)
        self._cache: Dict[object, bool] = {}
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return f"SelectorSet(local={list(self.local)!r}, remote={list(self.remote)!r})"

    def allows_outbound(self, key: FlowKey) -> bool:
        """Source in a local selector and destination in a remote one."""
        return key_matches(key, self.local, self.remote)

    def allows_inbound(self, packet: bytes) -> bool:
        """RFC 4301 §5.2 step 4: a decrypted packet must match the SA's selectors (reversed).

        Verdicts are cached per flow; a packet whose header cannot be parsed is refused and
        never cached.
        """
        cache = self._cache
        if self._addresses_only:
            cache_key: object = address_key(packet)
            verdict = cache.get(cache_key)
            if verdict is not None:
                return verdict
            key = flow_key(packet)
        else:
            key = cache_key = flow_key(packet)
            if key is None:
                return False
            verdict = cache.get(key)
            if verdict is not None:
                return verdict
        if key is None:
            return False
        verdict = key_matches(key, self.remote, self.local)
        if len(cache) >= self._cache_size:
            cache.clear()
        cache[cache_key] = verdict
        return verdict
