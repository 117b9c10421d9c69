"""Micro benchmark of traffic-selector matching in the ESP dataplane (not a test).

    PYTHONPATH=plugins/module_utils .venv/bin/python bench/selectors_micro.py [--packets N] [--repeat R]

Inbound checks (SelectorSet.allows_inbound) and outbound lookups (SPD.lookup_policy), each with
every packet of one flow (cache hits) and with every packet a new flow (cache misses: the
selectors themselves are matched). The baseline, measured in the same run, is parsing the same
packets' selector fields (flow_key), which every lookup needs anyway; ratios are baseline time /
case time (1.0 = as fast as parsing the header). The best of ``--repeat`` runs counts.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from typing import Callable, List, Tuple

from pyike import esp as pyike_esp


def udp_packet(src: bytes, dst: bytes, sport: int, dport: int, size: int = 64) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 0, 0, 64, 17, 0, src, dst)
    return header + struct.pack("!HHHH", sport, dport, size - 20, 0) + bytes(size - 28)


def best(func, repeat: int) -> float:
    times = []
    for _attempt in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def cases(esp, count: int) -> List[Tuple[str, Callable[[], None]]]:
    """(name, run) per case, built with the dataplane module ``esp`` (pyike.esp or another checkout's)."""
    net = esp.TrafficSelector.from_network
    # one flow 10.1.0.2:40000 -> 10.2.0.2:5201, and `count` flows from distinct sources and ports
    one_flow = [udp_packet(b"\x0a\x01\x00\x02", b"\x0a\x02\x00\x02", 40000, 5201)] * count
    many_flows = [
        udp_packet(bytes((10, 1, (i >> 8) & 0xFF, i & 0xFF)), b"\x0a\x02\x00\x02", 1024 + i % 60000, 5201)
        for i in range(count)
    ]
    subnets = ([net("10.2.0.0/16")], [net("10.1.0.0/16")])
    ports = (
        [net("10.2.0.0/16", 17, 5000, 5300), net("10.2.0.0/16", 6, 443, 443)],
        [net("10.9.0.0/16"), net("10.1.0.0/16", 17, 1024, 65535)],
    )
    policies = [  # 20 policies that never match, then the one that does
        (f"other{i}", [net(f"10.{100 + i}.0.0/16")], [net(f"10.{150 + i}.0.0/16", 6, 80, 80)])
        for i in range(20)
    ]
    policies.append(("site", [net("10.1.0.0/16", 17, 1024, 65535)], [net("10.2.0.0/16", 17, 5201, 5201)]))

    def spd():
        table = esp.SPD()
        for name, local, remote in policies:
            table.add(esp.Policy(name, local, remote))
        return table

    def run(make, packets):
        """A new SelectorSet or SPD per run (outside the loop), so that misses stay misses."""

        def loop():
            check = make()
            for packet in packets:
                check(packet)

        return loop

    return [
        ("baseline flow_key", run(lambda: esp.flow_key, many_flows)),
        (
            "inbound subnets, one flow (cache hit)",
            run(lambda: esp.SelectorSet(*subnets).allows_inbound, one_flow),
        ),
        (
            "inbound ports, one flow (cache hit)",
            run(lambda: esp.SelectorSet(*ports).allows_inbound, one_flow),
        ),
        (
            "inbound subnets, new flows (miss)",
            run(lambda: esp.SelectorSet(*subnets).allows_inbound, many_flows),
        ),
        ("inbound ports, new flows (miss)", run(lambda: esp.SelectorSet(*ports).allows_inbound, many_flows)),
        ("SPD 21 policies, one flow (cache hit)", run(lambda: spd().lookup_policy, one_flow)),
        ("SPD 21 policies, new flows (miss)", run(lambda: spd().lookup_policy, many_flows)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}  {args.packets} packets, best of {args.repeat}")
    base = None
    for name, run in cases(pyike_esp, args.packets):
        seconds = best(run, args.repeat)
        base = base or seconds
        print(f"{name:<44}{args.packets / seconds:>12,.0f} pkt/s  ratio {base / seconds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
