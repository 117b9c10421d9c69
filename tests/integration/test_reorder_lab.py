"""Reauthentication and rekeys while ESP and IKE overtake each other between the gateways.

A busy peer reorders them (strongSwan's libipsec encrypts and decrypts in other threads than the one that
handles IKE), so does a network that queues them differently. A relay in the internet host
(pyike_lab.relay) delays one kind of packet in one direction, which makes the order certain instead of a
matter of load. A LAN client pings the other site every 10 ms; make-before-break must lose nothing:

- strongSwan answers the IKE_AUTH of a reauthentication and sends on the new Child SA at once; with its
  IKE delayed, that ESP reaches pyike before the response that gives pyike the keys (runtime/early.py);
- pyike deletes the old IKE SA after moving its traffic to the new Child SAs; with its ESP delayed, the
  DELETE would reach strongSwan before the last packets sent on the old Child SAs, and strongSwan closes
  them when the DELETE arrives (ike/duplicates.py, RETIRE_DRAIN).
"""

from __future__ import annotations

import contextlib
import time

import pytest
from pyike_lab.relay import DelayRelay
from test_lifecycle_lab import _strongswan_child, flood, one_pair
from test_pyike_tunnels import LEFT, RIGHT, pyike_config, start_pyike, start_strongswan, strongswan_config
from test_rekey_lab import losses, wait_for

pytestmark = pytest.mark.root

IKE_DELAY = 0.3  # seconds: longer than the peer takes from installing a Child SA to answering
ESP_DELAY = 0.2  # seconds: ESP queued behind, IKE not


@contextlib.contextmanager
def delayed(lab, *rules):
    """Relays for (source gateway, destination gateway, {kind: seconds}) while the block runs."""
    relays = [
        DelayRelay(lab, source["addr"], destination["addr"], delays, tun="imp%d" % index, table=100 + index)
        for index, (source, destination, delays) in enumerate(rules)
    ]
    with contextlib.ExitStack() as stack:
        for relay in relays:
            stack.enter_context(relay)
        yield relays


def pings_through(lab, action, count=300):
    """Ping every 10 ms while `action` runs half a second in; (lost, ping output)."""
    ping = flood(lab, count=count)
    time.sleep(0.5)
    action()
    return losses(ping)


def reauthenticate(daemon):
    assert "reauthenticating 1 IKE SA" in daemon.ctl("rekey", "s2s", "--reauth")


# --- reauthentication against strongSwan ---------------------------------------------------------------


def test_reauthentication_against_strongswan_when_its_esp_overtakes_its_ike_auth_response(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    with delayed(lab, (RIGHT, LEFT, {"ike": IKE_DELAY})) as (relay,):
        lost, out = pings_through(lab, lambda: reauthenticate(left))
    assert relay.counts["ike"] >= 3 and relay.counts["esp"] >= 250, relay.counts
    assert lost == 0, out
    # the window was there: ESP on the new Child SA came before the IKE_AUTH response, and was kept
    assert left.stats()["dataplane"]["io"]["early_in"] > 0
    assert wait_for(lambda: len(left.sas()) == 1, 5), left.sas()
    one_pair(left, _strongswan_child(right))


def test_reauthentication_against_strongswan_when_its_delete_overtakes_our_esp(lab, daemons):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    with delayed(lab, (LEFT, RIGHT, {"esp": ESP_DELAY})) as (relay,):
        lost, out = pings_through(lab, lambda: reauthenticate(left))
    assert relay.counts["esp"] >= 250 and relay.counts["ike"] >= 3, relay.counts
    assert lost == 0, out
    assert wait_for(lambda: len(left.sas()) == 1, 5), left.sas()
    one_pair(left, _strongswan_child(right))
    assert "deleting the IKE SA in" in left.log()


# --- the same reorderings between two pyikes, and for Child SA rekeys against strongSwan ----------------


@pytest.mark.parametrize("who", ["gw1", "gw2"])
def test_reauthentication_between_pyikes_with_esp_and_ike_reordered(lab, daemons, who):
    """The end that reauthenticates gets the other's IKE late and sends its own ESP late."""
    gateways = {
        "gw1": start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT)),
        "gw2": start_pyike(lab, daemons, "gw2", pyike_config(RIGHT, LEFT)),
    }
    gateways["gw1"].ctl("initiate", "s2s")
    me, other = (LEFT, RIGHT) if who == "gw1" else (RIGHT, LEFT)
    with delayed(lab, (other, me, {"ike": IKE_DELAY}), (me, other, {"esp": ESP_DELAY})):
        lost, out = pings_through(lab, lambda: reauthenticate(gateways[who]))
    assert lost == 0, out
    left, right = gateways["gw1"], gateways["gw2"]
    assert wait_for(lambda: len(left.sas()) == len(right.sas()) == 1, 10), (left.sas(), right.sas())
    (right_child,) = right.sas()[0]["children"]
    one_pair(left, (right_child["spi_in"], right_child["spi_out"]))


@pytest.mark.parametrize("who", ["pyike", "strongswan"])
def test_child_sa_rekeys_against_strongswan_with_esp_and_ike_reordered(lab, daemons, who):
    left = start_pyike(lab, daemons, "gw1", pyike_config(LEFT, RIGHT))
    right = start_strongswan(lab, daemons, "gw2", strongswan_config(RIGHT, LEFT))
    left.ctl("initiate", "s2s")
    spi_before = left.sas()[0]["children"][0]["spi_in"]
    me, other = (LEFT, RIGHT) if who == "pyike" else (RIGHT, LEFT)

    def rekey():
        if who == "pyike":
            assert "rekeying 1" in left.ctl("rekey", "s2s/net")
        else:
            right.swanctl("--rekey", "--child", "net")

    with delayed(lab, (other, me, {"ike": IKE_DELAY}), (me, other, {"esp": ESP_DELAY})):
        lost, out = pings_through(lab, rekey)
    assert lost == 0, out
    _ike, child = one_pair(left, _strongswan_child(right))
    assert child["spi_in"] != spi_before
