"""Rekeying against strongSwan in the lab: Child SA and IKE SA rekeys started from either side while a
LAN client pings the other site every 10 ms; not one packet may be lost (make-before-break)."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from pyike_lab.lab import nsenter_argv, wait_for
from test_pyike_tunnels import LEFT, RIGHT, pyike_config, start_pyike, start_strongswan, strongswan_config

pytestmark = pytest.mark.root


def flood(lab, count=600, interval="0.01"):
    """A ping flood from c1 to c2 in the background; returns the Popen."""
    argv = nsenter_argv(
        lab.pid_of("c1"), ["ping", "-q", "-c", str(count), "-i", interval, "-W", "2", "10.2.0.10"]
    )
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def losses(proc):
    out, _err = proc.communicate(timeout=60)
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert match, out
    return int(match.group(1)) - int(match.group(2)), out


@pytest.mark.parametrize("esp", ["aes256gcm16", "aes256gcm16-x25519"])
def test_rekeys_from_both_sides_lose_no_packet(lab, daemons, esp):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, esp_proposals=[esp]))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, esp=esp))
    left.ctl("initiate", "s2s")
    spi_before = left.sas()[0]["children"][0]["spi_in"]
    ping = flood(lab)
    time.sleep(0.5)
    left.ctl("rekey", "s2s/net")  # pyike starts a Child SA rekey
    time.sleep(0.8)
    right.swanctl("--rekey", "--child", "net")  # strongSwan starts one
    time.sleep(0.8)
    left.ctl("rekey", "s2s", "--ike")  # pyike rekeys the IKE SA
    time.sleep(0.8)
    right.swanctl("--rekey", "--ike", "s2s")  # strongSwan rekeys the IKE SA
    time.sleep(0.8)
    left.ctl("rekey", "s2s/net")  # and a Child SA rekey over the rekeyed IKE SA
    lost, out = losses(ping)
    assert lost == 0, out
    sas = left.sas()
    assert len(sas) == 1 and len(sas[0]["children"]) == 1
    assert sas[0]["children"][0]["spi_in"] != spi_before
    assert left.stats()["ike"].get("ike_rekeys", 0) == 2
    listing = right.list_sas()
    assert listing.count("ESTABLISHED") == 1 and listing.count("INSTALLED") == 1
    log = left.log()
    assert "Traceback" not in log and "PSK" not in log


def test_short_lifetimes_rekey_repeatedly_for_a_while(lab, daemons):
    config_left = pyike_config(LEFT, RIGHT)
    config_left["connections"]["s2s"]["children"]["net"]["rekey_time"] = 3
    config_left["connections"]["s2s"]["rekey_time"] = 5
    left = start_pyike(lab, daemons, "gw1", config_left)
    start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    lost, out = losses(flood(lab, count=1000, interval="0.015"))
    assert lost == 0, out
    stats = left.stats()
    assert stats["ike"].get("ike_rekeys", 0) >= 2
    sas = left.sas()
    assert len(sas) == 1 and len(sas[0]["children"]) == 1


def test_dead_peer_detection_and_restart(lab, daemons):
    config = pyike_config(LEFT, RIGHT, retransmit_timeout=0.5, retransmit_base=1.0, retransmit_tries=3)
    config["connections"]["s2s"].update({"dpd_delay": 2, "dpd_action": "restart"})
    left = start_pyike(lab, daemons, "gw1", config)
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    right.kill()  # the peer dies without a DELETE
    killed = time.monotonic()
    assert wait_for(lambda: any("no answer" in f["reason"] for f in left.stats()["recent_failures"]), 15)
    noticed = time.monotonic() - killed
    # dpd_delay (2 s) + 3 retransmits of 0.5 s, plus polling slack
    assert noticed < 2 + 4 * 0.5 + 2.5, noticed
    assert not any(sa["state"] == "ESTABLISHED" for sa in left.sas())
    right.start()  # the peer comes back with no state; pyike initiates again by itself
    assert wait_for(lambda: any(sa["state"] == "ESTABLISHED" and sa["children"] for sa in left.sas()), 20)
    lost, out = losses(flood(lab, count=20, interval="0.05"))
    assert lost == 0, out
