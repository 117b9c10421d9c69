"""A userspace impairment relay: delay one kind of packet between two lab gateways (there is no netem here).

The kernel's routing does the diverting. In the internet host, a policy rule sends the IPv4 packets from
``source`` to ``destination`` that arrive on the bridge into a TUN device; the relay process reads them,
holds each for the delay of its kind, and writes it back into the TUN device, from where the kernel
forwards it on to ``destination`` as usual (packets coming from the TUN device do not match the rule).
Packets of a kind without a delay pass at once, so a delay reorders the kinds: with ``{"ike": 0.3}`` the
ESP packets that a gateway sends right after an IKE message reach the other gateway before it.

Kinds: ``ike`` (UDP port 500, or 4500 behind the non-ESP marker, RFC 3948 §2.2), ``esp`` (IP protocol 50,
or ESP in UDP on port 4500), ``other`` (everything else, NAT keepalives included). Within one kind the
order stays as it was.

In a test::

    with DelayRelay(lab, "198.51.100.1", "192.0.2.1", {"ike": 0.3}) as relay:
        ...
    relay.counts  # packets relayed per kind, e.g. {"ike": 6, "esp": 700, "other": 0}

The relay process itself (run inside the internet host by :class:`DelayRelay`)::

    PYTHONPATH=plugins/module_utils python3 -m pyike_lab.relay --tun imp0 --delay ike=0.3
"""

from __future__ import annotations

import argparse
import fcntl
import heapq
import json
import os
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

KINDS = ("ike", "esp", "other")
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
START_TIMEOUT = 10.0


def kind_of(packet: bytes) -> str:
    """The kind of an IPv4 packet: ike, esp or other."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return "other"
    protocol = packet[9]
    if protocol == 50:
        return "esp"
    if protocol != 17:
        return "other"
    header = (packet[0] & 0x0F) * 4
    if len(packet) < header + 8:
        return "other"
    source_port, destination_port = struct.unpack_from("!HH", packet, header)
    payload = packet[header + 8 :]
    if 500 in (source_port, destination_port):
        return "ike"
    if 4500 in (source_port, destination_port):
        if payload[:4] == b"\0\0\0\0":
            return "ike"
        if len(payload) >= 8:
            return "esp"
    return "other"


def run_relay(tun_name: str, delays: Dict[str, float]) -> Dict[str, int]:
    """Relay until SIGTERM; returns the packets relayed per kind."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", tun_name.encode(), IFF_TUN | IFF_NO_PI))
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    counts = dict.fromkeys(KINDS, 0)
    held: List[Tuple[float, int, bytes]] = []  # (due, arrival order, packet)
    order = 0
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while not stopping:
        timeout = max(0.0, held[0][0] - time.monotonic()) if held else 0.5
        try:
            readable = select.select([fd], [], [], timeout)[0]
        except InterruptedError:
            continue
        if readable:
            while True:
                try:
                    packet = os.read(fd, 65535)
                except BlockingIOError:
                    break
                kind = kind_of(packet)
                counts[kind] += 1
                order += 1  # one delay per kind: within a kind, the order stays
                heapq.heappush(held, (time.monotonic() + delays.get(kind, 0.0), order, packet))
        now = time.monotonic()
        while held and held[0][0] <= now:
            os.write(fd, heapq.heappop(held)[2])
    for _due, _order, packet in sorted(held):
        os.write(fd, packet)
    os.close(fd)
    return counts


class DelayRelay:
    """Delay the packets of some kinds from ``source`` to ``destination`` (IPv4 addresses of two gateways)."""

    def __init__(
        self,
        lab,
        source: str,
        destination: str,
        delays: Dict[str, float],
        host: str = "internet",
        bridge: str = "inet0",
        tun: str = "imp0",
        table: int = 100,
    ):
        unknown = set(delays) - set(KINDS)
        if unknown:
            raise ValueError("DelayRelay: unknown packet kinds %s (known: %s)" % (sorted(unknown), KINDS))
        self.lab = lab
        self.host = host
        self.tun = tun
        self.delays = dict(delays)
        self.rule = ["from", source, "to", destination, "iif", bridge, "lookup", str(table), "pref", "100"]
        self.route = ["%s/32" % destination, "dev", tun, "table", str(table)]
        self.counts: Dict[str, int] = {}
        self._proc: Optional[subprocess.Popen] = None

    def start(self) -> DelayRelay:
        from .lab import LabError, nsenter_argv

        module_utils = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        argv = [sys.executable, "-m", "pyike_lab.relay", "--tun", self.tun]
        for kind, delay in sorted(self.delays.items()):
            argv += ["--delay", "%s=%s" % (kind, delay)]
        self._proc = subprocess.Popen(
            nsenter_argv(self.lab.pid_of(self.host), ["env", "PYTHONPATH=" + module_utils, *argv]),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        ready = select.select([self._proc.stdout], [], [], START_TIMEOUT)[0]
        if not ready or self._proc.stdout.readline().strip() != "ready":
            self.stop()
            raise LabError("lab host %s: the delay relay did not start" % self.host)
        for argv in (
            ["sysctl", "-qw", "net.ipv4.conf.%s.rp_filter=0" % self.tun],
            ["ip", "link", "set", self.tun, "up"],
            ["ip", "route", "add", *self.route],
            ["ip", "rule", "add", *self.rule],
        ):
            self.lab.run_in(self.host, argv)
        return self

    def stop(self) -> Dict[str, int]:
        """Take the rule away, let the held packets go, and return the packets relayed per kind."""
        from .lab import LabError

        if self._proc is None:
            return self.counts
        try:
            self.lab.run_in(self.host, ["ip", "rule", "del", *self.rule])
        except LabError:
            pass  # never added (start failed) or the lab is gone
        if self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
        try:
            out, _err = self._proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            out, _err = self._proc.communicate()
        self._proc = None
        for line in out.splitlines():
            if line.startswith("{"):
                self.counts = json.loads(line)
        return self.counts

    def __enter__(self) -> DelayRelay:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _delay(text: str) -> Tuple[str, float]:
    kind, _sep, seconds = text.partition("=")
    if kind not in KINDS:
        raise argparse.ArgumentTypeError("unknown packet kind %r (known: %s)" % (kind, ", ".join(KINDS)))
    try:
        value = float(seconds)
    except ValueError:
        raise argparse.ArgumentTypeError("%r: the delay must be seconds, e.g. ike=0.3" % text) from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError("%r: the delay must be from 0 to 60 seconds" % text)
    return kind, value


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tun", required=True, help="TUN device to create and serve")
    parser.add_argument("--delay", type=_delay, action="append", default=[], help="KIND=SECONDS")
    args = parser.parse_args(argv)
    counts = run_relay(args.tun, dict(args.delay))
    sys.stdout.write(json.dumps(counts) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
