"""Interop matrix against strongSwan 5.9.8 with PSK: cipher x key exchange x role, traffic through each.

The same matrix with RSA and ECDSA certificates is test_interop_certs.py.
"""

from __future__ import annotations

import pytest
from conftest import TWO_SITES
from pings import assert_swan_counted
from test_pyike_tunnels import (
    LEFT,
    RIGHT,
    ping_across,
    pyike_config,
    start_pyike,
    start_strongswan,
    strongswan_config,
)

pytestmark = pytest.mark.root

CIPHERS = {
    "aes256gcm16": ("aes256gcm16-prfsha256", "aes256gcm16"),
    "aes256-sha256": ("aes256-sha256", "aes256-sha256"),
    "chacha20poly1305": ("chacha20poly1305-prfsha256", "chacha20poly1305"),
}
GROUPS = ["x25519", "ecp256", "modp2048"]


@pytest.mark.parametrize("initiator", ["pyike", "strongswan"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("cipher", sorted(CIPHERS))
def test_matrix(make_lab, daemons, cipher, group, initiator):
    lab = make_lab(TWO_SITES)
    ike_prefix, esp = CIPHERS[cipher]
    ike = "%s-%s" % (ike_prefix, group)
    left = start_pyike(
        lab, daemons, "gw1", pyike_config(LEFT, RIGHT, ike_proposals=[ike], esp_proposals=[esp])
    )
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT, proposals=ike, esp=esp))
    if initiator == "pyike":
        assert "initiate completed successfully" in left.ctl("initiate", "s2s")
    else:
        assert "initiate completed successfully" in right.initiate("net")
    ping_across(lab, count=3)
    (ike_sa,) = left.sas()
    assert ike_sa["proposal"].replace("/", "-").startswith(ike_prefix.split("-")[0])
    assert_swan_counted(right.list_sas(), 3)
