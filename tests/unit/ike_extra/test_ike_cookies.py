"""COOKIE (RFC 7296 §2.6) and half-open limits: CookieJar, HalfOpenGuard, a flood of spoofed sources."""

from __future__ import annotations

import gc
import hashlib
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.ike.cookies import ACCEPT, COOKIE, COOKIE_LEN, DROP, CookieJar, HalfOpenGuard, address_key

NI = bytes(range(32))
SPI = bytes.fromhex("a1a2a3a4a5a6a7a8")
IP = "192.0.2.7"


def counter_source():
    """Deterministic 'randomness': distinct octets on every call."""
    counter = itertools.count()

    def source(size):
        seed = next(counter).to_bytes(8, "big")
        return hashlib.sha256(seed).digest()[:size].ljust(size, b"\0")

    return source


def jar(now=0.0, **kw):
    return CookieJar(counter_source(), now, **kw)


def test_make_and_check():
    cookies = jar()
    cookie = cookies.make(NI, IP, SPI, 1.0)
    assert len(cookie) == COOKIE_LEN <= 64
    assert cookies.check(cookie, NI, IP, SPI, 2.0)
    assert cookie == cookies.make(NI, IP, SPI, 3.0)  # stateless: same inputs, same cookie


@settings(max_examples=50, deadline=None)
@given(
    ni=st.binary(min_size=16, max_size=256), spi=st.binary(min_size=8, max_size=8), flip=st.integers(0, 35)
)
def test_wrong_inputs_are_rejected(ni, spi, flip):
    cookies = jar()
    cookie = cookies.make(ni, IP, spi, 0.0)
    assert cookies.check(cookie, ni, IP, spi, 0.0)
    assert not cookies.check(cookie, ni + b"x", IP, spi, 0.0)
    assert not cookies.check(cookie, ni[:-1], IP, spi, 0.0)
    assert not cookies.check(cookie, ni, "192.0.2.8", spi, 0.0)
    assert not cookies.check(cookie, ni, "2001:db8::7", spi, 0.0)
    assert not cookies.check(cookie, ni, IP, bytes(8) if spi != bytes(8) else b"\1" * 8, 0.0)
    tampered = bytearray(cookie)
    tampered[flip] ^= 0x01
    assert not cookies.check(bytes(tampered), ni, IP, spi, 0.0)
    assert not cookies.check(cookie[:-1], ni, IP, spi, 0.0)
    assert not cookies.check(cookie + b"\0", ni, IP, spi, 0.0)
    assert not cookies.check(b"", ni, IP, spi, 0.0)


def test_another_jar_does_not_accept_our_cookies():
    ours, theirs = jar(), CookieJar(bytes, 0.0)
    assert not theirs.check(ours.make(NI, IP, SPI, 0.0), NI, IP, SPI, 0.0)


def test_address_forms_are_one_peer():
    cookies = jar()
    cookie = cookies.make(NI, "2001:DB8::1", SPI, 0.0)
    assert cookies.check(cookie, NI, "2001:db8:0::1", SPI, 0.0)
    mapped = cookies.make(NI, "::ffff:192.0.2.7", SPI, 0.0)
    assert cookies.check(mapped, NI, IP, SPI, 0.0)
    assert cookies.check(mapped, NI, bytes([192, 0, 2, 7]), SPI, 0.0)
    assert address_key("2001:DB8:0::1") == "2001:db8::1"
    assert not cookies.check(cookie, NI, "not an address", SPI, 0.0)
    with pytest.raises(ValueError):
        cookies.make(NI, b"\1\2\3", SPI, 0.0)


