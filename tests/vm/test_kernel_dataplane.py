"""The kernel (XFRM) dataplane where the kernel has ESP: in the VM lab (a stock Debian kernel, esp4 loaded).

pyike with settings.dataplane kernel installs its Child SAs as XFRM states and policies: against
strongSwan with kernel-netlink (its default backend) in both roles, and against itself; pings cross
both ways, ``ip xfrm state`` shows our SAs with the negotiated algorithms and reqids, the counters in
list-sas are the kernel's, a rekey under pings loses nothing, and a stop, a crash and restart leave no
state or policy of ours behind. The lab hosts are namespaces inside the VM (tests/conftest.py).

On a kernel without ESP (the build machines) every test here is skipped with the probe's reason.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time

import pytest
from pyike.runtime.xfrm import REQID_MAX, REQID_MIN, probe
from pyike_lab.capture import Capture
from pyike_lab.pyike import PyikeDaemon, site_to_site
from pyike_lab.strongswan import KERNEL_NETLINK_PLUGINS, SWANCTL_PLUGINS, SiteToSite, StrongSwan

ESP_OK, ESP_REASON = probe()
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not ESP_OK, reason="needs kernel ESP (run in the VM lab): %s" % ESP_REASON),
]
PSK = "kernel-dataplane-psk-7c21d9e0"
TWO_SITES = [
    {"name": "gw1", "site": 1, "role": "gateway"},
    {"name": "c1", "site": 1, "role": "client"},
    {"name": "gw2", "site": 2, "role": "gateway"},
    {"name": "c2", "site": 2, "role": "client"},
]
LEFT = dict(host="gw1", addr="192.0.2.1", id="gw1.example", net="10.1.0.0/24", client="c1", ip="10.1.0.10")
RIGHT = dict(
    host="gw2", addr="198.51.100.1", id="gw2.example", net="10.2.0.0/24", client="c2", ip="10.2.0.10"
)
SLOW = 20.0  # seconds: the VM emulates its CPU (TCG); a daemon's start takes tens of seconds there
KEY = re.compile(r"0x[0-9a-f]{16,}")  # key material in `ip xfrm state` output


def pyike(
    lab, daemons, me, peer, esp="aes256gcm16", encap=False, nets=None, child=None, conn=None, wait=True,
    **settings,
):  # fmt: skip
    """A pyike daemon in kernel mode (unless settings say otherwise). ``wait=False``: launched only, so
    that the next one starts meanwhile (under TCG each start takes 30 s or more, mostly imports); then
    ``ready(daemon)``."""
    local, remote = nets or ([me["net"]], [peer["net"]])
    conf = site_to_site("s2s", me["addr"], peer["addr"], me["id"], peer["id"], PSK, local, remote,
                        esp_proposals=[esp], **_without_none(dict({"dataplane": "kernel"}, **settings)))  # fmt: skip
    conf["connections"]["s2s"]["encap"] = encap
    conf["connections"]["s2s"]["children"]["net"].update(child or {})
    conf["connections"]["s2s"].update(conn or {})
    daemon = PyikeDaemon(lab, me["host"])
    daemon.conf = conf  # for firewall_of()
    daemons.append(daemon)
    daemon.launch(conf)
    if wait:
        ready(daemon)
    return daemon


def ready(*pyike_daemons):
    for daemon in pyike_daemons:
        daemon.wait_ready(timeout=10 * SLOW)


def firewall_of(lab, daemon):
    """A forward chain that drops all but what the pyike.ipsec.host module admits for the daemon's
    configuration: the module's own rules (pyike_host), in the chain its jump leads to."""
    collections = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                               ".build", "collections")  # fmt: skip
    if collections not in sys.path:
        sys.path.insert(
            0, collections
        )  # make setup links the checkout there as ansible_collections/pyike/ipsec
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import nftables, traffic

    rules = nftables.helper_rules(traffic.host_traffic(daemon.conf), "inet", "forward")
    ruleset = "table inet filter {\n chain pyike_ipsec_forward {\n%s\n }\n" % "\n".join(rules)
    ruleset += (
        " chain forward { type filter hook forward priority 0; policy drop; jump pyike_ipsec_forward; }\n}\n"
    )
    lab.run_in(daemon.host, ["nft", "-f", "-"], input_data=ruleset.encode())
    return rules


