"""A flood of IKE_SA_INIT requests from spoofed sources, for the lab's flood test and bench/ike_flood.py.

Run inside a lab host (the internet host), with the engine on the path:

    PYTHONPATH=plugins/module_utils python3 -m pyike_lab.flood --target 192.0.2.1 --count 10000 \\
        --sources 198.51.100.128/25,203.0.113.128/25 [--rate 3000] [--seed 1]

Each request is a well-formed IKE_SA_INIT (RFC 7296 §1.2: SA, KE, Nonce) built with the engine's wire codec,
with a random SPIi, nonce, X25519 public value and source address from ``--sources``; it leaves through a
raw socket with IP_HDRINCL (IPv4 and UDP headers built here, UDP checksum 0 as IPv4 allows). Replies go to
addresses nobody holds: the caller makes those ranges a blackhole on the router, so nothing comes back and
no neighbour discovery runs for them. The messages are built before the clock starts; ``--rate`` paces the
sending (packets per second, 0 = as fast as the socket takes them). The result is one JSON line on stdout:
``{"sent", "errors", "seconds", "rate"}``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time
from typing import List, Optional, Sequence, Tuple

IKE_PORT = 500
BURST = 64  # packets between two looks at the clock when pacing


def _codec():
    """The engine's wire codec and proposal parser (relative inside the collection, else from sys.path)."""
    try:
        from ..pyike import ids
        from ..pyike.crypto.proposals import parse_proposals
        from ..pyike.ike.negotiate import to_wire
        from ..pyike.wire.header import Header
        from ..pyike.wire.key_exchange import KePayload, NoncePayload
        from ..pyike.wire.message import encode_message
        from ..pyike.wire.sa import SaPayload
    except ImportError:  # pyike_lab is a top-level package: tests, bench/, `python3 -m pyike_lab.flood`
        from pyike import ids
        from pyike.crypto.proposals import parse_proposals
        from pyike.ike.negotiate import to_wire
        from pyike.wire.header import Header
        from pyike.wire.key_exchange import KePayload, NoncePayload
        from pyike.wire.message import encode_message
        from pyike.wire.sa import SaPayload
    return ids, parse_proposals, to_wire, Header, KePayload, NoncePayload, encode_message, SaPayload


def ike_sa_init_requests(
    count: int, rng: random.Random, proposal: str = "aes256gcm16-prfsha256-x25519"
) -> List[bytes]:
    """`count` distinct IKE_SA_INIT requests (random SPIi, nonce and X25519 public value)."""
    ids, parse_proposals, to_wire, header_class, ke_class, nonce_class, encode_message, sa_class = _codec()
    sa = sa_class(to_wire(parse_proposals(proposal, ids.ProtocolId.IKE)))
    messages = []
    for _index in range(count):
        header = header_class(
            spi_i=rng.randbytes(8), spi_r=bytes(8), exchange=ids.ExchangeType.IKE_SA_INIT, initiator=True
        )
        payloads = [sa, ke_class(ids.DhId.CURVE25519, rng.randbytes(32)), nonce_class(rng.randbytes(32))]
        messages.append(encode_message(header, payloads))
    return messages


def spoofed_sources(networks: Sequence[str], count: int, rng: random.Random) -> List[str]:
    """`count` random host addresses drawn from `networks` (IPv4 CIDRs)."""
    pools = [ipaddress.IPv4Network(text) for text in networks]
    addresses = []
    for _index in range(count):
        network = rng.choice(pools)
        offset = rng.randrange(1, max(2, network.num_addresses - 1))
        addresses.append(str(network.network_address + offset))
    return addresses


def ipv4_udp(source: str, destination: str, sport: int, dport: int, payload: bytes, ident: int) -> bytes:
    """IPv4 header (checksum left to the kernel, which fills it for IP_HDRINCL) + UDP header + payload."""
    length = 20 + 8 + len(payload)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        length,
        ident & 0xFFFF,
        0,
        64,
        socket.IPPROTO_UDP,
        0,
        socket.inet_aton(source),
        socket.inet_aton(destination),
    )
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def flood(
    target: str,
    count: int,
    networks: Sequence[str],
    rate: float = 0.0,
    seed: int = 1,
    port: int = IKE_PORT,
) -> Tuple[int, int, float]:
    """Send the flood; returns (sent, send errors, seconds spent sending)."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible flood, no secret
    packets = [
        ipv4_udp(source, target, rng.randrange(1024, 65536), port, message, index)
        for index, (source, message) in enumerate(
            zip(spoofed_sources(networks, count, rng), ike_sa_init_requests(count, rng))
        )
    ]
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies IP_HDRINCL
    sent = errors = 0
    start = time.monotonic()
    try:
        for index, packet in enumerate(packets):
            if rate > 0 and index % BURST == 0:
                due = start + index / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                sock.sendto(packet, (target, 0))
                sent += 1
            except OSError:
                errors += 1  # e.g. ENOBUFS when the qdisc is full; counted, not retried
    finally:
        sock.close()
    return sent, errors, time.monotonic() - start


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="spoofed IKE_SA_INIT flood (lab tests and bench only)")
    parser.add_argument("--target", required=True, help="the responder's IPv4 address")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--sources", required=True, help="comma-separated IPv4 CIDRs to spoof from")
    parser.add_argument("--rate", type=float, default=0.0, help="packets per second, 0 = unpaced")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--port", type=int, default=IKE_PORT)
    args = parser.parse_args(argv)
    sent, errors, seconds = flood(
        args.target, args.count, args.sources.split(","), args.rate, args.seed, args.port
    )
    result = {"sent": sent, "errors": errors, "seconds": round(seconds, 3), "rate": round(sent / seconds, 1)}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