def test_rotation_with_grace_period():
    cookies = jar(now=100.0, lifetime=60.0, grace=30.0)
    old = cookies.make(NI, IP, SPI, 159.0)
    new = cookies.make(NI, IP, SPI, 160.0)  # the secret rotated at 160
    assert old != new and old[:4] != new[:4]
    assert int.from_bytes(new[:4], "big") == (int.from_bytes(old[:4], "big") + 1) & 0xFFFFFFFF
    assert cookies.check(old, NI, IP, SPI, 160.0)
    assert cookies.check(old, NI, IP, SPI, 189.9)  # grace: 30 s after its retirement
    assert not cookies.check(old, NI, IP, SPI, 190.0)
    assert cookies.check(new, NI, IP, SPI, 190.0)
    assert cookies.check(new, NI, IP, SPI, 219.9)  # rotated out at 220, grace until 250
    assert cookies.check(new, NI, IP, SPI, 249.0)
    assert not cookies.check(new, NI, IP, SPI, 250.0)


def test_a_long_silence_invalidates_everything_old():
    cookies = jar(lifetime=60.0, grace=30.0)
    old = cookies.make(NI, IP, SPI, 10.0)
    assert not cookies.check(old, NI, IP, SPI, 125.0)  # two rotations since: no grace left
    fresh = cookies.make(NI, IP, SPI, 125.0)
    assert cookies.check(fresh, NI, IP, SPI, 130.0)


def test_version_wraps_and_bad_parameters():
    cookies = CookieJar(lambda n: b"\xff" * n, 0.0, lifetime=1.0, grace=0.5)
    first = cookies.make(NI, IP, SPI, 0.0)
    assert first[:4] == b"\xff" * 4
    assert cookies.make(NI, IP, SPI, 1.0)[:4] == bytes(4)
    with pytest.raises(ValueError):
        CookieJar(counter_source(), 0.0, lifetime=10.0, grace=20.0)
    with pytest.raises(ValueError):
        CookieJar(counter_source(), 0.0, lifetime=0.0)
    with pytest.raises(ValueError):
        CookieJar(lambda n: b"short", 0.0)


def test_jar_state_does_not_grow():
    cookies = jar()
    for n in range(2000):
        cookies.check(cookies.make(n.to_bytes(32, "big"), IP, SPI, n * 0.1), NI, IP, SPI, n * 0.1)
    assert set(vars(cookies)) == {"_source", "lifetime", "grace", "_current", "_previous", "_since"}


# --- HalfOpenGuard ----------------------------------------------------------------------------


def test_guard_cookie_thresholds():
    guard = HalfOpenGuard(cookie_threshold=4, cookie_threshold_per_ip=2, max_per_ip=3, max_total=6)
    assert not guard.require_cookie("10.0.0.1")
    guard.opened("10.0.0.1")
    assert not guard.require_cookie("10.0.0.1")
    guard.opened("10.0.0.1")
    assert guard.require_cookie("10.0.0.1")  # per address
    assert not guard.require_cookie("10.0.0.2")
    guard.opened("10.0.0.2")
    guard.opened("10.0.0.3")
    assert guard.total == 4
    assert guard.require_cookie("10.0.0.9")  # global
    guard.closed("10.0.0.3")
    assert not guard.require_cookie("10.0.0.9")


def test_guard_hard_limits_and_admit():
    guard = HalfOpenGuard(cookie_threshold=1, cookie_threshold_per_ip=1, max_per_ip=2, max_total=3)
    calls = []

    def valid():
        calls.append(1)
        return True

    assert guard.admit("10.0.0.1", valid) == ACCEPT and calls == []  # no cookie needed yet
    guard.opened("10.0.0.1")
    assert guard.admit("10.0.0.1", lambda: False) == COOKIE
    assert guard.admit("10.0.0.1", valid) == ACCEPT and calls == [1]
    guard.opened("10.0.0.1")
    assert not guard.allowed("10.0.0.1")
    assert guard.admit("10.0.0.1", valid) == DROP  # even with a cookie
    assert guard.admit("10.0.0.2", valid) == ACCEPT
    guard.opened("10.0.0.2")
    assert guard.admit("10.0.0.3", valid) == DROP  # global limit
    assert guard.closed("10.0.0.1") and guard.admit("10.0.0.3", valid) == ACCEPT


