"""Spoofed IKE_SA_INIT flood against the pyike daemon: flood rate, the daemon's CPU and RSS against idle.

One lab run: gw1 (192.0.2.1) runs pyike as a responder for any peer address, gw2 a pyike initiator, and
the internet host sends `--count` IKE_SA_INIT requests from random addresses of 198.51.100.128/25 and
203.0.113.128/25 (blackholed on the internet host, so no answer returns) with pyike_lab.flood. Figures:

* idle: the daemon's CPU use (fraction of one core) and RSS over `--idle` seconds, and the time of one
  legitimate IKE SA setup (gw2 -> gw1, initiate -> Child SA installed);
* flood: the flooder's send rate, the daemon's processing rate (IKE datagrams it handled per second),
  its CPU use and CPU time per request, RSS after the flood, and a legitimate setup started mid-flood
  (it has to go through a COOKIE round trip), each also as a ratio to idle.

    sudo PYTHONPATH=plugins/module_utils .venv/bin/python bench/ike_flood.py [--count 10000] [--rate 0]
        [--python /usr/bin/python3] [--idle 3]

Not a test: it asserts nothing. Everything shares the machine's CPUs; run it on an idle machine and
compare only figures of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "module_utils"))

from pyike.runtime.control import call
from pyike_lab.lab import Lab, nsenter_argv
from pyike_lab.plan import build_plan
from pyike_lab.pyike import CONTROL_SOCKET, HOST_PYTHON, MODULE_UTILS, PyikeDaemon, site_to_site

PSK = "bench-psk-not-secret"
LEFT = ("192.0.2.1", "gw1.example", "10.1.0.0/24")
RIGHT = ("198.51.100.1", "gw2.example", "10.2.0.0/24")
SPOOFED = ("198.51.100.128/25", "203.0.113.128/25")


def host_path(lab: Lab, host: str, path: str) -> str:
    return "/proc/%d/root%s" % (lab.pid_of(host), path)


def ike_in(socket_path: str) -> int:
    return call(socket_path, "stats")["dataplane"]["io"]["ike_in"]


def setup_time(lab: Lab) -> float:
    """gw2 initiates to gw1 (initiate returns once the Child SA is installed); then both forget it."""
    initiator = host_path(lab, "gw2", CONTROL_SOCKET)
    start = time.perf_counter()
    call(initiator, "initiate", {"conn": "s2s", "child": "net", "wait": 10}, timeout=15)
    elapsed = time.perf_counter() - start
    call(initiator, "terminate", {"conn": "s2s"})
    responder = host_path(lab, "gw1", CONTROL_SOCKET)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        sa["state"] == "ESTABLISHED" for sa in call(responder, "list-sas")
    ):  # half-open SAs of spoofed sources stay listed: only the real one must go
        time.sleep(0.02)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--count", type=int, default=10000, help="spoofed requests (default %(default)s)")
    parser.add_argument("--rate", type=float, default=0.0, help="flood pace in packets/s, 0 = unpaced")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle measurement")
    parser.add_argument("--python", default=HOST_PYTHON, help="interpreter for pyike (default %(default)s)")
    args = parser.parse_args()
    name = "b" + uuid.uuid4().hex[:8]
    lab = Lab(name)
    lab.up(build_plan(name, [{"name": "gw1", "site": 1}, {"name": "gw2", "site": 2}]))
    responder, initiator = PyikeDaemon(lab, "gw1", args.python), PyikeDaemon(lab, "gw2", args.python)
    try:
        for network in SPOOFED:
            lab.run_in("internet", ["ip", "route", "add", "blackhole", network])
        config = site_to_site("s2s", LEFT[0], RIGHT[0], LEFT[1], RIGHT[1], PSK, [LEFT[2]], [RIGHT[2]])
        config["connections"]["s2s"]["remote"]["address"] = "%any"  # a responder anybody may reach
        responder.start(config)
        initiator.start(site_to_site("s2s", RIGHT[0], LEFT[0], RIGHT[1], LEFT[1], PSK, [RIGHT[2]], [LEFT[2]]))
        control = host_path(lab, "gw1", CONTROL_SOCKET)

        idle_setup = min(setup_time(lab) for _run in range(3))
        before = responder.process()
        time.sleep(args.idle)
        idle = responder.process()
        idle_cpu = (idle["cpu_seconds"] - before["cpu_seconds"]) / args.idle

        stats_before, ike_before = call(control, "stats"), ike_in(control)
        argv = nsenter_argv(
            lab.pid_of("internet"),
            ["env", "PYTHONPATH=" + MODULE_UTILS, args.python, "-m", "pyike_lab.flood", "--target", LEFT[0],
             "--count", str(args.count), "--sources", ",".join(SPOOFED), "--rate", str(args.rate)],
        )  # fmt: skip
        flooder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        flood_setup = {}

        def legit_mid_flood() -> None:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not call(control, "stats")["ike"].get("cookies_sent"):
                time.sleep(0.02)
            flood_setup["seconds"] = setup_time(lab)

        legit = threading.Thread(target=legit_mid_flood)
        cpu_start, wall_start = responder.process()["cpu_seconds"], time.monotonic()
        legit.start()
        out, _err = flooder.communicate(timeout=300)
        sent = json.loads(out.strip().splitlines()[-1])
        handled, last_change = ike_in(control), time.monotonic()
        while time.monotonic() - last_change < 1.0:  # until the daemon has drained its socket
            time.sleep(0.01)
            now_handled = ike_in(control)
            if now_handled != handled:
                handled, last_change = now_handled, time.monotonic()
        wall = last_change - wall_start
        after = responder.process()
        legit.join(timeout=60)
        stats = call(control, "stats")
    finally:
        responder.stop()
        initiator.stop()
        lab.down()

    processed = handled - ike_before
    cpu = after["cpu_seconds"] - cpu_start
    cookies = stats["ike"].get("cookies_sent", 0) - stats_before["ike"].get("cookies_sent", 0)
    mib = 1024.0
    print("Spoofed IKE_SA_INIT flood: %d requests, pyike under %s" % (args.count, args.python))
    print("  load average before: %s" % " ".join("%.2f" % v for v in os.getloadavg()))
    print("  flooder            : sent %d in %.2f s = %.0f req/s (%d send errors)"
          % (sent["sent"], sent["seconds"], sent["rate"], sent["errors"]))  # fmt: skip
    print("  daemon handled     : %d IKE datagrams (%.1f%% of sent) in %.2f s = %.0f req/s"
          % (processed, 100.0 * processed / max(1, sent["sent"]), wall, processed / wall))  # fmt: skip
    print("  COOKIE answers     : %d; half-open peak %d (cookie threshold %d, hard limit %d)"
          % (cookies, stats["half_open"]["peak"], stats["half_open"]["cookie_threshold"],
             stats["half_open"]["max_total"]))  # fmt: skip
    busy = cpu / wall
    ratio = "%.0fx" % (busy / idle_cpu) if idle_cpu >= 0.001 else "n/a (idle below 0.001 of a core)"
    print("  CPU idle           : %.4f of a core" % idle_cpu)
    print("  CPU under flood    : %.2f of a core, %.0f us per request handled; ratio to idle %s"
          % (busy, 1e6 * cpu / max(1, processed), ratio))  # fmt: skip
    print("  RSS idle / after   : %.1f MiB / %.1f MiB, ratio %.3f, +%.1f MiB"
          % (idle["rss_kib"] / mib, after["rss_kib"] / mib, after["rss_kib"] / idle["rss_kib"],
             (after["rss_kib"] - idle["rss_kib"]) / mib))  # fmt: skip
    if "seconds" in flood_setup:
        print("  legit IKE setup    : idle %.1f ms, mid-flood %.1f ms (via COOKIE), ratio %.2f"
              % (idle_setup * 1e3, flood_setup["seconds"] * 1e3, flood_setup["seconds"] / idle_setup))  # fmt: skip
    else:
        print("  legit IKE setup    : idle %.1f ms, mid-flood: did not complete" % (idle_setup * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
