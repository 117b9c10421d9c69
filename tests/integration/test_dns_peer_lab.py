"""Peers given as DNS names (remote.address: peer.lab), in the lab.

The names live in each lab host's own /etc/hosts (its /etc is copy-on-write), so a test changes a peer's
address between two initiations by rewriting that file; a DNS server of our own that never answers, or
answers nonsense, stands for the absent or hostile DNS (dns_stub.py, the lab host's resolv.conf).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest
from pyike_lab.lab import LabError, wait_for
from pyike_lab.names import write_hosts, write_resolv_conf
from test_pyike_tunnels import (
    LEFT,
    LEFT6,
    RIGHT,
    RIGHT6,
    ping6_across,
    ping_across,
    pyike_config,
    start_pyike,
    start_strongswan,
    strongswan_config,
)

pytestmark = pytest.mark.root
STUB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dns_stub.py")


def by_name(me, peer, name, **kw):
    """pyike's configuration with the peer given as `name` (and its id, which a name requires)."""
    return pyike_config(me, dict(peer, addr=name), **kw)


def remote_of(daemon, state="ESTABLISHED"):
    (ike,) = [sa for sa in daemon.sas() if sa["state"] == state]
    return ike["remote_address"].rsplit("[", 1)[0]


def conns(daemon):
    return {c["name"]: c for c in json.loads(daemon.ctl("list-conns", "--json"))}


def test_each_initiation_resolves_the_name_again(lab, daemons):
    """strongSwan answers on two addresses; /etc/hosts of gw1 moves peer.lab from one to the other
    between two initiations, and back before strongSwan deletes the IKE SA (close_action start)."""
    lab.run_in("gw2", ["ip", "address", "add", "198.51.100.2/24", "dev", "wan0"])
    write_hosts(lab, "gw1", {"peer.lab": ["198.51.100.1"]})
    config = by_name(LEFT, RIGHT, "peer.lab")
    config["connections"]["s2s"]["children"]["net"]["close_action"] = "start"
    left = start_pyike(lab, daemons, "gw1", config)
    right = start_strongswan(
        lab, daemons, "gw2", strongswan_config(dict(RIGHT, addr="198.51.100.1,198.51.100.2"), LEFT)
    )
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    assert remote_of(left) == "198.51.100.1"
    ping_across(lab, count=3)

    left.ctl("terminate", "s2s")
    write_hosts(lab, "gw1", {"peer.lab": ["198.51.100.2"]})
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    assert remote_of(left) == "198.51.100.2"
    assert conns(left)["s2s"]["peer_addresses"] == ["198.51.100.2"]
    ping_across(lab, count=3)
    assert "s2s: peer.lab resolves to 198.51.100.2 (was 198.51.100.1)" in left.log()

    # close_action start resolves again too
    write_hosts(lab, "gw1", {"peer.lab": ["198.51.100.1"]})
    right.swanctl("--terminate", "--ike", "s2s")
    assert wait_for(lambda: [sa["remote_address"] for sa in left.sas()][:1] == ["198.51.100.1[4500]"], 15), (
        left.sas()
    )
    assert wait_for(lambda: "ESTABLISHED" in [sa["state"] for sa in left.sas()], 10)
    ping_across(lab, count=3)


def test_an_ipv6_peer_name_between_pyikes(lab, daemons):
    """Both ends name each other: gw1 initiates to the AAAA of peer6.lab, gw2 accepts gw1 because its own
    name for gw1 resolved to the address the request came from."""
    write_hosts(lab, "gw1", {"peer6.lab": [RIGHT6["addr"], "198.51.100.1"]})
    write_hosts(lab, "gw2", {"gw1-6.lab": [LEFT6["addr"]]})
    left = start_pyike(lab, daemons, "gw1", by_name(LEFT6, RIGHT6, "peer6.lab"))
    right = start_pyike(lab, daemons, "gw2", by_name(RIGHT6, LEFT6, "gw1-6.lab"))
    assert wait_for(lambda: conns(right)["s2s"]["peer_addresses"] == [LEFT6["addr"]], 10), conns(right)
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    assert remote_of(left) == RIGHT6["addr"] and remote_of(right) == LEFT6["addr"]
    ping6_across(lab, count=3)


