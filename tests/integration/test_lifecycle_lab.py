"""More of the IKE lifecycle in the lab: byte lifetimes, both ends initiating at once, reauthentication.

pyike against itself and against strongSwan, a LAN client pinging the other site every 10 ms. Rekeys and
reauthentications are make-before-break: not one packet may be lost.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time

import pytest
from pyike_lab.lab import nsenter_argv
from pyike_lab.strongswan import LOG_FILE, PLUGINS, STRONGSWAN_CONF, VICI_SOCKET
from test_pyike_tunnels import LEFT, RIGHT, pyike_config, start_pyike, start_strongswan, strongswan_config
from test_rekey_lab import losses, wait_for

pytestmark = pytest.mark.root


def flood(lab, count, interval="0.01", size=56):
    """c1 pings c2 in the background (`size` bytes of payload); returns the Popen."""
    argv = ["ping", "-q", "-c", str(count), "-i", interval, "-s", str(size), "-W", "2", "10.2.0.10"]
    return subprocess.Popen(
        nsenter_argv(lab.pid_of("c1"), argv), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def child_conf(config, **values):
    config["connections"]["s2s"]["children"]["net"].update(values)
    return config


def ike_sas(daemon):
    return [sa for sa in daemon.sas() if sa["state"] == "ESTABLISHED"]


def one_pair(left, right_spis):
    """pyike holds exactly one IKE SA and one Child SA, the counterpart of `right_spis` (spi_in, spi_out)."""
    sas = left.sas()
    assert len(sas) == 1 and sas[0]["state"] == "ESTABLISHED", sas
    (child,) = sas[0]["children"]
    assert (child["spi_out"], child["spi_in"]) == right_spis
    return sas[0], child


def strongswan_pairs(listing):
    """(IKE SAs, installed Child SAs, [(spi_in, spi_out)] of those) in `swanctl --list-sas` output. Rekeyed
    Child SAs stay listed as DELETED for a few seconds (strongSwan's delete_rekeyed_delay): not counted."""
    installed = []
    for block in re.split(r"\n(?=\s+\S+: #\d+, reqid )", listing):
        header = re.match(r"\s+\S+: #\d+, reqid \d+, (\w+),", block)
        spis = re.search(r"\n\s+in\s+([0-9a-f]{8})[^\n]*\n\s+out\s+([0-9a-f]{8})", block)
        if header and header.group(1) == "INSTALLED" and spis:
            installed.append(spis.groups())
    return listing.count("ESTABLISHED"), len(installed), installed


# --- byte lifetimes ------------------------------------------------------------------------------------


def test_a_small_rekey_bytes_rekeys_again_and_again_without_loss(lab, daemons):
    """About 100 kB/s each way through Child SAs of 60 kB: a rekey every half second or so, from both ends."""
    volume = {"rekey_bytes": 60000, "life_bytes": 150000}
    left = start_pyike(lab, daemons, "gw1", child_conf(pyike_config(LEFT, RIGHT), **volume))
    right = start_pyike(lab, daemons, "gw2", child_conf(pyike_config(RIGHT, LEFT), **volume))
    left.ctl("initiate", "s2s")
    ping = flood(lab, count=600, interval="0.01", size=1000)
    lost, out = losses(ping)
    assert lost == 0, out
    rekeys = [d.stats()["ike"].get("volume_rekeys", 0) for d in (left, right)]
    assert sum(rekeys) >= 5, rekeys
    (right_child,) = ike_sas(right)[0]["children"]
    _ike, child = one_pair(left, (right_child["spi_in"], right_child["spi_out"]))
    assert child["bytes_out"] >= 600 * 1000  # the dataplane child keeps its totals across rekeys
    assert "volume_expiries" not in left.stats()["ike"]
    assert "Traceback" not in left.log() + right.log()


def test_rekey_bytes_against_strongswan(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", child_conf(pyike_config(LEFT, RIGHT), rekey_bytes=100000))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    lost, out = losses(flood(lab, count=400, interval="0.01", size=1000))
    assert lost == 0, out
    assert left.stats()["ike"].get("volume_rekeys", 0) >= 2
    one_pair(left, _strongswan_child(right))
    assert "reached its bytes soft limit" in left.log()


def _strongswan_child(right):
    established, installed, spis = strongswan_pairs(right.list_sas())
    assert (established, installed, len(spis)) == (1, 1, 1), right.list_sas()
    return spis[0]


# --- both ends initiate at once ------------------------------------------------------------------------


def cut(lab, host, peer_addr):
    lab.run_in(host, ["ip", "route", "add", "blackhole", peer_addr + "/32"])


def mend(lab, host, peer_addr):
    lab.run_in(host, ["ip", "route", "del", "blackhole", peer_addr + "/32"])


def initiate_both(lab, left_initiate, right_initiate, sends_failed):
    """Both gateways initiate while the path between them is cut, so that neither IKE_SA_INIT arrives;
    once both ends have tried (`sends_failed`), the path comes back and the retransmissions cross."""
    cut(lab, "gw1", RIGHT["addr"])
    cut(lab, "gw2", LEFT["addr"])
    results = {}

    def run(name, call):
        try:
            results[name] = call()
        except Exception as exc:  # reported by the caller
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=("left", left_initiate)),
        threading.Thread(target=run, args=("right", right_initiate)),
    ]
    for thread in threads:
        thread.start()
    tried = wait_for(sends_failed, 10, step=0.05)
    mend(lab, "gw1", RIGHT["addr"])
    mend(lab, "gw2", LEFT["addr"])
    for thread in threads:
        thread.join(30)
    assert tried, "the IKE_SA_INIT requests were not sent while the path was cut"
    return results


