"""runtime/resolver.py: look-ups off the event loop, bounded in time and threads; answers filtered.

The real getaddrinfo resolves "localhost" here; look-ups that block or fail are functions with
getaddrinfo's signature (the lab tests run the real C library against a silent and a hostile DNS).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time

import pytest
from pyike.runtime.resolver import (
    MAX_ADDRESSES,
    LookupStuck,
    LookupThreads,
    PeerNames,
    ResolveError,
    Resolver,
    usable_addresses,
)


def info(address, family=socket.AF_INET):
    return (
        family,
        socket.SOCK_DGRAM,
        17,
        "",
        (address, 0) if family == socket.AF_INET else (address, 0, 0, 0),
    )


def test_the_real_getaddrinfo_resolves_localhost_and_loopback_is_refused_unless_we_are_local():
    assert asyncio.run(Resolver().resolve("localhost", 4, allow_loopback=True)) == ["127.0.0.1"]
    with pytest.raises(ResolveError, match=r"no usable IPv4 address \(refused: 127\.0\.0\.1\)"):
        asyncio.run(Resolver().resolve("localhost", 4))


def test_an_unknown_name_gives_the_c_librarys_reason():
    with pytest.raises(ResolveError) as caught:
        asyncio.run(Resolver().resolve("no-such-host.invalid", 4))
    assert str(caught.value) and "Traceback" not in str(caught.value)


def test_hostile_answers_are_filtered_and_capped():
    infos = [
        info("0.0.0.0"),
        info("224.0.0.1"),
        info("255.255.255.255"),
        info("127.0.0.1"),
        info("169.254.1.1"),
        info("fe80::1%eth0", socket.AF_INET6),
        info("2001:db8::1", socket.AF_INET6),
        info("198.51.100.1"),
        info("198.51.100.1"),
        *[info("203.0.113.%d" % n) for n in range(1, 20)],
        ("garbage",),
    ]
    usable, refused = usable_addresses(infos, 4, allow_loopback=False)
    assert usable == ["198.51.100.1"] + ["203.0.113.%d" % n for n in range(1, MAX_ADDRESSES)]
    assert refused == ["0.0.0.0", "224.0.0.1", "255.255.255.255", "127.0.0.1", "169.254.1.1"]
    usable6, refused6 = usable_addresses(infos, 6, allow_loopback=False)
    assert (usable6, refused6) == (["2001:db8::1"], ["fe80::1"])


def test_a_blocked_look_up_costs_its_deadline_and_one_thread_never_the_loop():
    release = threading.Event()
    calls = []

    def blocked(name, *_args):
        calls.append(name)
        release.wait(10)
        return [info("198.51.100.1")]

    resolver = Resolver(timeout=0.2, lookup=blocked)

    async def scenario():
        ticks = []

        async def ticker():  # the loop keeps running while the look-up blocks
            for _tick in range(10):
                ticks.append(time.monotonic())
                await asyncio.sleep(0.02)

        started = time.monotonic()
        tick = asyncio.ensure_future(ticker())
        with pytest.raises(ResolveError, match=r"no answer within 0\.2s"):
            await resolver.resolve("peer.test", 4)
        assert 0.15 < time.monotonic() - started < 1.0
        await tick
        assert max(b - a for a, b in zip(ticks, ticks[1:])) < 0.15
        with pytest.raises(LookupStuck, match="still waiting for the DNS"):
            await resolver.resolve("peer.test", 4)
        assert calls == ["peer.test"]  # no second thread for the same name
        release.set()
        for _wait in range(100):
            if not resolver._running:
                break
            await asyncio.sleep(0.01)
        assert await resolver.resolve("peer.test", 4) == ["198.51.100.1"]

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        resolver.close()


def test_concurrent_look_ups_of_one_name_share_one_thread():
    calls = []

    def slow(name, *_args):
        calls.append(name)
        time.sleep(0.1)
        return [info("198.51.100.7")]

    resolver = Resolver(lookup=slow)

    async def scenario():
        return await asyncio.gather(resolver.resolve("peer.test", 4), resolver.resolve("peer.test", 4))

    assert asyncio.run(scenario()) == [["198.51.100.7"], ["198.51.100.7"]]
    assert calls == ["peer.test"]
    resolver.close()


BLOCKED_AT_EXIT = """
import asyncio, time
from pyike.runtime.resolver import ResolveError, Resolver
resolver = Resolver(timeout=0.2, lookup=lambda *args: time.sleep(60))
try:
    asyncio.run(resolver.resolve("peer.test", 4))
except ResolveError as exc:
    print(exc)
resolver.close()
"""


def test_a_look_up_blocked_in_the_c_library_does_not_hold_up_the_exit():
    """The daemon stops while a look-up waits for a silent DNS (the C library may wait minutes)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", BLOCKED_AT_EXIT],
        env={"PYTHONPATH": ":".join(sys.path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout == "no answer within 0.2s\n", done
    assert time.monotonic() - started < 20, "the interpreter waited for the blocked look-up at exit"


def test_the_pool_runs_calls_on_at_most_its_size_of_threads_and_reuses_idle_ones():
    pool = LookupThreads(2)
    release = threading.Event()
    blocked = [pool.submit(release.wait, 10) for _call in range(3)]
    assert len(pool.threads) == 2 and not blocked[2].done()  # the third waits for a thread
    release.set()
    assert [f.result(5) for f in blocked] == [True, True, True]
    assert pool.submit(lambda: "later").result(5) == "later" and len(pool.threads) == 2
    failing = pool.submit(socket.getaddrinfo, "peer.test", None, 99)
    with pytest.raises(socket.gaierror):
        failing.result(5)
    pool.shutdown()
    for thread in pool.threads:
        thread.join(5)
        assert not thread.is_alive()


def test_peer_names_dedupe_initiations_and_rate_limit_refreshes():
    names = PeerNames()
    assert names.want("s2s", "net") and not names.want("s2s", "two")
    assert not names.refresh_due("s2s", 100.0)  # an initiation's look-up is under way
    assert names.take("s2s") == {"net", "two"} and names.take("s2s") == set()
    assert names.refresh_due("s2s", 100.0) and not names.refresh_due("s2s", 120.0)
    assert names.refresh_due("s2s", 100.0 + PeerNames.REFRESH_INTERVAL)
