"""The kernel dataplane's choices and what it asks of the kernel, on a kernel without ESP (this machine):
the dataplane choice, the policies of a Child SA, and a failed install that leaves nothing behind.
The states themselves are proven in the VM (tests/vm/test_kernel_*.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyike.esp import TrafficSelector
from pyike.runtime.choice import DataplaneUnavailable, choose_dataplane
from pyike.runtime.kernel_dataplane import KernelChild, KernelDataplane, _pair_selectors, _ports

HERE = Path(__file__).resolve().parent
MODULE_UTILS = HERE.parents[2] / "plugins" / "module_utils"
NO_ESP = "kernel ESP unavailable: XFRM_MSG_NEWSA for esp: Requested type not found (errno 93)"


def test_auto_takes_the_kernel_only_when_the_probe_installed_a_state():
    def yes():
        return True, "kernel ESP available: ..."

    def no():
        return False, NO_ESP

    assert choose_dataplane("auto", no).as_dict() == {
        "mode": "userspace",
        "setting": "auto",
        "reason": "auto: " + NO_ESP,
    }
    assert choose_dataplane("auto", yes).mode == "kernel"
    assert choose_dataplane("kernel", yes).mode == "kernel"

    def never():
        raise AssertionError("userspace must not probe the kernel")

    assert choose_dataplane("userspace", never).reason == "settings.dataplane is userspace"
    with pytest.raises(DataplaneUnavailable) as caught:
        choose_dataplane("kernel", no)
    assert str(caught.value).startswith(
        "settings.dataplane is kernel, but " + NO_ESP + "; set settings.dataplane"
    )


def test_port_ranges_become_masks_as_strongswan_computes_them():
    assert _ports(0, 65535) == (0, 0)
    assert _ports(443, 443) == (443, 0xFFFF)
    assert _ports(1024, 2047) == (1024, 0xFC00)  # an aligned range is exact
    assert _ports(1000, 1100) == (0, 0xF800)  # widened to the common leading bits (0-2047)


def test_selectors_of_a_pair_cover_ranges_with_prefixes():
    local = TrafficSelector.from_network("10.1.0.0/24")
    remote = TrafficSelector(
        4,
        int.from_bytes(bytes([10, 2, 0, 0]), "big"),
        int.from_bytes(bytes([10, 2, 0, 2]), "big"),
        6,
        0,
        65535,
    )
    got = [(s.src, s.dst, s.proto, s.dport, s.dport_mask) for s in _pair_selectors(local, remote)]
    assert got == [("10.1.0.0/24", "10.2.0.0/31", 6, 0, 0), ("10.1.0.0/24", "10.2.0.2/32", 6, 0, 0)]


def test_policies_of_a_child_name_the_outbound_spi_in_the_out_template():
    dataplane = KernelDataplane.__new__(KernelDataplane)  # no socket: only the policy layout is asked
    child = KernelChild("c", 0x70790001, "192.0.2.1", ("198.51.100.1", 4500), True,
                        (TrafficSelector.from_network("10.1.0.0/24"),), (TrafficSelector.from_network("10.2.0.0/24"),))  # fmt: skip

    class Out:
        spi = 0xC0FFEE01

    child.outbound = Out()
    specs = dataplane._policy_specs(child)
    got = [
        (s.direction, s.selector.src, s.selector.dst, s.tmpl_src, s.tmpl_dst, s.spi, s.selector.priority())
        for s in specs
    ]
    assert got == [
        ("out", "10.1.0.0/24", "10.2.0.0/24", "192.0.2.1", "198.51.100.1", 0xC0FFEE01, 375423),
        ("in", "10.2.0.0/24", "10.1.0.0/24", "198.51.100.1", "192.0.2.1", 0, 375423),
        ("fwd", "10.2.0.0/24", "10.1.0.0/24", "198.51.100.1", "192.0.2.1", 0, 375423),
    ]


SCRIPT = r"""
import json, subprocess
from pyike.esp import TrafficSelector
from pyike.ids import EncrId
from pyike.runtime.kernel_dataplane import KernelDataplane, KernelSA
from pyike.runtime.xfrm import probe
dataplane = KernelDataplane([], nat_t_port=4500)
from pyike.ids import IntegId
out = KernelSA(0xC0FFEE01, EncrId.AES_CBC, bytes(16), IntegId.HMAC_SHA2_256_128, bytes(32), True)
inb = KernelSA(0xC0FFEE02, EncrId.AES_CBC, bytes(16), IntegId.HMAC_SHA2_256_128, bytes(32), True)
result = {"probe": probe()}
try:
    dataplane.install_child("c", out, inb, ["10.1.0.0/24"], ["10.2.0.0/24"], ("198.51.100.1", 4500), True, local="192.0.2.1")
except OSError as exc:
    result["error"] = str(exc)
result["children"] = list(dataplane.children)
result["states"] = subprocess.run(["ip", "xfrm", "state"], capture_output=True, text=True).stdout
result["policies"] = subprocess.run(["ip", "xfrm", "policy"], capture_output=True, text=True).stdout
dataplane.close()
print(json.dumps(result))
"""


@pytest.mark.root
def test_a_child_the_kernel_refuses_leaves_nothing_installed():
    done = subprocess.run(
        ["unshare", "--net", "--", sys.executable, "-c", SCRIPT],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(MODULE_UTILS)), check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if result["probe"][0]:
        pytest.skip("this kernel has ESP: the VM tests prove installs (tests/vm/test_kernel_*.py)")
    assert (
        result["error"] == "XFRM_MSG_NEWSA esp SPI c0ffee02 to 192.0.2.1: Requested type not found (errno 93)"
    )
    assert result["children"] == [] and result["states"] == "" and result["policies"] == ""