def _without_none(settings):
    return {key: value for key, value in settings.items() if value is not None}


def strongswan(lab, daemons, me, peer, esp="aes256gcm16"):
    charon = StrongSwan(lab, me["host"], plugins=KERNEL_NETLINK_PLUGINS, swanctl_plugins=SWANCTL_PLUGINS,
                        timeout_scale=10)  # fmt: skip
    site = SiteToSite("s2s", me["addr"], peer["addr"], me["id"], peer["id"], PSK, [me["net"]], [peer["net"]],
                      esp_proposals=esp)  # fmt: skip
    charon.configure(site.swanctl_conf())
    daemons.append(charon)
    charon.start()
    return charon


def states(lab, host):
    """``ip xfrm state`` without keys: one dict per state (src, dst, spi, reqid, algorithms, encap, flags)."""
    text = lab.run_in(host, ["ip", "xfrm", "state", "list", "nokeys"])
    assert not KEY.search(text), "nokeys printed key material"
    out = []
    for block in re.split(r"\n(?=src )", text.strip()):
        if not block.strip():
            continue
        head = re.match(r"src (\S+) dst (\S+)\s+proto esp spi (0x[0-9a-f]+) reqid (\d+) mode (\w+)", block)
        assert head, block
        out.append({
            "src": head.group(1), "dst": head.group(2), "spi": int(head.group(3), 16), "reqid": int(head.group(4)),
            "mode": head.group(5), "algorithms": re.findall(r"^\s+(aead|enc|auth-trunc) (\S+)", block, re.M),
            "encap": re.search(r"encap type (\S+) sport (\d+) dport (\d+)", block),
            "esn": bool(re.search(r"^\s+replay-window \d+ flag .*\besn\b", block, re.M)),
            "text": "\n".join(line for line in block.splitlines() if not re.fullmatch(r"[\s0-9a-f]+", line)),
        })  # fmt: skip
    return out


def policies(lab, host):
    return lab.run_in(host, ["ip", "xfrm", "policy"])


def ping(lab, src, dst, count=5, interval="0.2", size=56):
    out = lab.run_in(
        src["client"],
        ["ping", "-c", str(count), "-i", interval, "-s", str(size), "-w", "30", dst["ip"]],
        timeout=60,
    )
    assert "%d packets transmitted, %d received" % (count, count) in out, out
    return out


def both_ways_only_esp(lab):
    with Capture(lab, "internet", "inet0", "ip") as wire:
        ping(lab, LEFT, RIGHT)
        ping(lab, RIGHT, LEFT)
    assert wire.count("10.1.0.10 >") + wire.count("10.2.0.10 >") == 0, wire.lines  # only ESP crosses
    assert wire.count("ESP") >= 20, wire.lines
    return wire


def ours(state):
    return REQID_MIN <= state["reqid"] <= REQID_MAX


def assert_kernel_sas_of(daemon, lab, host, me, peer, algorithms):
    """The daemon says kernel; its two SAs are in the kernel with our reqid and these algorithms."""
    choice = daemon.stats()["dataplane"]
    assert (choice["mode"], choice["setting"]) == ("kernel", "kernel"), choice
    assert "dataplane: kernel (settings.dataplane is kernel; kernel ESP available" in daemon.ctl("stats")
    found = states(lab, host)
    mine = [s for s in found if ours(s)]
    assert len(mine) == 2, [s["text"] for s in found]
    assert {(s["src"], s["dst"]) for s in mine} == {(me["addr"], peer["addr"]), (peer["addr"], me["addr"])}
    assert len({s["reqid"] for s in mine}) == 1 and all(s["mode"] == "tunnel" for s in mine)
    for state in mine:
        assert sorted(name for _kind, name in state["algorithms"]) == sorted(algorithms), state["text"]
    (ike,) = daemon.sas()
    (child,) = ike["children"]
    assert {int(child["spi_in"], 16), int(child["spi_out"], 16)} == {s["spi"] for s in mine}
    return mine, child


