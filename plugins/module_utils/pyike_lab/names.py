"""Host names inside lab hosts: /etc/hosts entries and /etc/resolv.conf, per host.

Each lab host has a copy-on-write /etc (holder.py), so what is written here is that host's view only;
the C library reads both files again on every look-up, so a change applies to the next one.
"""

from __future__ import annotations

from typing import Dict, Sequence

from .lab import Lab


def write_hosts(lab: Lab, host: str, entries: Dict[str, Sequence[str]]) -> None:
    """/etc/hosts of `host`: its own names (as the holder writes them) and `entries` (name -> addresses)."""
    lines = ["127.0.0.1\tlocalhost", "127.0.1.1\t%s" % host, "::1\tlocalhost ip6-localhost ip6-loopback"]
    for name, addresses in entries.items():
        lines.extend("%s\t%s" % (address, name) for address in addresses)
    lab.write_file(host, "/etc/hosts", ("\n".join(lines) + "\n").encode(), "0644")


def write_resolv_conf(lab: Lab, host: str, nameserver: str, timeout: int = 2, attempts: int = 1) -> None:
    """/etc/resolv.conf of `host`: one name server, how long the resolver waits for it and how often."""
    text = "nameserver %s\noptions timeout:%d attempts:%d\n" % (nameserver, timeout, attempts)
    lab.write_file(host, "/etc/resolv.conf", text.encode(), "0644")