def test_guard_counts_and_forgets():
    guard = HalfOpenGuard()
    guard.opened("2001:DB8::1")
    guard.opened("2001:db8::1")
    assert guard.count("2001:db8:0:0::1") == 2 and guard.tracked_addresses == 1
    assert guard.closed("2001:db8::1") and guard.closed("2001:db8::1")
    assert not guard.closed("2001:db8::1")  # a double close is reported, not counted below zero
    assert guard.total == 0 and guard.tracked_addresses == 0
    with pytest.raises(ValueError):
        HalfOpenGuard(max_total=-1)


class Responder:
    """What the engine does with IKE_SA_INIT requests: guard, cookie, half-open table."""

    def __init__(self, guard, cookies):
        self.guard, self.cookies = guard, cookies
        self.half_open = {}  # (spi_i, ip) -> created_at
        self.sent_cookies = 0
        self.dropped = 0

    def init_request(self, ip, spi_i, ni, cookie, now):
        decision = self.guard.admit(
            ip, lambda: cookie is not None and self.cookies.check(cookie, ni, ip, spi_i, now)
        )
        if decision == DROP:
            self.dropped += 1
            return None
        if decision == COOKIE:
            self.sent_cookies += 1
            return self.cookies.make(ni, ip, spi_i, now)
        self.half_open[(spi_i, ip)] = now
        self.guard.opened(ip)
        return b""

    def expire(self, now, timeout=30.0):
        for key, created in list(self.half_open.items()):
            if now >= created + timeout:
                del self.half_open[key]
                assert self.guard.closed(key[1])


def test_flood_of_10000_spoofed_sources_stays_bounded_and_a_real_peer_gets_in():
    guard = HalfOpenGuard(cookie_threshold=10, cookie_threshold_per_ip=3, max_per_ip=5, max_total=1000)
    responder = Responder(guard, jar())
    rng = random.Random(3)
    gc.collect()
    before = len(gc.get_objects())
    for n in range(10_000):
        ip = "10.%d.%d.%d" % (n >> 16, (n >> 8) & 0xFF, n & 0xFF)
        now = n * 0.001  # 10 s of flood
        spi = rng.getrandbits(64).to_bytes(8, "big")
        responder.init_request(ip, spi, rng.getrandbits(256).to_bytes(32, "big"), None, now)
        # spoofed: the answer goes nowhere, so no retry with a cookie ever comes back
    gc.collect()
    grown = len(gc.get_objects()) - before
    assert len(responder.half_open) == guard.total == guard.tracked_addresses == 10
    assert responder.sent_cookies == 9_990 and responder.dropped == 0
    assert grown < 200, "the flood left %d objects behind" % grown
    # a legitimate peer: first refused with a cookie, gets in with it
    spi, ni, peer = b"\x42" * 8, NI, "198.51.100.1"
    cookie = responder.init_request(peer, spi, ni, None, 10.0)
    assert cookie and len(cookie) == COOKIE_LEN
    assert responder.init_request(peer, spi, ni, cookie, 10.2) == b""
    assert guard.count(peer) == 1
    # the half-open SAs time out; the guard forgets every address
    responder.expire(100.0)
    assert guard.total == 0 and guard.tracked_addresses == 0


def test_flood_from_real_addresses_with_cookies_hits_the_hard_limit():
    guard = HalfOpenGuard(cookie_threshold=10, cookie_threshold_per_ip=3, max_per_ip=5, max_total=200)
    responder = Responder(guard, jar())
    for n in range(10_000):
        ip = "fd00::%x" % n
        spi = n.to_bytes(8, "big")
        cookie = responder.init_request(ip, spi, NI, None, 1.0)
        if cookie:
            responder.init_request(ip, spi, NI, cookie, 1.0)  # an attacker who owns its addresses
    assert len(responder.half_open) == guard.total == guard.tracked_addresses == 200
    assert responder.dropped == 10_000 - 200
