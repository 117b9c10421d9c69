"""Micro benchmark of the ESP dataplane core (not a test).

    PYTHONPATH=plugins/module_utils .venv/bin/python bench/esp_micro.py [--packets N] [--size BYTES]

For each cipher: encapsulate and decapsulate rates of inner IPv4 packets of one size, and as
the baseline measured in the same run, the bare AESGCM.encrypt call rate on a payload of the
same size. Ratios are against that baseline (1.0 = as fast as the bare AEAD call).
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

import cryptography
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyike.esp import SAD, SPD, InboundSA, OutboundSA, Policy, SelectorSet, TrafficSelector, make_cipher
from pyike.ids import EncrId, IntegId

CIPHERS = (
    ("aes128gcm16", EncrId.AES_GCM_16, 20, IntegId.NONE, 0),
    ("aes256gcm16", EncrId.AES_GCM_16, 36, IntegId.NONE, 0),
    ("chacha20poly1305", EncrId.CHACHA20_POLY1305, 36, IntegId.NONE, 0),
    ("aes128cbc-sha256", EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_256_128, 32),
    ("aes256cbc-sha512", EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_512_256, 64),
)


def udp_packet(size: int, index: int) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, size, index & 0xFFFF, 0, 64, 17, 0, b"\x0a\x01\x00\x02", b"\x0a\x02\x00\x02"
    )
    ports = struct.pack("!HHHH", 40000, 5201, size - 20, 0)
    return header + ports + os.urandom(size - 28)


def rate(count: int, seconds: float, size: int) -> str:
    pps = count / seconds
    return f"{pps:>10,.0f} pkt/s {pps * size * 8 / 1e6:>8,.0f} Mbit/s"


def timed(func, *args) -> float:
    start = time.perf_counter()
    func(*args)
    return time.perf_counter() - start


def baseline(packets: list, size: int) -> float:
    aead = AESGCM(os.urandom(16))
    nonce = os.urandom(12)
    aad = os.urandom(8)
    payload = os.urandom(size + 2)  # inner packet + pad length + next header
    encrypt = aead.encrypt

    def run():
        for _packet in packets:
            encrypt(nonce, payload, aad)

    return timed(run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=50_000)
    parser.add_argument("--size", type=int, default=1400)
    args = parser.parse_args()
    size, count = args.size, args.packets
    packets = [udp_packet(size, i) for i in range(count)]

    print(
        f"python {sys.version.split()[0]}  cryptography {cryptography.__version__}  {count} x {size}-byte inner IPv4"
    )
    base = baseline(packets, size)
    print(f"{'baseline AESGCM.encrypt':<40}{rate(count, base, size)}  ratio 1.00")

    # this gateway protects 10.1/16 <-> 10.2/16; the peer (whose inbound SA we time) sees it reversed
    site_a = [TrafficSelector.from_network("10.1.0.0/16")]
    site_b = [TrafficSelector.from_network("10.2.0.0/16")]
    peer_selectors = SelectorSet(local=site_b, remote=site_a)
    for name, encr, key_len, integ, integ_len in CIPHERS:
        cipher = make_cipher(encr, os.urandom(key_len), integ, os.urandom(integ_len))
        outbound = OutboundSA(0x1000, cipher)
        encapsulate = outbound.encapsulate

        def encap_loop(encapsulate=encapsulate):
            for packet in packets:
                encapsulate(packet)

        enc_time = timed(encap_loop)
        wire = OutboundSA(0x1000, cipher).encapsulate_many(packets)

        inbound = InboundSA(0x1000, cipher, selectors=peer_selectors)
        sad = SAD()
        sad.add(inbound)
        decapsulate = sad.decapsulate

        def decap_loop(decapsulate=decapsulate, wire=wire):
            for packet in wire:
                decapsulate(packet)

        dec_time = timed(decap_loop)
        assert inbound.traffic.packets == count, inbound.drops
        print(f"{name + ' encapsulate':<40}{rate(count, enc_time, size)}  ratio {base / enc_time:.2f}")
        print(
            f"{name + ' decapsulate+selectors':<40}{rate(count, dec_time, size)}  ratio {base / dec_time:.2f}"
        )

    spd = SPD()
    gcm = make_cipher(EncrId.AES_GCM_16, os.urandom(20))
    spd.add(Policy("bench", site_a, site_b, OutboundSA(0x2000, gcm)))
    lookup = spd.lookup

    def spd_loop():
        for packet in packets:
            lookup(packet).encapsulate(packet)

    spd_time = timed(spd_loop)
    print(
        f"{'aes128gcm16 SPD lookup+encapsulate':<40}{rate(count, spd_time, size)}  ratio {base / spd_time:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