def send_failed(daemon):
    """pyike tried to send IKE into the cut path (the blackhole route refuses it: EINVAL)."""
    return any(e.get("tx_errors", 0) for e in daemon.stats()["dataplane"]["endpoints"].values())


FAST_RETRANSMIT = dict(retransmit_timeout=0.5, retransmit_base=1.5)


def test_both_pyike_ends_initiate_at_once(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, **FAST_RETRANSMIT))
    right = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT, **FAST_RETRANSMIT))
    results = initiate_both(
        lab,
        lambda: left.ctl("initiate", "s2s"),
        lambda: right.ctl("initiate", "s2s"),
        lambda: send_failed(left) and send_failed(right),
    )
    assert all(isinstance(r, str) and "completed successfully" in r for r in results.values()), results
    # Both IKE SAs came up on both ends; the redundant one goes at once (negotiations that overlapped)
    # or after the grace time of 3 s (6 s on its responder).
    assert wait_for(lambda: len(left.sas()) == len(right.sas()) == 1, 12), (left.sas(), right.sas())
    for daemon in (left, right):
        assert len(re.findall(r"IKE SA s2s#\d+ up", daemon.log())) == 2, daemon.log()
    (right_sa,) = right.sas()
    (right_child,) = right_sa["children"]
    one_pair(left, (right_child["spi_in"], right_child["spi_out"]))
    deleted = [d.stats()["ike"].get("duplicate_ike_sas_deleted", 0) for d in (left, right)]
    assert sorted(deleted) == [0, 1], deleted  # one end deleted it, the other answered
    lost, out = losses(flood(lab, count=100))
    assert lost == 0, out


def charon_conf(**options):
    """strongswan.conf of the lab helper, with more charon options (e.g. faster retransmissions)."""
    text = STRONGSWAN_CONF % {"plugins": PLUGINS, "vici": VICI_SOCKET, "log": LOG_FILE}
    extra = "".join("  %s = %s\n" % item for item in options.items())
    return text.replace("charon {\n", "charon {\n" + extra, 1)


