"""COOKIE (RFC 7296 §2.6) and limits on half-open IKE SAs: the responder's flood protection.

Sans-I/O: the caller passes ``now`` and injects the randomness for secrets.

:class:`CookieJar` makes stateless cookies, ``<VersionIDofSecret> | Hash(Ni | IPi | SPIi |
<secret>)`` as §2.6 suggests; the hash is HMAC-SHA-256 keyed with the secret over a 2-octet
length of Ni, Ni, the packed initiator address and SPIi (lengths make the input unambiguous).
The secret is replaced every ``lifetime`` seconds; cookies made with the previous secret stay
valid ``grace`` seconds after its replacement, so an initiator that got its cookie just before a
rotation still gets in.  The jar holds two secrets, whatever the load.

:class:`HalfOpenGuard` counts half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet received)
per peer address and in total.  Cookies are demanded once the total reaches ``cookie_threshold``
or one address holds ``cookie_threshold_per_ip``; requests are dropped outright at the hard
limits ``max_per_ip`` and ``max_total`` (strongSwan's cookie_threshold, cookie_threshold_ip,
block_threshold and init_limit_half_open).

Memory under a flood: the guard keeps a counter only for addresses that currently own a half-open
SA, and deletes it when the count returns to zero, so its size is at most ``max_total`` entries.
Spoofed sources never see our cookie, so once cookies are demanded they create neither an SA nor
any guard state: the answer N(COOKIE) is computed from the request and sent without remembering
anything.  The engine keeps this bounded by (1) checking the guard and the cookie right after
the syntax check of IKE_SA_INIT, before policy lookup, proposal selection and any key exchange;
(2) calling :meth:`HalfOpenGuard.opened` exactly when it stores a half-open SA and
:meth:`HalfOpenGuard.closed` exactly when that SA leaves the half-open table (IKE_AUTH request
received, SA dropped, half-open timeout); (3) expiring half-open SAs after a fixed time.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from typing import Callable, Dict, Optional, Union

COOKIE_VERSION_LEN = 4
COOKIE_HASH_LEN = 32
COOKIE_LEN = COOKIE_VERSION_LEN + COOKIE_HASH_LEN  # 36 octets; §3.10.1 allows 1..64
SECRET_LEN = 32
SECRET_LIFETIME = 60.0
SECRET_GRACE = 30.0

Address = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]


def _packed(ip: Address) -> bytes:
    """The address as octets: 4 for IPv4, 16 for IPv6 (IPv4-mapped IPv6 reduced to IPv4)."""
    if isinstance(ip, (bytes, bytearray)):
        if len(ip) not in (4, 16):
            raise ValueError("an IP address is 4 or 16 octets, not %d" % len(ip))
        ip = ipaddress.ip_address(bytes(ip))
    elif isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.packed


def address_key(ip: Address) -> str:
    """Canonical text of an address, so '2001:DB8::1' and '2001:db8::1' count as one peer."""
    return str(ipaddress.ip_address(_packed(ip)))


class _Secret:
    __slots__ = ("retired_at", "secret", "version")

    def __init__(self, version: int, secret: bytes) -> None:
        self.version = version
        self.secret = secret
        self.retired_at: Optional[float] = None


class CookieJar:
    """Stateless COOKIE values (RFC 7296 §2.6) with a rotating secret.

    ``secret_source(n)`` returns n random octets (``os.urandom`` in the daemon); ``now`` is the
    time the first secret is taken.
    """

    def __init__(
        self,
        secret_source: Callable[[int], bytes],
        now: float,
        lifetime: float = SECRET_LIFETIME,
        grace: float = SECRET_GRACE,
    ) -> None:
        if lifetime <= 0:
            raise ValueError("the secret lifetime must be positive")
        if not 0 <= grace <= lifetime:
            raise ValueError("the grace period must lie between 0 and the secret lifetime")
        self._source = secret_source
        self.lifetime = lifetime
        self.grace = grace
        version = struct.unpack("!I", self._random(COOKIE_VERSION_LEN))[0]
        self._current = _Secret(version, self._random(SECRET_LEN))
        self._previous: Optional[_Secret] = None
        self._since = now

    def _random(self, size: int) -> bytes:
        value = bytes(self._source(size))
        if len(value) != size:
            raise ValueError("the secret source returned %d octets instead of %d" % (len(value), size))
        return value

    def _rotate(self, now: float) -> None:
        if now < self._since + self.lifetime:
            return
        periods = int((now - self._since) // self.lifetime)
        retired_at = self._since + self.lifetime
        self._previous = self._current if periods == 1 else None  # older ones made no live cookie
        if self._previous is not None:
            self._previous.retired_at = retired_at
        version = (self._current.version + periods) & 0xFFFFFFFF
        self._current = _Secret(version, self._random(SECRET_LEN))
        self._since += periods * self.lifetime

    @staticmethod
    def _digest(secret: bytes, ni: bytes, ip: Address, spi_i: bytes) -> bytes:
        data = struct.pack("!H", len(ni)) + bytes(ni) + _packed(ip) + bytes(spi_i)
        return hmac.new(secret, data, hashlib.sha256).digest()

    def make(self, ni: bytes, ip: Address, spi_i: bytes, now: float) -> bytes:
        """The cookie to send in N(COOKIE) to the initiator at ``ip`` with nonce Ni and SPIi."""
        self._rotate(now)
        secret = self._current
        return struct.pack("!I", secret.version) + self._digest(secret.secret, ni, ip, spi_i)

    def check(self, cookie: bytes, ni: bytes, ip: Address, spi_i: bytes, now: float) -> bool:
        """Whether ``cookie`` was made by :meth:`make` for these values under a live secret."""
        self._rotate(now)
        cookie = bytes(cookie)
        if len(cookie) != COOKIE_LEN:
            return False
        version = struct.unpack("!I", cookie[:COOKIE_VERSION_LEN])[0]
        secret = None
        if version == self._current.version:
            secret = self._current
        elif (
            self._previous is not None
            and version == self._previous.version
            and self._previous.retired_at is not None
            and now < self._previous.retired_at + self.grace
        ):
            secret = self._previous
        if secret is None:
            return False
        try:
            expected = self._digest(secret.secret, ni, ip, spi_i)
        except ValueError:
            return False
        return hmac.compare_digest(expected, cookie[COOKIE_VERSION_LEN:])

    def __repr__(self) -> str:
        return "CookieJar(version=%d)" % self._current.version


# Decisions of HalfOpenGuard.admit
ACCEPT = "accept"
COOKIE = "cookie"
DROP = "drop"


class HalfOpenGuard:
    """Counts half-open IKE SAs per peer address and in total; decides accept / cookie / drop.

    ``cookie_threshold``: demand cookies from everyone once this many SAs are half-open.
    ``cookie_threshold_per_ip``: demand them from an address once it holds this many.
    ``max_per_ip`` / ``max_total``: hard limits -- requests beyond them are dropped, even with a
    valid cookie (a cookie proves the address, not good intentions).
    """

    def __init__(
        self,
        cookie_threshold: int = 10,
        cookie_threshold_per_ip: int = 3,
        max_per_ip: int = 5,
        max_total: int = 1000,
    ) -> None:
        if min(cookie_threshold, cookie_threshold_per_ip, max_per_ip, max_total) < 0:
            raise ValueError("half-open thresholds cannot be negative")
        self.cookie_threshold = cookie_threshold
        self.cookie_threshold_per_ip = cookie_threshold_per_ip
        self.max_per_ip = max_per_ip
        self.max_total = max_total
        self.total = 0
        self.peak = 0  # the most half-open SAs held at once, for `stats`
        self._per_ip: Dict[str, int] = {}

    def count(self, ip: Address) -> int:
        return self._per_ip.get(address_key(ip), 0)

    @property
    def tracked_addresses(self) -> int:
        """Addresses with state: exactly those owning at least one half-open SA."""
        return len(self._per_ip)

    def allowed(self, ip: Address) -> bool:
        """False once a hard limit is reached: drop the request without an answer."""
        return self.total < self.max_total and self.count(ip) < self.max_per_ip

    def require_cookie(self, ip: Address) -> bool:
        return self.total >= self.cookie_threshold or self.count(ip) >= self.cookie_threshold_per_ip

    def admit(self, ip: Address, has_valid_cookie: Callable[[], bool]) -> str:
        """DROP, COOKIE (answer N(COOKIE) statelessly) or ACCEPT for an IKE_SA_INIT from ``ip``.

        ``has_valid_cookie`` is only called when a cookie is required (it costs an HMAC).
        """
        if not self.allowed(ip):
            return DROP
        if self.require_cookie(ip) and not has_valid_cookie():
            return COOKIE
        return ACCEPT

    def opened(self, ip: Address) -> None:
        """A half-open SA for ``ip`` was stored (after ``admit`` said ACCEPT)."""
        key = address_key(ip)
        self._per_ip[key] = self._per_ip.get(key, 0) + 1
        self.total += 1
        self.peak = max(self.peak, self.total)

    def closed(self, ip: Address) -> bool:
        """That SA completed IKE_AUTH, failed or timed out; False if ``ip`` had none (a caller bug)."""
        key = address_key(ip)
        held = self._per_ip.get(key, 0)
        if held <= 0:
            return False
        if held == 1:
            del self._per_ip[key]
        else:
            self._per_ip[key] = held - 1
        self.total -= 1
        return True

    def describe(self) -> Dict[str, int]:
        """Current and peak half-open SAs, tracked addresses and the limits (for the daemon's `stats`)."""
        return {
            "current": self.total,
            "peak": self.peak,
            "addresses": len(self._per_ip),
            "cookie_threshold": self.cookie_threshold,
            "cookie_threshold_per_ip": self.cookie_threshold_per_ip,
            "max_per_ip": self.max_per_ip,
            "max_total": self.max_total,
        }

    def __repr__(self) -> str:
        return "HalfOpenGuard(%d half-open from %d addresses)" % (self.total, len(self._per_ip))
