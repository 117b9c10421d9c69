"""The userspace ESP dataplane between two lab gateways, keyed statically (no IKE yet).

Each gateway runs ``python3 -m pyike.runtime.static_tunnel`` under the hosts' interpreter
(/usr/bin/python3: Debian's python3-cryptography and python3-pyroute2); LAN client pings LAN
client across the internet host, which sees only ESP in UDP 4500; garbage and a replayed ESP
packet are counted as drops and the tunnel keeps working; TCP runs through it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import REPO, TWO_SITES
from pings import assert_replies
from pyike.runtime.static_tunnel import make_pair
from pyike_lab.capture import Capture
from pyike_lab.lab import nsenter_argv

pytestmark = pytest.mark.root

HOST_PYTHON = "/usr/bin/python3"
MODULE_UTILS = str(REPO / "plugins" / "module_utils")
CONFIG_PATH = "/run/pyike-static.conf.json"
STATS_PATH = "/run/pyike-static.stats.json"
SITES = {
    "gw1": {"address": "192.0.2.1", "lan": "10.1.0.1", "ts": "10.1.0.0/24"},
    "gw2": {"address": "198.51.100.1", "lan": "10.2.0.1", "ts": "10.2.0.0/24"},
}

# Run on the internet host: wait for one ESP-in-UDP packet to gw1, then send its UDP payload to
# gw1 again three times (a replay from a different source address: ESP does not care).
REPLAY_SCRIPT = r"""
import socket, struct, sys
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sniff.bind(("inet0", 0))
sniff.settimeout(15)
print("sniffing", flush=True)
while True:
    ip = sniff.recv(65535)[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17 or socket.inet_ntoa(ip[16:20]) != "192.0.2.1":
        continue
    if struct.unpack("!H", ip[ihl + 2 : ihl + 4])[0] != 4500:
        continue
    payload = ip[ihl + 8 : struct.unpack("!H", ip[2:4])[0]]
    if len(payload) > 8 and payload[:4] != b"\0\0\0\0":
        break
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _i in range(3):
    out.sendto(payload, ("192.0.2.1", 4500))
print("replayed", payload[:8].hex(), flush=True)
"""

GARBAGE_SCRIPT = r"""
import os, random, socket
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _i in range(200):
    data = b"\x7f" + os.urandom(random.randint(8, 1400))  # never the non-ESP marker
    out.sendto(data, ("192.0.2.1", 4500))
"""


class StaticGateway:
    """The static-keys tunnel process in one lab host, started with nsenter from outside."""

    def __init__(self, lab, host: str, config: dict, python: str = HOST_PYTHON):
        self.lab, self.host, self.config, self.python = lab, host, dict(config), python
        self.config["stats_file"] = STATS_PATH
        self.proc = None
        self.stderr = tempfile.TemporaryFile()
        self.generation = 0

    def start(self, timeout: float = 20.0) -> None:
        self.lab.run_in(
            self.host,
            ["sh", "-c", "umask 077 && cat > %s" % CONFIG_PATH],
            input_data=json.dumps(self.config).encode(),
        )
        argv = [
            "env",
            "PYTHONPATH=" + MODULE_UTILS,
            self.python,
            "-m",
            "pyike.runtime.static_tunnel",
            CONFIG_PATH,
        ]
        self.proc = subprocess.Popen(
            nsenter_argv(self.lab.pid_of(self.host), argv),
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
        )
        ready, _w, _x = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if b'"ready": true' not in line:
            self.stop()
            raise AssertionError("%s: static tunnel did not start: %r %s" % (self.host, line, self.errors()))

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def _tunnel_pid(self) -> int:
        """The python process inside the host (nsenter's child), as the root namespace sees it."""
        with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as handle:
            return int(handle.read().split()[0])

    def stats(self, timeout: float = 10.0) -> dict:
        self.generation += 1
        os.kill(self._tunnel_pid(), signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.lab.run_in(self.host, ["sh", "-c", "cat %s 2>/dev/null || true" % STATS_PATH])
            try:
                stats = json.loads(text)
            except ValueError:
                stats = {}
            if stats.get("generation", 0) >= self.generation:
                self.generation = stats["generation"]
                return stats
            time.sleep(0.05)
        raise AssertionError("%s: no statistics within %ss" % (self.host, timeout))

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            # the tunnel itself, so nsenter reports its exit status; the group only as a fallback
            os.kill(self._tunnel_pid(), signal.SIGTERM)
        except (OSError, IndexError, ValueError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)


def child_drops(stats: dict) -> dict:
    return stats["children"]["net"]["drops"]


@pytest.fixture
def static_pair(make_lab, request):
    """Both gateways run the static tunnel; the interpreter is /usr/bin/python3 unless parametrized."""
    python = getattr(request, "param", HOST_PYTHON)
    lab = make_lab(TWO_SITES)
    left, right = make_pair(SITES["gw1"], SITES["gw2"], cipher="aes256gcm16")
    gateways = [StaticGateway(lab, "gw1", left, python), StaticGateway(lab, "gw2", right, python)]
    try:
        for gateway in gateways:
            gateway.start()
        yield lab, gateways[0], gateways[1]
    finally:
        for gateway in gateways:
            gateway.stop()


def ping(lab, source: str, destination: str, count: int = 5) -> str:
    return lab.run_in(
        source, ["ping", "-c", str(count), "-i", "0.1", "-w", "10", destination], timeout=count + 15
    )


def test_static_tunnel_carries_esp_drops_garbage_and_replays(static_pair):
    lab, gw1, gw2 = static_pair

    with Capture(lab, "internet", "inet0", "ip") as wire:
        assert_replies(ping(lab, "c1", "10.2.0.10"), 5)
    # ESP in UDP 4500 both ways, and never the inner ICMP in the clear
    assert wire.count("UDP-encap") + wire.count(".4500:") >= 10, wire.lines
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") == 0, wire.lines
    before = gw1.stats()
    assert before["children"]["net"]["packets_in"] >= 5
    assert before["children"]["net"]["packets_out"] >= 5
    assert gw2.stats()["children"]["net"]["packets_in"] >= 5

    # garbage to the NAT-T port: unknown SPIs, dropped and counted
    lab.run_in("internet", [HOST_PYTHON, "-c", GARBAGE_SCRIPT], timeout=30)
    # a replayed ESP packet: the anti-replay window drops it
    sniffer = subprocess.Popen(
        nsenter_argv(lab.pid_of("internet"), [HOST_PYTHON, "-c", REPLAY_SCRIPT]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert sniffer.stdout.readline().startswith(b"sniffing")
        assert_replies(ping(lab, "c2", "10.1.0.10", count=3), 3)
        out, err = sniffer.communicate(timeout=20)
    finally:
        if sniffer.poll() is None:
            os.killpg(sniffer.pid, signal.SIGKILL)
            sniffer.wait(timeout=10)
    assert b"replayed" in out, err

    after = gw1.stats()
    assert after["drops"]["unknown_spi"] - before["drops"]["unknown_spi"] == 200
    assert child_drops(after)["replayed"] - child_drops(before)["replayed"] == 3
    assert child_drops(after)["icv"] == 0
    assert after["drops"]["tun_write"] == 0

    # still working, both ways
    assert_replies(ping(lab, "c1", "10.2.0.10"), 5)
    assert_replies(ping(lab, "c2", "10.1.0.10"), 5)
    # the gateway's own traffic: the route's preferred source (its LAN address) is in the selectors
    assert_replies(ping(lab, "gw1", "10.2.0.10", count=3), 3)


def test_tcp_through_the_static_tunnel(static_pair):
    lab, gw1, gw2 = static_pair
    server = subprocess.Popen(
        nsenter_argv(lab.pid_of("c2"), ["iperf3", "-s", "-1"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        time.sleep(0.3)
        out = lab.run_in("c1", ["iperf3", "-c", "10.2.0.10", "-t", "2", "-J"], timeout=30)
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
    result = json.loads(out)
    received = result["end"]["sum_received"]
    assert received["bytes"] > 1_000_000, result["end"]
    stats = gw2.stats()
    child = stats["children"]["net"]
    assert child["bytes_in"] >= received["bytes"]
    assert child_drops(stats)["icv"] == 0 and child_drops(stats)["bad_padding"] == 0
    assert gw1.stats()["children"]["net"]["packets_out"] > 700


# the venv's interpreter too: newer cryptography, and pyroute2 0.9 (asyncio-based) inside our loop
@pytest.mark.parametrize("static_pair", [HOST_PYTHON, sys.executable], indirect=True, ids=["host", "venv"])
def test_stopping_removes_routes_and_device(static_pair):
    lab, gw1, _gw2 = static_pair
    assert_replies(ping(lab, "c1", "10.2.0.10", count=3), 3)
    assert "10.2.0.0/24 dev pyike0" in lab.run_in("gw1", ["ip", "route", "show", "table", "220"])
    gw1.stop()
    assert gw1.proc.returncode == 0, gw1.errors()
    assert lab.run_in("gw1", ["ip", "route", "show", "table", "220"]).strip() == ""
    assert "pyike0" not in lab.run_in("gw1", ["ip", "-o", "link", "show"])
    assert "lookup 220" not in lab.run_in("gw1", ["ip", "rule", "show"])


def test_raw_esp_without_udp_encapsulation(make_lab):
    """RFC 4303 ESP straight over IP (protocol 50), for peers with no NAT between them."""
    lab = make_lab(TWO_SITES)
    configs = make_pair(SITES["gw1"], SITES["gw2"], cipher="aes256gcm16", raw_esp=True)
    gateways = []
    try:
        for host, config in zip(("gw1", "gw2"), configs):
            config["children"][0]["encap"] = False
            gateways.append(StaticGateway(lab, host, config))
            gateways[-1].start()
        with Capture(lab, "internet", "inet0", "ip") as wire:
            assert_replies(ping(lab, "c1", "10.2.0.10", count=3), 3)
        assert wire.count("ESP(spi=") >= 6 and wire.count(".4500:") == 0, wire.lines
        assert wire.count("10.1.0.10 >") == 0, wire.lines
        assert gateways[1].stats()["children"]["net"]["packets_in"] >= 3
    finally:
        for gateway in gateways:
            gateway.stop()
