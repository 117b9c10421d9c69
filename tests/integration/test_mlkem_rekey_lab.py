"""ML-KEM-768 as an additional key exchange (RFC 9370) kept through rekeys, in the lab.

pyike against pyike: hybrid x25519 + ML-KEM-768 proposals for the IKE SA and the Child SA (PFS), lifetimes
of a few seconds on both ends, so IKE SA and Child SA rekeys (with their IKE_FOLLOWUP_KE exchanges) run
from both sides while a LAN client pings the other site every 15 ms: not one packet may be lost.

pyike against strongSwan 5.9.8, which has no ML-KEM: pyike offers the hybrid proposals first and classic
ones as a fallback; the tunnel comes up, rekeys from both sides without loss, and stays classic.

ML-KEM needs cryptography 47+, so pyike runs under this test's interpreter (the venv); with Debian's
cryptography 38 the tests skip and say so.
"""

from __future__ import annotations

import sys
import time

import pytest
from pyike.crypto import features
from test_pyike_tunnels import (
    LEFT,
    PSK,
    RIGHT,
    pyike_config,
    start_pyike,
    start_strongswan,
    strongswan_config,
)
from test_rekey_lab import flood, losses

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(
        not features.has_mlkem(768),
        reason="this interpreter's cryptography has no ML-KEM-768 (needs 47+): run the lab tests with the venv",
    ),
]

HYBRID_IKE = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
HYBRID_ESP = "aes256gcm16-x25519-ke1_mlkem768"


def hybrid_config(me, peer, child_rekey, ike_rekey):
    config = pyike_config(me, peer, ike_proposals=[HYBRID_IKE], esp_proposals=[HYBRID_ESP])
    config["connections"]["s2s"]["rekey_time"] = ike_rekey
    config["connections"]["s2s"]["children"]["net"]["rekey_time"] = child_rekey
    return config


def test_pyike_to_pyike_keeps_ml_kem_through_repeated_rekeys_without_loss(lab, daemons):
    # gw1 rekeys the IKE SA every ~4 s, gw2 the Child SA every ~3 s (0: that end never starts one), so
    # each daemon runs IKE_FOLLOWUP_KE as initiator for one kind of SA and as responder for the other.
    left = start_pyike(lab, daemons, "gw1", hybrid_config(LEFT, RIGHT, 0, 4), sys.executable)
    right = start_pyike(lab, daemons, "gw2", hybrid_config(RIGHT, LEFT, 3, 0), sys.executable)
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    lost, out = losses(flood(lab, count=800, interval="0.015"))  # ~12 s under ping
    assert lost == 0, out + "\n--- gw1 ---\n" + left.log()[-6000:] + "\n--- gw2 ---\n" + right.log()[-6000:]
    stats = [left.stats()["ike"], right.stats()["ike"]]
    assert min(s.get("ike_rekeys", 0) for s in stats) >= 2, stats  # each rekey counts on both ends
    # Every Child SA rekey and every IKE SA rekey ran an IKE_FOLLOWUP_KE; both ends count completions.
    assert min(s.get("followup_ke_completed", 0) for s in stats) >= 5, stats
    assert not any(s.get("followup_ke_failed") or s.get("followup_ke_timeouts") for s in stats), stats
    for daemon in (left, right):
        (ike,) = [sa for sa in daemon.sas() if sa["state"] == "ESTABLISHED"]
        assert "ke1_mlkem768" in ike["proposal"], ike
        (child,) = ike["children"]
        assert "/x25519" in child["proposal"] and "/ke1_mlkem768" in child["proposal"], child
        log = daemon.log()
        assert "Traceback" not in log and PSK not in log
    # Both ends agree on the Child SA's SPIs. The rekeys go on every 3 s and the two listings are two
    # moments: compare a listing of gw2 taken between two equal listings of gw1 (no rekey finished on gw1
    # meanwhile), the first such moment within a few rekey periods.
    deadline = time.monotonic() + 15.0
    while True:
        before, mirrored, after = child_spis(left), child_spis(right), child_spis(left)
        mirrored = mirrored[::-1] if mirrored else None
        if (before is not None and before == after == mirrored) or time.monotonic() > deadline:
            break
    assert before is not None and before == after == mirrored, (before, mirrored, after)


def child_spis(daemon):
    """(spi_in, spi_out) of the one Child SA of the one established IKE SA; None while a rekey has two."""
    children = [child for sa in daemon.sas() if sa["state"] == "ESTABLISHED" for child in sa["children"]]
    return (children[0]["spi_in"], children[0]["spi_out"]) if len(children) == 1 else None


def test_strongswan_without_ml_kem_gets_the_classic_fallback_through_rekeys(lab, daemons):
    config = pyike_config(
        LEFT,
        RIGHT,
        ike_proposals=[HYBRID_IKE, "aes256gcm16-prfsha256-x25519"],
        esp_proposals=[HYBRID_ESP, "aes256gcm16-x25519"],
    )
    left = start_pyike(lab, daemons, "gw1", config, sys.executable)
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, esp="aes256gcm16-x25519"))
    assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    (ike,) = left.sas()
    assert ike["proposal"] == "aes256gcm16/prfsha256/x25519"
    ping = flood(lab, count=400, interval="0.01")
    time.sleep(0.5)
    left.ctl("rekey", "s2s/net")  # pyike: Child SA with PFS, offering ML-KEM first
    time.sleep(0.8)
    right.swanctl("--rekey", "--child", "net")  # strongSwan: Child SA; pyike answers with the fallback
    time.sleep(0.8)
    left.ctl("rekey", "s2s", "--ike")  # pyike: IKE SA, offering ML-KEM first again
    time.sleep(0.8)
    right.swanctl("--rekey", "--ike", "s2s")  # strongSwan: IKE SA
    lost, out = losses(ping)
    assert lost == 0, out
    stats = left.stats()["ike"]
    assert stats.get("ike_rekeys", 0) == 2 and not stats.get("followup_ke_completed"), stats
    (ike,) = [sa for sa in left.sas() if sa["state"] == "ESTABLISHED"]
    assert ike["proposal"] == "aes256gcm16/prfsha256/x25519"
    (child,) = ike["children"]
    assert "/x25519" in child["proposal"] and "mlkem" not in child["proposal"], child  # PFS, classic
    listing = right.list_sas()
    assert listing.count("ESTABLISHED") == 1 and listing.count("INSTALLED") == 1, listing
    assert "CURVE_25519" in listing, listing
    assert "Traceback" not in left.log()
