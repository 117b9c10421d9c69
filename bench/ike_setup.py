"""IKE setup latency: initiate -> Child SA installed, pyike vs strongSwan's charon, in one lab run.

Both daemons are asked over their own control sockets (pyike's JSON socket, charon's VICI) from
this process, reached through /proc/<holder>/root so no client program start-up is timed. Each
`initiate` returns once the Child SA is installed. Prints the medians of N runs and the ratio.

    sudo PYTHONPATH=plugins/module_utils .venv/bin/python bench/ike_setup.py [--runs 20] [--python /usr/bin/python3]

Not a test: it asserts nothing about absolute times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "module_utils"))

from pyike.runtime.control import call
from pyike_lab.lab import Lab
from pyike_lab.plan import build_plan
from pyike_lab.pyike import CONTROL_SOCKET, HOST_PYTHON, PyikeDaemon, site_to_site
from pyike_lab.strongswan import VICI_SOCKET, SiteToSite, StrongSwan

PSK = "bench-psk-not-secret"
LEFT = ("192.0.2.1", "gw1.example", "10.1.0.0/24")
RIGHT = ("198.51.100.1", "gw2.example", "10.2.0.0/24")


def host_path(lab: Lab, host: str, path: str) -> str:
    return "/proc/%d/root%s" % (lab.pid_of(host), path)


def wait_gone(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and check():
        time.sleep(0.01)


def bench_charon(lab: Lab, runs: int) -> list:
    import vici

    left, right = StrongSwan(lab, "gw1"), StrongSwan(lab, "gw2")
    for daemon, me, peer in ((left, LEFT, RIGHT), (right, RIGHT, LEFT)):
        daemon.configure(
            SiteToSite("s2s", me[0], peer[0], me[1], peer[1], PSK, [me[2]], [peer[2]]).swanctl_conf()
        )
        daemon.start()
    times = []
    try:
        session = vici.Session(_unix(host_path(lab, "gw1", VICI_SOCKET)))
        for _run in range(runs):
            start = time.perf_counter()
            for _log in session.initiate({"child": "net", "timeout": 5000}):
                pass
            times.append(time.perf_counter() - start)
            for _log in session.terminate({"ike": "s2s", "timeout": 5000}):
                pass
            wait_gone(lambda: "s2s" in right.list_sas())
    finally:
        left.stop()
        right.stop()
    return times


def bench_pyike(lab: Lab, runs: int, python: str) -> list:
    left, right = PyikeDaemon(lab, "gw1", python), PyikeDaemon(lab, "gw2", python)
    for daemon, me, peer in ((left, LEFT, RIGHT), (right, RIGHT, LEFT)):
        daemon.start(site_to_site("s2s", me[0], peer[0], me[1], peer[1], PSK, [me[2]], [peer[2]]))
    socket_path = host_path(lab, "gw1", CONTROL_SOCKET)
    right_socket = host_path(lab, "gw2", CONTROL_SOCKET)
    times = []
    try:
        for _run in range(runs):
            start = time.perf_counter()
            call(socket_path, "initiate", {"conn": "s2s", "child": "net", "wait": 5})
            times.append(time.perf_counter() - start)
            call(socket_path, "terminate", {"conn": "s2s"})
            wait_gone(lambda: call(right_socket, "list-sas") or call(socket_path, "list-sas"))
    finally:
        left.stop()
        right.stop()
    return times


def _unix(path: str):
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--python", default=HOST_PYTHON, help="interpreter for the pyike daemons (default %(default)s)"
    )
    args = parser.parse_args()
    name = "b" + uuid.uuid4().hex[:8]
    lab = Lab(name)
    lab.up(build_plan(name, [{"name": "gw1", "site": 1}, {"name": "gw2", "site": 2}]))
    try:
        charon = bench_charon(lab, args.runs)
        pyike = bench_pyike(lab, args.runs, args.python)
    finally:
        lab.down()
    charon_ms, pyike_ms = statistics.median(charon) * 1000, statistics.median(pyike) * 1000
    print(
        "IKE setup, initiate -> CHILD_SA installed, median of %d (aes256gcm16-prfsha256-x25519, PSK)"
        % args.runs
    )
    print(
        "  strongSwan charon 5.9.8 : %7.2f ms   (min %.2f, max %.2f)"
        % (charon_ms, min(charon) * 1000, max(charon) * 1000)
    )
    print(
        "  pyike (%s): %7.2f ms   (min %.2f, max %.2f)"
        % (args.python, pyike_ms, min(pyike) * 1000, max(pyike) * 1000)
    )
    print("  ratio pyike/charon time: %.2f  (below 1.0: pyike is faster)" % (pyike_ms / charon_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
