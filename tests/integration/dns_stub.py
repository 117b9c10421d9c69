"""A DNS server that misbehaves on purpose, for lab tests of peers given as DNS names.

    python3 dns_stub.py ADDRESS MODE [ANSWER ...]

Listens on ADDRESS, UDP port 53, and to every query:
  silent   never answers (a resolver that is down or filtered);
  answer   answers each A/AAAA query with the ANSWER addresses of that family (hostile ones too);
  garbage  answers with bytes that are no DNS message.
Only the standard library: it runs under the lab hosts' /usr/bin/python3.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import sys

TYPE_A, TYPE_AAAA = 1, 28


def question_end(query: bytes) -> int:
    """Where the (single) question of `query` ends: its name's labels, then type and class."""
    position = 12
    while query[position]:
        position += 1 + query[position]
    return position + 5


def answer(query: bytes, addresses) -> bytes:
    end = question_end(query)
    qtype = struct.unpack("!H", query[end - 4 : end - 2])[0]
    wanted = [a for a in addresses if (a.version == 4) == (qtype == TYPE_A)] if qtype in (1, 28) else []
    header = query[:2] + struct.pack("!HHHHH", 0x8180, 1, len(wanted), 0, 0)
    records = b"".join(struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(a.packed)) + a.packed for a in wanted)
    return header + query[12:end] + records


def main(argv) -> int:
    address, mode = argv[1], argv[2]
    addresses = [ipaddress.ip_address(a) for a in argv[3:]]
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((address, 53))
    while True:
        query, peer = sock.recvfrom(4096)
        if mode == "silent" or len(query) < 17:
            continue
        if mode == "garbage":
            sock.sendto(query[:2] + b"\x81\x80\xff\xff" + b"\x00" * 7, peer)
        else:
            sock.sendto(answer(query, addresses), peer)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
