"""Run inside a private network namespace (``unshare --net``) by test_runtime_xfrm.py: install, read back
and flush XFRM policies with pyike's client and with iproute2, and print what each saw as JSON; and set
the per-socket IPsec bypass policies of the IKE sockets.

Usage: ``unshare --net -- python xfrm_netns.py policies|bypass``. Only this process's namespace is touched.
The policies are the ones the kernel dataplane installs for a Child SA (KernelDataplane._policy_specs).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from typing import List, Sequence

from pyike.esp import TrafficSelector
from pyike.runtime.kernel_dataplane import KernelChild, KernelDataplane
from pyike.runtime.xfrm import REQID_MIN, PolicySpec, Xfrm, bypass_socket


def child_policies(
    local_nets: Sequence[str], remote_nets: Sequence[str], local: str, peer: str, reqid: int
) -> List[PolicySpec]:
    """The policies the kernel dataplane installs for a Child SA with these selectors (no outbound SA yet)."""
    dataplane = KernelDataplane.__new__(KernelDataplane)  # no socket: only the policy layout is asked
    child = KernelChild(
        "c",
        reqid,
        local,
        (peer, 4500),
        False,
        tuple(TrafficSelector.from_network(n) for n in local_nets),
        tuple(TrafficSelector.from_network(n) for n in remote_nets),
    )
    return dataplane._policy_specs(child)


def ip_policies() -> list:
    """``ip xfrm policy`` as (src, dst, dir, priority, tmpl src, tmpl dst, reqid) tuples."""
    text = subprocess.run(["ip", "xfrm", "policy"], check=True, capture_output=True, text=True).stdout
    out, current = [], None
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "src" and not line.startswith("\t"):
            current = {"src": words[1], "dst": words[3]}
            out.append(current)
        elif words[0] == "dir":
            current["dir"], current["priority"] = words[1], int(words[3])
        elif words[0] == "tmpl":
            current["tmpl_src"], current["tmpl_dst"] = words[2], words[4]
        elif words[0] == "proto":
            current["reqid"] = int(words[words.index("reqid") + 1])
    return sorted(
        (p["src"], p["dst"], p["dir"], p["priority"], p.get("tmpl_src"), p.get("tmpl_dst"), p.get("reqid"))
        for p in out
    )


def ours(xfrm: Xfrm) -> list:
    return sorted(
        (p.src, p.dst, p.direction, p.priority, p.tmpl_src, p.tmpl_dst, p.reqid) for p in xfrm.policies()
    )


def policies() -> dict:
    result = {}
    # someone else's policy (strongSwan numbers reqids from 1): a flush of ours must leave it
    subprocess.run(
        "ip xfrm policy add src 10.9.0.0/16 dst 10.8.0.0/16 dir out priority 1000 "
        "tmpl src 198.51.100.1 dst 198.51.100.2 proto esp reqid 1 mode tunnel".split(),
        check=True,
    )
    with Xfrm() as xfrm:
        for spec in child_policies(
            ["10.1.0.0/16", "10.1.5.0/24"], ["10.2.0.0/16"], "192.0.2.1", "192.0.2.2", REQID_MIN + 7
        ):
            xfrm.add_policy(spec)
        for spec in child_policies(
            ["fd00:1::/64"], ["fd00:2::/64"], "2001:db8::1", "2001:db8::2", REQID_MIN + 8
        ):
            xfrm.add_policy(spec)
        result["installed_ip"] = ip_policies()
        result["installed_ours"] = ours(xfrm)
        try:
            xfrm.add_policy(
                child_policies(["10.1.0.0/16"], ["10.2.0.0/16"], "192.0.2.1", "192.0.2.2", REQID_MIN)[0]
            )
        except OSError as exc:
            result["duplicate"] = [exc.errno, str(exc)]
        result["flushed"] = list(xfrm.flush_ours())
        result["after_ip"] = ip_policies()
        result["after_ours"] = ours(xfrm)
    return result


def bypass() -> dict:
    """Bypass policies on an IPv4, an IPv6-only and a dual-stack UDP socket: the kernel must take them
    (they are xfrm core, no ESP module needed). They are not SPD entries, but dumps list them as
    ``socket in``/``socket out`` policies without a template (no reqid), which a flush of ours leaves."""
    result, sockets = {}, []
    for name, family, v6only in (
        ("ipv4", socket.AF_INET, None),
        ("ipv6", socket.AF_INET6, 1),
        ("dual", socket.AF_INET6, 0),
    ):
        sock = socket.socket(family, socket.SOCK_DGRAM)  # kept open: its policies live as long as it does
        sockets.append(sock)
        if v6only is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        try:
            bypass_socket(sock)
            result[name] = "ok"
        except OSError as exc:
            result[name] = [exc.errno, exc.strerror]
    result["ip"] = subprocess.run(["ip", "xfrm", "policy"], check=True, capture_output=True, text=True).stdout
    with Xfrm() as xfrm:
        result["ours"] = ours(xfrm)
        result["flushed"] = list(xfrm.flush_ours())
        result["ours_after"] = ours(xfrm)
    for sock in sockets:
        sock.close()
    return result


if __name__ == "__main__":
    json.dump({"policies": policies, "bypass": bypass}[sys.argv[1]](), sys.stdout)
