"""Run inside a private network namespace (``unshare --net``) by test_runtime_xfrm.py: install, read back
and flush XFRM policies with pyike's client and with iproute2, and print what each saw as JSON.

Usage: ``unshare --net -- python xfrm_netns.py policies``. Only this process's namespace is touched.
"""

from __future__ import annotations

import json
import subprocess
import sys

from pyike.runtime.xfrm import REQID_MIN, Xfrm, policies_for


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
        for spec in policies_for(
            ["10.1.0.0/16", "10.1.5.0/24"], ["10.2.0.0/16"], "192.0.2.1", "192.0.2.2", REQID_MIN + 7
        ):
            xfrm.add_policy(spec)
        for spec in policies_for(
            ["fd00:1::/64"], ["fd00:2::/64"], "2001:db8::1", "2001:db8::2", REQID_MIN + 8
        ):
            xfrm.add_policy(spec)
        result["installed_ip"] = ip_policies()
        result["installed_ours"] = ours(xfrm)
        try:
            xfrm.add_policy(
                policies_for(["10.1.0.0/16"], ["10.2.0.0/16"], "192.0.2.1", "192.0.2.2", REQID_MIN)[0]
            )
        except OSError as exc:
            result["duplicate"] = [exc.errno, str(exc)]
        result["flushed"] = list(xfrm.flush_ours())
        result["after_ip"] = ip_policies()
        result["after_ours"] = ours(xfrm)
    return result


if __name__ == "__main__":
    json.dump({"policies": policies}[sys.argv[1]](), sys.stdout)
