"""What a lab test's ping proves.

`ping -c COUNT -w DEADLINE` stops after COUNT replies or at the deadline. When a reply takes longer
than the interval (a loaded machine: 109 ms against -i 0.1), ping has already sent the next request
and reports e.g. "4 packets transmitted, 3 received" although nothing was lost; and after a loss it
sends more requests, so "COUNT received" alone would hide the loss. What holds in both cases: each of
the requests 1..COUNT has its reply.
"""

from __future__ import annotations

import re

_REPLY = re.compile(r"bytes from .*\bicmp_seq=(\d+)\b")


def unanswered(out: str, count: int) -> list:
    """The sequence numbers among 1..count that got no reply in ping's output."""
    answered = {int(seq) for seq in _REPLY.findall(out)}
    return [seq for seq in range(1, count + 1) if seq not in answered]


def assert_replies(out: str, count: int) -> None:
    missing = unanswered(out, count)
    assert not missing, "no reply to icmp_seq %s:\n%s" % (missing, out)


_SWAN_PACKETS = re.compile(r"\b(in|out) +[0-9a-f]{8}\S*, +\d+ bytes, +(\d+) packets")


def assert_swan_counted(list_sas: str, count: int) -> None:
    """strongSwan's Child SA counters (`swanctl --list-sas`) saw at least the ``count`` pings each way:
    ping may have sent more than ``count`` requests (see above), so the counters are a lower bound."""
    seen = {}
    for direction, packets in _SWAN_PACKETS.findall(list_sas):
        seen[direction] = max(seen.get(direction, 0), int(packets))
    assert seen.get("in", 0) >= count and seen.get("out", 0) >= count, (
        "fewer than %d packets each way:\n%s"
        % (
            count,
            list_sas,
        )
    )
