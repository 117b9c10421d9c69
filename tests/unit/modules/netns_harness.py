"""A throwaway network namespace in which unit tests run the real nft and read /proc/sys/net.

``ip netns add`` makes a namespace of its own (no interface but a down loopback, an empty nftables
ruleset, forwarding off), so nothing of the host is touched. nft runs there through a wrapper script
(``nsenter --net=... nft "$@"``) that the code under test is pointed at as its nft program; Python code
that must see the namespace's /proc/sys runs in a child process entered into it.

Needs root, ip(8), nsenter(1) and nft(8); ``unavailable()`` says what is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import modules_support
import pytest

NFT = shutil.which("nft", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
IP = shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
NSENTER = shutil.which("nsenter", path=os.environ.get("PATH", "") + ":/usr/bin:/bin")
# A site's own firewall as an administrator writes it: nothing in but replies, nothing forwarded but
# LAN to WAN, nothing out.
DROPPING_SITE = """\
table inet filter {
  chain input {
    type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif "lo" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
    iifname "lan0" oifname "wan0" accept
  }
  chain output {
    type filter hook output priority filter; policy drop;
  }
}
"""


def unavailable() -> str:
    """Why a throwaway namespace with nft cannot be had here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for name, path in (("nft", NFT), ("ip", IP), ("nsenter", NSENTER)):
        if path is None:
            return "%s is not installed" % name
    return ""


class NetNs:
    """One namespace; use as a context manager. `nft` is the wrapper script's path once entered."""

    def __init__(self, scratch: Path):
        self.name = "pyike-unit-%s" % uuid.uuid4().hex[:12]
        self.path = "/run/netns/%s" % self.name
        self.nft = str(scratch / ("nft-in-%s" % self.name))

    def __enter__(self) -> NetNs:
        subprocess.run([IP, "netns", "add", self.name], check=True, capture_output=True, timeout=30)
        Path(self.nft).write_text('#!/bin/sh\nexec %s --net=%s %s "$@"\n' % (NSENTER, self.path, NFT))
        os.chmod(self.nft, 0o755)
        return self

    def __exit__(self, *exc_info) -> None:
        subprocess.run([IP, "netns", "delete", self.name], check=False, capture_output=True, timeout=30)

    def run(self, argv, input_text=None) -> str:
        """Run `argv` in the namespace; its stdout (a failure raises with its stderr)."""
        done = subprocess.run(
            [NSENTER, "--net=%s" % self.path, *argv],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError("%s failed (rc=%d): %s" % (argv, done.returncode, done.stderr))
        return done.stdout

    def load(self, ruleset: str) -> None:
        self.run([NFT, "-f", "-"], "flush ruleset\n" + ruleset)

    def listing(self) -> str:
        return self.run([NFT, "list", "ruleset"])

    def python(self, code: str, data) -> object:
        """Run `code` under this interpreter in the namespace with `data` as the JSON-decoded name
        ``data`` (the collection importable); it prints one JSON document, which is returned."""
        prelude = "import json, sys\nsys.path.insert(0, %r)\ndata = json.loads(sys.stdin.read())\n" % str(
            modules_support.COLLECTIONS_ROOT
        )
        out = self.run([sys.executable, "-c", prelude + code], json.dumps(data))
        return json.loads(out)


@pytest.fixture
def netns(tmp_path):
    """A throwaway namespace (NetNs); skipped with the reason where there can be none. A test module
    uses it with ``netns = netns_harness.netns``."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    with NetNs(tmp_path) as namespace:
        yield namespace