def test_pyike_kernel_and_strongswan_kernel_netlink_carry_pings_in_both_roles(make_lab, daemons):
    lab = make_lab(TWO_SITES)
    left = pyike(lab, daemons, LEFT, RIGHT, wait=False)
    charon = strongswan(lab, daemons, RIGHT, LEFT)
    ready(left)
    # pyike initiates
    assert "initiate completed successfully" in left.ctl(
        "initiate", "s2s", "--wait", str(3 * SLOW), timeout=5 * SLOW
    )
    both_ways_only_esp(lab)
    mine, child = assert_kernel_sas_of(left, lab, "gw1", LEFT, RIGHT, ["rfc4106(gcm(aes))"])
    # list-sas counters are the kernel's: 10 pings each way went through the SAs
    assert child["packets_in"] >= 10 and child["packets_out"] >= 10, child
    assert child["bytes_in"] >= 10 * 84 and child["bytes_out"] >= 10 * 84, child
    pols = policies(lab, "gw1")
    reqid = mine[0]["reqid"]
    for direction, src, dst in (("out", "10.1.0.0/24", "10.2.0.0/24"), ("in", "10.2.0.0/24", "10.1.0.0/24"),
                                ("fwd", "10.2.0.0/24", "10.1.0.0/24")):  # fmt: skip
        assert re.search(r"src %s dst %s \n\tdir %s priority 375423 .*\n\ttmpl src \S+ dst \S+\n\t\tproto esp "
                         r"(spi 0x[0-9a-f]+ )?reqid %d mode tunnel" % (src, dst, direction, reqid), pols), pols  # fmt: skip
    print("gw1 (pyike, initiator):\n" + "\n".join(s["text"] for s in states(lab, "gw1")))
    # strongSwan initiates
    assert "terminated 1 IKE SA" in left.ctl("terminate", "s2s")
    deadline = time.monotonic() + 3 * SLOW
    while [s for s in states(lab, "gw1") if ours(s)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [s for s in states(lab, "gw1") if ours(s)], "terminate left states behind"
    assert "completed successfully" in charon.initiate("net", timeout=int(3 * SLOW))
    both_ways_only_esp(lab)
    assert_kernel_sas_of(left, lab, "gw1", LEFT, RIGHT, ["rfc4106(gcm(aes))"])
    print("gw1 (pyike, responder):\n" + "\n".join(s["text"] for s in states(lab, "gw1")))
    print("gw2 (strongSwan):\n" + "\n".join(s["text"] for s in states(lab, "gw2")))
    left.stop()
    assert not [s for s in states(lab, "gw1") if ours(s)] and "reqid %d" % reqid not in policies(lab, "gw1")


@pytest.mark.parametrize(
    ("esp", "algorithms", "encap"),
    # ESP in UDP: UDP_ENCAP_ESPINUDP on the NAT-T socket. The other transforms are in the tests below
    # (AES-CBC/HMAC with ESN over IPv4 and IPv6, ChaCha20-Poly1305 with the userspace dataplane): a lab
    # and two daemons cost a minute in the VM, and the VM part has ten.
    [("aes128gcm16", ["rfc4106(gcm(aes))"], True)],
)
def test_pyike_kernel_to_pyike_kernel_rekeys_under_pings_and_cleans_up(
    make_lab, daemons, esp, algorithms, encap
):
    lab = make_lab(TWO_SITES)
    left = pyike(lab, daemons, LEFT, RIGHT, esp=esp, encap=encap, wait=False)
    right = pyike(lab, daemons, RIGHT, LEFT, esp=esp, encap=encap)
    ready(left)
    assert "initiate completed successfully" in left.ctl(
        "initiate", "s2s", "--wait", str(3 * SLOW), timeout=5 * SLOW
    )
    wire = both_ways_only_esp(lab)
    before, _child = assert_kernel_sas_of(left, lab, "gw1", LEFT, RIGHT, algorithms)
    if encap:  # the kernel sent and took ESP in UDP on port 4500 (RFC 3948), IKE went on beside it
        assert wire.count("192.0.2.1.4500 > 198.51.100.1.4500: UDP-encap") >= 10, wire.lines
        assert wire.count("198.51.100.1.4500 > 192.0.2.1.4500: UDP-encap") >= 10, wire.lines
        assert all(s["encap"] and s["encap"].groups() == ("espinudp", "4500", "4500") for s in before), before
    else:
        assert wire.count("192.0.2.1 > 198.51.100.1: ESP") >= 10 and not any(s["encap"] for s in before), (
            wire.lines
        )
    assert_kernel_sas_of(right, lab, "gw2", RIGHT, LEFT, algorithms)
    assert all(s["esn"] == esp.endswith("-esn") for s in before), [s["text"] for s in before]
    # a rekey while pings run at 500 per second: make-before-break loses none
    result = {}
    pinger = threading.Thread(
        target=lambda: result.update(out=ping(lab, LEFT, RIGHT, count=5000, interval="0.002"))
    )
    pinger.start()
    time.sleep(1.0)
    assert "rekeying 1 Child SA" in left.ctl("rekey", "s2s")
    pinger.join(timeout=6 * SLOW)
    assert "5000 packets transmitted, 5000 received" in result.get("out", ""), result
    deadline = time.monotonic() + 3 * SLOW  # the old pair goes after the DELETE (and the inbound linger)
    while len([s for s in states(lab, "gw1") if ours(s)]) != 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    after, _child = assert_kernel_sas_of(left, lab, "gw1", LEFT, RIGHT, algorithms)
    assert not {s["spi"] for s in after} & {s["spi"] for s in before}, "the rekey left an old SA"
    assert after[0]["reqid"] == before[0]["reqid"]
    both_ways_only_esp(lab)
    print("gw1 after the rekey:\n" + "\n".join(s["text"] for s in states(lab, "gw1")))
    # a crash leaves states and policies behind; the restart flushes them (our reqids only)
    lab.run_in("gw1", ["ip", "xfrm", "policy", "add", "src", "10.9.0.0/24", "dst", "10.8.0.0/24", "dir", "out",
                       "tmpl", "src", "192.0.2.1", "dst", "192.0.2.99", "proto", "esp", "reqid", "1", "mode", "tunnel"])  # fmt: skip
    # (the dead daemon's control socket and pid file go too, or start() would take them for the new one's)
    kill = "kill -9 $(cat /run/pyike/pyiked.pid) && rm -f /run/pyike/pyike.ctl /run/pyike/pyiked.pid"
    lab.run_in("gw1", ["sh", "-c", kill])
    time.sleep(1.0)
    assert len([s for s in states(lab, "gw1") if ours(s)]) == 2
    left.start(timeout=10 * SLOW)
    assert "removed 2 state(s) and 3 policy(ies) an earlier run left in the kernel" in left.log()
    assert not [s for s in states(lab, "gw1") if ours(s)]
    assert "reqid 1 mode tunnel" in policies(lab, "gw1")  # someone else's policy stays
    # a clean stop leaves nothing of ours
    right.stop()
    assert not [s for s in states(lab, "gw2") if ours(s)]
    assert "reqid" not in policies(lab, "gw2"), policies(lab, "gw2")


V6_NETS = {"gw1": ["10.1.0.0/24", "fd00:0:1::/64"], "gw2": ["10.2.0.0/24", "fd00:0:2::/64"]}


def test_ipv6_over_ipv4_and_the_gateways_own_traffic_cross_only_as_esp(make_lab, daemons):
    """An IPv6 child over an IPv4 IKE SA finds its state (XFRM_STATE_AF_UNSPEC), and what the gateways
    send themselves towards the remote LAN leaves from their LAN address into the tunnel (the routes
    with a preferred source), never in the clear from the public address."""
    lab = make_lab(TWO_SITES)
    esp = "aes128-sha256-esn"
    left = pyike(lab, daemons, LEFT, RIGHT, esp=esp, nets=(V6_NETS["gw1"], V6_NETS["gw2"]), wait=False)
    pyike(lab, daemons, RIGHT, LEFT, esp=esp, nets=(V6_NETS["gw2"], V6_NETS["gw1"]))
    ready(left)
    assert "initiate completed successfully" in left.ctl(
        "initiate", "s2s", "--wait", str(3 * SLOW), timeout=5 * SLOW
    )
    with Capture(lab, "internet", "inet0", "ip or ip6") as wire:
        for host, dst in (("c1", "fd00:0:2::a"), ("gw1", "10.2.0.10"), ("gw1", "fd00:0:2::a"),
                          ("gw2", "10.1.0.10")):  # fmt: skip
            out = lab.run_in(host, ["ping", "-c", "3", "-i", "0.2", "-w", "30", dst], timeout=60)
            assert "3 packets transmitted, 3 received" in out, (host, dst, out)
    plain = [line for line in wire.lines if "ESP" not in line and ("ICMP" in line or "icmp" in line.lower())]
    assert not plain, plain  # nothing of the pings crossed outside ESP
    assert wire.count("192.0.2.1 > 198.51.100.1: ESP") >= 9, wire.lines
    routes = lab.run_in("gw1", ["ip", "route", "show", "table", "220"])
    assert "10.2.0.0/24 " in routes and "src 10.1.0.1" in routes, routes
    assert "fd00:0:2::/64" in lab.run_in("gw1", ["ip", "-6", "route", "show", "table", "220"])
    mine = [s for s in states(lab, "gw1") if ours(s)]
    # one SA pair carries both families (the states' selectors are AF_UNSPEC)
    assert len(mine) == 2 and all(s["esn"] for s in mine), [s["text"] for s in mine]
    assert all(sorted(n for _k, n in s["algorithms"]) == ["cbc(aes)", "hmac(sha256)"] for s in mine), mine
    left.stop()
    assert lab.run_in("gw1", ["ip", "route", "show", "table", "220"]).strip() == ""  # our routes went too


def test_a_kernel_trap_a_byte_lifetime_and_a_userspace_peer(make_lab, daemons):
    """The two dataplanes speak the same ESP: gw1 in the kernel, gw2 over its TUN device. gw1's child is
    a trap (start_action trap): policies without a state until c1's first packet, whose acquire starts
    the IKE SA; the Child SA takes the trap's policies and reqid over (its outbound state replaces the
    kernel's larval one). Its byte lifetime is the kernel's: the kernel reports the crossing and the
    Child SA is rekeyed. After a terminate the policies are the trap's again, to the byte, and the next
    packet brings the child back."""
    lab = make_lab(TWO_SITES)
    # life_bytes far above rekey_bytes: a rekey slowed down by the emulated CPU still beats the hard limit
    left = pyike(lab, daemons, LEFT, RIGHT, esp="chacha20poly1305", start_action="trap",
                 child={"rekey_bytes": 60000, "life_bytes": 600000}, wait=False)  # fmt: skip
    right = pyike(lab, daemons, RIGHT, LEFT, esp="chacha20poly1305", dataplane="userspace")
    ready(left)
    # gw1 forwards only what the host module admits: its IPsec-path rules (no TUN device in kernel mode)
    assert any(rule.startswith("rt ipsec exists") for rule in firewall_of(lab, left))
    (trap,) = json.loads(left.ctl("list-traps", "--json"))
    assert (trap["state"], trap["acquires"], left.sas()) == ("idle", 0, []), trap
    trap_policies = policies(lab, "gw1")
    assert trap_policies.count("tmpl src 192.0.2.1 dst 198.51.100.1") == 1, trap_policies  # out
    assert trap_policies.count("tmpl src 198.51.100.1 dst 192.0.2.1") == 2, trap_policies  # in, fwd
    chacha = ["rfc7539esp(chacha20,poly1305)"]

    for round_ in (1, 2):
        # the first packets are dropped while the SA is negotiated: ping until one comes back
        out = lab.run_in("c1", ["ping", "-c", "1", "-W", "2", "-w", str(int(6 * SLOW)), RIGHT["ip"]],
                         timeout=8 * SLOW)  # fmt: skip
        assert "1 received" in out, out
        (trap,) = json.loads(left.ctl("list-traps", "--json"))
        assert trap["acquires"] == round_ and trap["failed_acquires"] == 0, trap
        before, _child = assert_kernel_sas_of(left, lab, "gw1", LEFT, RIGHT, chacha)
        assert before[0]["reqid"] == trap_reqid(trap_policies)
        assert [s["text"] for s in states(lab, "gw1") if s["spi"] == 0] == []  # no larval state left
        if round_ == 1:
            both_ways_only_esp(lab)
            assert right.stats()["dataplane"]["mode"] == "userspace"
            assert not [s for s in states(lab, "gw2") if ours(s)]  # userspace: nothing in its kernel
            byte_lifetime_rekeys(lab, left, {s["spi"] for s in before}, chacha)
        assert "terminated 1 IKE SA(s) of s2s" in left.ctl("terminate", "s2s", timeout=5 * SLOW)
        deadline = time.monotonic() + 3 * SLOW
        while [s for s in states(lab, "gw1") if ours(s)] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [s["text"] for s in states(lab, "gw1") if ours(s)] == []
        assert policies(lab, "gw1") == trap_policies  # the trap's again, to the byte


def trap_reqid(policy_text):
    (reqid,) = set(re.findall(r"reqid (\d+)", policy_text))
    return int(reqid)


def byte_lifetime_rekeys(lab, daemon, before, algorithms):
    """100 pings of 1000 octets each way cross rekey_bytes 60000: the kernel says so (XFRM_MSG_EXPIRE)
    and the Child SA is rekeyed to new SPIs."""
    assert "XFRM_MSG_EXPIRE" not in daemon.log()
    ping(lab, LEFT, RIGHT, count=100, interval="0.01", size=1000)
    deadline = time.monotonic() + 3 * SLOW
    while "reached its bytes soft limit, rekeying" not in daemon.log() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = daemon.log()
    assert re.search(
        r"SA [0-9a-f]{8} crossed its soft bytes lifetime in the kernel \(XFRM_MSG_EXPIRE\)", log
    ), log
    assert "reached its bytes soft limit, rekeying" in log, log
    assert "hard" not in re.findall(r"crossed its (\w+) \w+ lifetime", log), log
    while {s["spi"] for s in states(lab, "gw1") if ours(s)} & before and time.monotonic() < deadline:
        time.sleep(0.5)
    after, _child = assert_kernel_sas_of(daemon, lab, "gw1", LEFT, RIGHT, algorithms)
    assert not {s["spi"] for s in after} & before, "the rekey left an old SA"
    both_ways_only_esp(lab)


NAT_RULES = b"""
table ip labnat {
  chain post {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr 192.0.2.1 ip daddr 198.51.100.1 udp dport { 500, 4500 } snat to 198.51.100.254:40000-40999
  }
}
"""


def test_nat_t_through_a_nat_host(make_lab, daemons):
    """gw1 behind a NAT that rewrites its address and ports: the kernel sends and takes ESP in UDP to and
    from the NAT's mapped port (RFC 3948), pings cross both ways, nothing in the clear."""
    lab = make_lab(TWO_SITES)
    lab.run_in("internet", ["nft", "-f", "-"], input_data=NAT_RULES)
    left = pyike(lab, daemons, LEFT, RIGHT, wait=False)
    # the responder sees only the NAT's address; no settings.dataplane: auto picks the kernel here
    right = pyike(lab, daemons, RIGHT, dict(LEFT, addr="%any"), dataplane=None)
    ready(left)
    assert "initiate completed successfully" in left.ctl(
        "initiate", "s2s", "--wait", str(3 * SLOW), timeout=5 * SLOW
    )
    with Capture(lab, "internet", "inet0", "ip or ip6") as wire:
        ping(lab, LEFT, RIGHT)
        ping(lab, RIGHT, LEFT)
    assert not [line for line in wire.lines if "ICMP" in line], wire.lines
    mapped = re.findall(
        r"198\.51\.100\.254\.(4\d{4}) > 198\.51\.100\.1\.4500: UDP-encap", " ".join(wire.lines)
    )
    assert len(mapped) >= 10 and all(40000 <= int(port) <= 40999 for port in mapped), wire.lines
    (port,) = set(mapped)
    gw2 = [s for s in states(lab, "gw2") if ours(s)]
    assert len(gw2) == 2 and all(s["encap"] for s in gw2), [s["text"] for s in gw2]
    assert {s["encap"].groups() for s in gw2} == {("espinudp", "4500", port), ("espinudp", port, "4500")}
    choice = json.loads(right.ctl("stats", "--json"))["dataplane"]
    assert (choice["mode"], choice["setting"]) == ("kernel", "auto"), choice
    assert choice["reason"].startswith("auto: kernel ESP available"), choice


def route_based(address):
    return {"mode": "route", "interface": {"name": "ipsec0", "addresses": [address], "mtu": 1400}}


def test_route_based_tunnels_carry_what_is_routed_into_their_interfaces(make_lab, daemons):
    """mode route: each gateway has an XFRM interface (ipsec0) bound to the Child SAs by if_id, with
    0.0.0.0/0 selectors; what the operator routes into it crosses as ESP, and the interface addresses
    reach each other across the tunnel (the path of a BGP or OSPF session). Nothing is routed by the
    daemon itself, and a stop removes the interface."""
    lab = make_lab(TWO_SITES)
    anything = (["0.0.0.0/0"], ["0.0.0.0/0"])
    left = pyike(lab, daemons, LEFT, RIGHT, nets=anything, conn=route_based("169.254.10.1/30"), wait=False)
    right = pyike(lab, daemons, RIGHT, LEFT, nets=anything, conn=route_based("169.254.10.2/30"))
    ready(left)
    for daemon in (left, right):  # both forward only what the host module admits: the interface's traffic
        assert 'oifname "ipsec0" ip saddr 0.0.0.0/0 ip daddr 0.0.0.0/0 accept' in firewall_of(lab, daemon)
    link = lab.run_in("gw1", ["ip", "-d", "link", "show", "ipsec0"])
    assert "mtu 1400" in link and re.search(r"\bxfrm if_id 0x[0-9a-f]+", link) and ",UP," in link, link
    assert "initiate completed successfully" in left.ctl(
        "initiate", "s2s", "--wait", str(3 * SLOW), timeout=5 * SLOW
    )
    assert "table 220" not in lab.run_in(
        "gw1", ["ip", "route", "show", "table", "all"]
    )  # the operator routes
    lab.run_in("gw1", ["ip", "route", "add", "10.2.0.0/24", "dev", "ipsec0"])
    lab.run_in("gw2", ["ip", "route", "add", "10.1.0.0/24", "dev", "ipsec0"])
    both_ways_only_esp(lab)
    out = lab.run_in("gw1", ["ping", "-c", "3", "-i", "0.2", "-w", "30", "-I", "169.254.10.1", "169.254.10.2"],
                     timeout=60)  # fmt: skip
    assert "3 packets transmitted, 3 received" in out, out
    if_id = re.search(r"if_id (0x[0-9a-f]+)", link).group(1)
    mine = [s for s in states(lab, "gw1") if ours(s)]
    assert len(mine) == 2 and all("if_id " + if_id in s["text"] for s in mine), [s["text"] for s in mine]
    assert policies(lab, "gw1").count("if_id " + if_id) == 3, policies(lab, "gw1")  # out, in, fwd
    left.stop()
    assert "ipsec0" not in lab.run_in("gw1", ["ip", "link", "show"])
    assert not [s for s in states(lab, "gw1") if ours(s)] and "reqid" not in policies(lab, "gw1")