def test_pyike_and_strongswan_initiate_at_once(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT, **FAST_RETRANSMIT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    right.stop()
    right.write_file("/etc/strongswan.conf", charon_conf(retransmit_timeout=0.5, retransmit_base=1.5), "0644")
    right.start()
    results = initiate_both(
        lab,
        lambda: left.ctl("initiate", "s2s"),
        lambda: right.initiate("net"),
        lambda: send_failed(left) and "CONNECTING" in right.list_sas(),
    )
    assert all(isinstance(r, str) for r in results.values()), results
    # strongSwan (unique = no) keeps both IKE SAs; pyike deletes the redundant one, at once or after
    # its grace time (3 s, or 6 s when strongSwan initiated it)
    assert wait_for(lambda: strongswan_pairs(right.list_sas())[:2] == (1, 1) and len(left.sas()) == 1, 12), (
        right.list_sas(),
        left.sas(),
    )
    assert len(re.findall(r"IKE SA s2s#\d+ up", left.log())) == 2, left.log()
    assert len(re.findall(r"IKE_SA s2s\[\d+\] established", right.log())) == 2, right.log()
    one_pair(left, _strongswan_child(right))
    assert left.stats()["ike"].get("duplicate_ike_sas_deleted") == 1
    lost, out = losses(flood(lab, count=100))
    assert lost == 0, out


# --- reauthentication ----------------------------------------------------------------------------------


def test_reauthentication_against_strongswan_loses_no_packet(lab, daemons):
    config = pyike_config(LEFT, RIGHT)
    config["connections"]["s2s"]["reauth_time"] = 3
    left = start_pyike(lab, daemons, "gw1", config)
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    first = left.sas()[0]["spi_i"]
    ping = flood(lab, count=700)
    time.sleep(0.5)
    assert "reauthenticating 1 IKE SA" in left.ctl("rekey", "s2s", "--reauth")  # one on demand
    lost, out = losses(ping)  # and more every 3 s
    assert lost == 0, out
    assert left.stats()["ike"].get("reauthentications", 0) >= 2
    ike = settled(lambda: _paired_with_strongswan(left, right))
    assert ike["spi_i"] != first and ike["initiator"]
    assert "reauthenticated as" in left.log()


def settled(look, timeout=20.0):
    """What `look` sees once it sees something: the reauthentications go on every 3 s, and for a second or
    two of each (the new IKE SA, then RETIRE_DRAIN, then the DELETE) both ends hold two IKE SAs."""
    seen = []
    assert wait_for(lambda: seen.append(look()) or seen[-1] is not None, timeout), seen[-3:]
    return seen[-1]


def _paired_with_strongswan(left, right):
    """pyike's only IKE SA, if its only Child SA is strongSwan's only installed one (else None)."""
    sas = left.sas()
    established, installed, spis = strongswan_pairs(right.list_sas())
    if len(sas) != 1 or len(sas[0]["children"]) != 1 or (established, installed) != (1, 1):
        return None
    (child,) = sas[0]["children"]
    return sas[0] if [(child["spi_out"], child["spi_in"])] == spis else None


def _paired(left, right):
    """Both pyikes hold one IKE SA with one Child SA, the same pair (else None)."""
    sides = left.sas(), right.sas()
    if any(len(sas) != 1 or len(sas[0]["children"]) != 1 for sas in sides):
        return None
    (mine,), (theirs,) = (sas[0]["children"] for sas in sides)
    return sides if (mine["spi_in"], mine["spi_out"]) == (theirs["spi_out"], theirs["spi_in"]) else None


def test_reauthentication_between_pyikes_loses_no_packet(lab, daemons):
    """gw1 reauthenticates every 3 s; gw2 once on demand an IKE SA that gw1 initiated (to gw1 that pair
    looks like duplicates for a moment: gw2 must delete the old IKE SA itself, gw1 must not act)."""
    config = pyike_config(LEFT, RIGHT)
    config["connections"]["s2s"]["reauth_time"] = 3
    left = start_pyike(lab, daemons, "gw1", config)
    right = start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    ping = flood(lab, count=700)
    time.sleep(1.0)
    assert "reauthenticating 1 IKE SA" in right.ctl("rekey", "s2s", "--reauth")
    lost, out = losses(ping)
    assert lost == 0, out
    reauths = [d.stats()["ike"].get("reauthentications", 0) for d in (left, right)]
    assert reauths[0] >= 2 and reauths[1] == 1, reauths
    settled(lambda: _paired(left, right))
    assert not any(d.stats()["ike"].get("duplicate_ike_sas_deleted") for d in (left, right))
