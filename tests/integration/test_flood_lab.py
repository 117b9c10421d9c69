"""A spoofed IKE_SA_INIT flood against the pyike daemon in the lab (RFC 7296 §2.6 COOKIE, half-open limits).

gw1 runs pyike as a responder that accepts any peer address, the natural flood target; gw2 runs a pyike
initiator with a real connection to it. The internet host sends 10,000 IKE_SA_INIT requests from random
addresses of 198.51.100.128/25 and 203.0.113.128/25 through a raw socket (pyike_lab.flood); the router
blackholes those ranges, so the daemon's answers go nowhere, as they would for a spoofing attacker.

Checked from outside the daemon: its resident memory stays within RSS_BOUND_MIB of what it was before the
flood, its half-open SAs never exceed the guard's cookie threshold (plus the one real peer), it answered
the flood with COOKIE notifies, and gw2 still gets an IKE SA, through a cookie, while the flood runs, with
traffic across the tunnel.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from pings import assert_replies
from pyike_lab.lab import nsenter_argv, wait_for
from pyike_lab.pyike import HOST_PYTHON, MODULE_UTILS
from test_pyike_tunnels import LEFT, PSK, RIGHT, pyike_config, start_pyike

pytestmark = pytest.mark.root

SPOOFED = ("198.51.100.128/25", "203.0.113.128/25")  # inside the peer sites' WAN subnets, held by no host
FLOOD = 10_000
RATE = 2_000  # requests per second: the flood lasts about 5 s, so the real peer comes in during it
# Memory bound: a responder that kept per-request state would grow by far more. One half-open IKE SA costs
# about 4.9 KB of Python objects (tracemalloc, in-process), so 10,000 kept would add ~47 MiB, and even 1 KB
# kept per request ~10 MiB; the stateless cookie path measured +0.1..0.2 MiB here (bench/ike_flood.py).
# 8 MiB leaves room for allocator noise and the one real IKE SA and Child SA set up during the flood.
RSS_BOUND_MIB = 8


def ike_in(daemon):
    return daemon.stats()["dataplane"]["io"]["ike_in"]


def test_spoofed_ike_sa_init_flood_keeps_the_responder_bounded_and_lets_a_real_peer_in(lab, daemons):
    for network in SPOOFED:
        lab.run_in("internet", ["ip", "route", "add", "blackhole", network])
    config = pyike_config(LEFT, RIGHT)
    config["connections"]["s2s"]["remote"]["address"] = "%any"  # responder only: any source may try
    responder = start_pyike(lab, daemons, "gw1", config)
    initiator = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    memory_before = responder.process()["rss_kib"]
    stats_before = responder.stats()
    handled_before = stats_before["dataplane"]["io"]["ike_in"]
    limits = stats_before["half_open"]
    assert limits["current"] == 0 and limits["cookie_threshold"] < limits["max_total"]

    flooder = subprocess.Popen(
        nsenter_argv(
            lab.pid_of("internet"),
            ["env", "PYTHONPATH=" + MODULE_UTILS, HOST_PYTHON, "-m", "pyike_lab.flood", "--target",
             LEFT["addr"], "--count", str(FLOOD), "--sources", ",".join(SPOOFED), "--rate", str(RATE)],
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # Once the spoofed half-open SAs reach the threshold the responder demands cookies from everyone.
        assert wait_for(lambda: responder.stats()["ike"].get("cookies_sent", 0) > 0, 15)
        assert flooder.poll() is None, "the flood ended before the real peer tried: nothing was tested"
        assert "initiate completed successfully" in initiator.ctl("initiate", "s2s")
        during = responder.stats()
        out, err = flooder.communicate(timeout=60)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.wait()
    assert flooder.returncode == 0, err
    sent = json.loads(out.strip().splitlines()[-1])
    assert sent["sent"] == FLOOD and sent["errors"] == 0, sent
    assert during["ike"].get("cookies_accepted", 0) >= 1  # the real peer came back with its cookie

    # Let the daemon work through what is still queued on its socket.
    previous = [-1]
    assert wait_for(lambda: _settled(responder, previous), 20, step=0.5)
    out = lab.run_in("c1", ["ping", "-c", "5", "-i", "0.2", "-w", "10", "10.2.0.10"])
    assert_replies(out, 5)

    stats = responder.stats()
    memory_after = responder.process()["rss_kib"]
    handled = stats["dataplane"]["io"]["ike_in"] - handled_before
    cookies = stats["ike"].get("cookies_sent", 0)
    half_open = stats["half_open"]
    # Most of the flood reached the daemon (the socket buffer may drop some on a busy machine) ...
    assert handled >= FLOOD * 0.9, (handled, sent)
    # ... and everything beyond the first threshold-many spoofed requests got a stateless COOKIE answer.
    assert cookies >= handled - half_open["cookie_threshold"] - 20, (cookies, handled)
    assert half_open["peak"] <= half_open["cookie_threshold"] + 1, half_open  # + the real peer's
    assert half_open["current"] <= half_open["cookie_threshold"], half_open
    assert stats["ike"].get("half_open_dropped", 0) == 0  # the hard limits were never needed
    grown_mib = (memory_after - memory_before) / 1024.0
    assert grown_mib < RSS_BOUND_MIB, "RSS grew by %.1f MiB under the flood" % grown_mib
    (ike,) = [sa for sa in initiator.sas() if sa["state"] == "ESTABLISHED"]
    assert len(ike["children"]) == 1 and ike["children"][0]["packets_out"] >= 5
    log = responder.log()
    assert "Traceback" not in log and PSK not in log


def _settled(daemon, previous):
    """True once the daemon's IKE datagram count stopped moving between two polls."""
    handled = ike_in(daemon)
    settled = handled == previous[0]
    previous[0] = handled
    return settled
