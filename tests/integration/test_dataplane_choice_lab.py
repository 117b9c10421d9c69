"""settings.dataplane on a host without kernel ESP (issue 13): ``auto`` picks userspace and says why,
``kernel`` refuses to start and says why, ``userspace`` asks the kernel nothing.

The daemons run under the hosts' interpreter (/usr/bin/python3: Debian's 3.11 with distro cryptography
and pyroute2) in lab hosts of their own. Whether this kernel has ESP is asked of iproute2 first (the
oracle): on a kernel with ESP these expectations turn around, and the test says so instead of passing.
"""

from __future__ import annotations

import pytest
from pyike_lab.capture import Capture
from pyike_lab.lab import LabError
from pyike_lab.pyike import PyikeDaemon, site_to_site

pytestmark = pytest.mark.root
PSK = "dataplane-choice-psk-4f1d2a"
LEFT = dict(addr="192.0.2.1", id="gw1.example", net="10.1.0.0/24")
RIGHT = dict(addr="198.51.100.1", id="gw2.example", net="10.2.0.0/24")
NO_ESP = "XFRM_MSG_NEWSA for esp: Requested type not found (errno 93)"


def config(me, peer, **settings):
    return site_to_site(
        "s2s", me["addr"], peer["addr"], me["id"], peer["id"], PSK, [me["net"]], [peer["net"]], **settings
    )


def kernel_has_esp(lab, host) -> bool:
    out = lab.run_in(
        host,
        ["sh", "-c", "ip xfrm state add src 192.0.2.9 dst 192.0.2.8 proto esp spi 0x100 mode tunnel "
         "enc 'cbc(aes)' 0x000102030405060708090a0b0c0d0e0f auth-trunc 'hmac(sha256)' "
         "0x000102030405060708090a0b0c0d0e0f000102030405060708090a0b0c0d0e0f 128 2>&1 "
         "&& ip xfrm state delete src 192.0.2.9 dst 192.0.2.8 proto esp spi 0x100 && echo HAS-ESP; true"],
    )  # fmt: skip
    return "HAS-ESP" in out


def test_auto_picks_userspace_here_and_says_why(lab, daemons):
    if kernel_has_esp(lab, "gw1"):
        pytest.fail("this kernel has ESP: auto must pick kernel here (run tests/vm/test_kernel_*.py)")
    left, right = PyikeDaemon(lab, "gw1"), PyikeDaemon(lab, "gw2")
    daemons.extend([left, right])
    left.start(config(LEFT, RIGHT))  # no dataplane setting: the default is auto
    right.start(config(RIGHT, LEFT, dataplane="auto"))
    for daemon in (left, right):
        choice = daemon.stats()["dataplane"]
        assert (choice["mode"], choice["setting"]) == ("userspace", "auto"), choice
        assert choice["reason"] == "auto: kernel ESP unavailable: " + NO_ESP, choice
        assert "dataplane: userspace (auto: kernel ESP unavailable: %s)" % NO_ESP in daemon.ctl("stats")
        assert "dataplane: userspace (auto: kernel ESP unavailable" in daemon.log()
    # and the userspace dataplane it picked carries the tunnel
    with Capture(lab, "internet", "inet0", "ip") as wire:
        assert "initiate completed successfully" in left.ctl("initiate", "s2s")
        out = lab.run_in("c1", ["ping", "-c", "3", "-i", "0.1", "-w", "10", "10.2.0.10"])
    assert "3 packets transmitted, 3 received" in out, out
    assert wire.count("10.1.0.10 >") == 0, wire.lines  # only ESP crosses
    assert lab.run_in("gw1", ["ip", "xfrm", "policy"]).strip() == ""  # nothing of ours in the kernel


def test_kernel_refuses_to_start_without_kernel_esp_and_says_why(lab, daemons):
    if kernel_has_esp(lab, "gw1"):
        pytest.fail("this kernel has ESP: settings.dataplane kernel must start here")
    daemon = PyikeDaemon(lab, "gw1")
    daemons.append(daemon)
    with pytest.raises(LabError):
        daemon.start(config(LEFT, RIGHT, dataplane="kernel"), timeout=10.0)
    assert (
        "pyike: cannot start: settings.dataplane is kernel, but kernel ESP unavailable: %s; set "
        "settings.dataplane to auto or userspace (ipsec_dataplane in the inventory) to use the userspace "
        "dataplane" % NO_ESP
    ) in daemon.log(), daemon.log()
    assert "Traceback" not in daemon.log()


def test_userspace_is_taken_as_said(lab, daemons):
    daemon = PyikeDaemon(lab, "gw1")
    daemons.append(daemon)
    daemon.start(config(LEFT, RIGHT, dataplane="userspace"))
    choice = daemon.stats()["dataplane"]
    assert choice["mode"] == "userspace" and choice["reason"] == "settings.dataplane is userspace", choice