def test_a_responder_accepts_its_peer_only_from_the_resolved_address(lab, daemons):
    write_hosts(lab, "gw2", {"gw1.lab": ["192.0.2.99"]})
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_pyike(lab, daemons, "gw2", by_name(RIGHT, LEFT, "gw1.lab"))
    assert wait_for(lambda: conns(right)["s2s"]["peer_addresses"] == ["192.0.2.99"], 10), conns(right)
    with pytest.raises(LabError, match="NO_PROPOSAL_CHOSEN"):
        left.ctl("initiate", "s2s")
    assert "IKE_SA_INIT from 192.0.2.1 to 198.51.100.1: no connection configured" in right.log()
    assert right.sas() == []


def start_stub(lab, host, mode, *answers):
    """dns_stub.py on 127.0.0.53 in `host`, which resolves through it (the C library waits up to 12 s
    for an answer); returns its PID (in the host)."""
    write_resolv_conf(lab, host, "127.0.0.53", timeout=12)
    out = lab.run_in(
        host,
        ["/bin/sh", "-c", "setsid /usr/bin/python3 %s 127.0.0.53 %s %s </dev/null >/dev/null 2>&1 & echo $!"
         % (STUB, mode, " ".join(answers))],
    )  # fmt: skip
    time.sleep(0.3)
    return int(out.strip())


def initiate_error(daemon, *args):
    try:
        return daemon.ctl("initiate", "s2s", *args)
    except LabError as exc:
        return str(exc)


def stop_stub(lab, host, pid):
    lab.run_in(host, ["kill", str(pid)])


def test_an_absent_or_hostile_dns_never_wedges_the_daemon(lab, daemons):
    stub = start_stub(lab, "gw1", "silent")
    left = start_pyike(lab, daemons, "gw1", by_name(LEFT, RIGHT, "peer.example"))
    start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    results = {}

    def initiate():
        started = time.monotonic()
        try:
            left.ctl("initiate", "s2s", "--wait", "20")
        except LabError as exc:
            results["error"] = str(exc)
        results["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=initiate)
    thread.start()
    time.sleep(1.0)
    started = time.monotonic()
    left.ctl("list-conns")  # the loop answers while the look-up waits for the silent DNS
    answered = time.monotonic() - started
    thread.join(30)
    assert answered < 2.0, answered
    assert "s2s: resolve peer.example failed: no answer within 5s (trying again in 2s)" in results["error"], (
        results
    )
    assert 4.5 < results["seconds"] < 10, results
    # the C library still waits (12 s): the next try takes no second thread, and the tries back off
    assert wait_for(lambda: "trying again in 4s" in left.log(), 15), left.log()
    assert "the previous look-up of peer.example is still waiting for the DNS" in left.log(), left.log()
    stop_stub(lab, "gw1", stub)

    hostile = start_stub(lab, "gw1", "answer", "0.0.0.0", "224.0.0.1", "127.0.0.1", "2001:db8:2::1")
    # the C library sorts the answer (RFC 6724), so the refused addresses come in its order
    assert wait_for(lambda: "no usable IPv4 address (refused: " in initiate_error(left), 30), left.log()
    refused = re.findall(r"refused: ([0-9., ]+)\)", left.log())[-1].split(", ")
    assert sorted(refused) == ["0.0.0.0", "127.0.0.1", "224.0.0.1"], refused
    stop_stub(lab, "gw1", hostile)
    garbage = start_stub(lab, "gw1", "garbage")  # the C library ignores it and waits for a real answer
    with pytest.raises(LabError, match=r"resolve peer\.example failed: no answer within 5s"):
        left.ctl("initiate", "s2s")
    stop_stub(lab, "gw1", garbage)
    # many addresses: eight are kept (and the first is initiated to: most of them are no peer)
    many = ["198.51.100.%d" % n for n in range(100, 120)]
    crowd = start_stub(lab, "gw1", "answer", *many)
    assert wait_for(lambda: "did not come up within 1s" in initiate_error(left, "--wait", "1"), 30)
    kept = conns(left)["s2s"]["peer_addresses"]
    assert len(kept) == 8 and set(kept) <= set(many), kept
    assert remote_of(left, "CONNECTING") == kept[0]
    left.ctl("terminate", "s2s")
    stop_stub(lab, "gw1", crowd)
    good = start_stub(lab, "gw1", "answer", "198.51.100.1")
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    ping_across(lab, count=3)
    stop_stub(lab, "gw1", good)
    log = left.log()
    assert "Traceback" not in log
    failures = [f for f in left.stats()["recent_failures"] if f["what"] == "resolve peer.example"]
    assert len(failures) >= 4 and all(re.search(r"trying again in \d+s", f["reason"]) for f in failures)
