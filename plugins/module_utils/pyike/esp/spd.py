"""Security Policy Database for outbound packets (RFC 4301 §4.4.1).

Each :class:`Policy` protects the traffic between its local and remote selectors with its
current outbound SA. The SPD flattens every policy into one entry per (local, remote) selector
pair and searches the entries in this order (first match wins):

1. lower ``priority`` value first (an explicit override, default 0);
2. then the most specific pair: smaller remote address range, then smaller local address range,
   then a specific IP protocol before "any", then smaller remote and local port ranges;
3. then a policy with an SA before a trap of the same selectors;
4. then the order in which policies were added.

Packets that match no entry are discarded (RFC 4301 §5.1 default) and counted. A trap is a policy
without an SA that calls for one (RFC 4301 §4.4.1: PROTECT, and §5.1: no SA yet, so key management
is invoked): a packet that matches it goes to its ``acquire`` callback instead of being counted as
dropped, and the callback starts IKE (and may hold the packet). Lookups are
cached per flow (version, addresses, protocol, and ports only when some selector restricts
ports); the cache is bounded and rebuilt whenever the policy set changes. The cache holds
policies, not SAs, so switching a policy to a new SA (make-before-break rekey) needs no flush.
Changes publish a new immutable table in one assignment, so a reader never sees a half update.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, Iterable, List, Optional, Tuple

from ..selectors import TrafficSelector
from .counters import SpdDrops
from .inner import address_key, flow_key

if TYPE_CHECKING:
    from .sa import OutboundSA

DEFAULT_CACHE_SIZE = 4096
_MISSING = object()  # cache miss; None is a cached "no policy"

_Entry = Tuple[TrafficSelector, TrafficSelector, "Policy"]


Acquire = Callable[["Policy", memoryview], None]


class Policy:
    """Traffic from ``local`` to ``remote`` selectors goes out through ``sa`` (None: not yet up).

    ``acquire`` makes it a trap: called with the policy and each packet that matches it while it has
    no SA (the packet is a view of a reused buffer: copy it to keep it)."""

    __slots__ = ("acquire", "local", "name", "priority", "remote", "sa")

    def __init__(
        self,
        name: str,
        local: Iterable[TrafficSelector],
        remote: Iterable[TrafficSelector],
        sa: Optional[OutboundSA] = None,
        priority: int = 0,
        acquire: Optional[Acquire] = None,
    ):
        self.name = name
        self.local = tuple(local)
        self.remote = tuple(remote)
        if not self.local or not self.remote:
            raise ValueError(f"policy {name!r}: needs at least one local and one remote traffic selector")
        self.sa = sa
        self.priority = priority
        self.acquire = acquire

    def __repr__(self) -> str:
        return f"<Policy {self.name!r} priority={self.priority} sa={self.sa!r}>"


class _Table:
    __slots__ = ("addresses_only", "cache", "cache_size", "entries", "uses_ports")

    def __init__(self, entries: List[_Entry], cache_size: int):
        self.entries = tuple(entries)
        self.uses_ports = any(not (lo.any_port and re.any_port) for lo, re, _policy in entries)
        self.addresses_only = not self.uses_ports and not any(
            lo.protocol or re.protocol for lo, re, _policy in entries
        )
        self.cache: Dict[tuple, Optional[Policy]] = {}
        self.cache_size = cache_size


def _address_span(ts: TrafficSelector) -> int:
    return ts.end - ts.start + 1


def _port_span(ts: TrafficSelector) -> int:
    return max(ts.end_port - ts.start_port + 1, 0)  # OPAQUE (65535-0): 0, below every real range


def _specificity(entry: _Entry, order: int) -> tuple:
    local, remote, policy = entry
    return (
        policy.priority,
        _address_span(remote),
        _address_span(local),
        0 if (local.protocol or remote.protocol) else 1,
        _port_span(remote),
        _port_span(local),
        policy.acquire is not None,  # a trap yields to an SA policy of the same selectors
        order,
    )


class SPD:
    """The outbound policies of a gateway, searched most specific first."""

    __slots__ = ("_cache_size", "_policies", "_table", "drops")

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE):
        self._cache_size = cache_size
        self._policies: Dict[str, Policy] = {}
        self._table = _Table([], cache_size)
        self.drops = SpdDrops()

    def __len__(self) -> int:
        return len(self._policies)

    def __repr__(self) -> str:
        return f"<SPD policies={len(self._policies)} drops={self.drops!r}>"

    @property
    def policies(self) -> Tuple[Policy, ...]:
        """Policies in the order they were added."""
        return tuple(self._policies.values())

    def get(self, name: str) -> Optional[Policy]:
        return self._policies.get(name)

    def add(self, policy: Policy) -> None:
        if policy.name in self._policies:
            raise ValueError(f"SPD: a policy named {policy.name!r} already exists")
        policies = dict(self._policies)
        policies[policy.name] = policy
        self._publish(policies)

    def remove(self, name: str) -> Optional[Policy]:
        if name not in self._policies:
            return None
        policies = dict(self._policies)
        removed = policies.pop(name)
        self._publish(policies)
        return removed

    def replace(self, policy: Policy) -> Optional[Policy]:
        """Install ``policy`` in place of the one of the same name (if any), in one step."""
        policies = dict(self._policies)
        previous = policies.get(policy.name)
        policies[policy.name] = policy
        self._publish(policies)
        return previous

    def switch_sa(self, name: str, sa: Optional[OutboundSA]) -> Optional[OutboundSA]:
        """Point policy ``name`` at a new outbound SA; returns the one it replaced."""
        policy = self._policies.get(name)
        if policy is None:
            raise KeyError(f"SPD: no policy named {name!r}")
        previous, policy.sa = policy.sa, sa
        return previous

    def _publish(self, policies: Dict[str, Policy]) -> None:
        pairs = [(lo, re, p) for p in policies.values() for lo in p.local for re in p.remote]
        ranked = sorted(enumerate(pairs), key=lambda item: _specificity(item[1], item[0]))
        table = _Table([entry for _rank, entry in ranked], self._cache_size)
        self._policies = policies
        self._table = table

    def lookup_policy(self, packet: bytes) -> Optional[Policy]:
        """The first policy whose selectors match an outbound inner packet, or None (counted)."""
        table = self._table
        cache = table.cache
        if table.addresses_only:
            cache_key: object = address_key(packet)
            policy = cache.get(cache_key, _MISSING)
            if policy is _MISSING:
                key = flow_key(packet)
        else:
            key = flow_key(packet)
            if key is None:
                self.drops.bad_inner += 1
                return None
            cache_key = key if table.uses_ports else key[:4]
            policy = cache.get(cache_key, _MISSING)
        if policy is _MISSING:
            if key is None:
                self.drops.bad_inner += 1
                return None
            policy = self._search(table, key)
            if len(cache) >= table.cache_size:
                cache.clear()
            cache[cache_key] = policy
        if policy is None:
            self.drops.no_policy += 1
        return policy  # type: ignore[return-value]

    def lookup(self, packet: bytes) -> Optional[OutboundSA]:
        """The outbound SA for an inner packet, or None when it must be dropped (counted)."""
        policy = self.lookup_policy(packet)
        if policy is None:
            return None
        sa = policy.sa
        if sa is None:
            if policy.acquire is not None:
                policy.acquire(policy, packet)
            else:
                self.drops.no_sa += 1
        return sa

    @staticmethod
    def _search(table: _Table, key) -> Optional[Policy]:
        version, src, dst, protocol, sport, dport = key
        src_int = int.from_bytes(src, "big")
        dst_int = int.from_bytes(dst, "big")
        for local, remote, policy in table.entries:
            if local.covers(version, src_int, protocol, sport) and remote.covers(
                version, dst_int, protocol, dport
            ):
                return policy
        return None
