"""The daemon's side of the dataplane choice: auto falls back to userspace when the kernel refuses the
IKE sockets' setup (ESP in UDP, bypass policies), kernel does not start, a reload that asks for another
dataplane says a restart is needed, and userspace never loads pyroute2."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyike.config import parse_config
from pyike.runtime import daemon as daemon_module
from pyike.runtime import xfrm
from pyike.runtime.choice import AUTO, KERNEL, DataplaneChoice
from pyike.runtime.daemon import Daemon, StartError

MODULE_UTILS = Path(__file__).resolve().parents[3] / "plugins" / "module_utils"


class FakeSocket:
    family = 2


class FakeEndpoint:
    def __init__(self, nat_t):
        self.nat_t, self.sock, self.closed = nat_t, FakeSocket(), False

    def close(self):
        self.closed = True


def _daemon(setting, dataplane="auto"):
    config = parse_config({"connections": {}, "settings": {"dataplane": dataplane}}, "<test>")
    daemon = Daemon("<test>", config)
    daemon.dataplane_choice = DataplaneChoice(KERNEL, setting, "auto: kernel ESP available: ...")
    return daemon


@pytest.fixture
def endpoints(monkeypatch):
    made = [FakeEndpoint(False), FakeEndpoint(True)]
    monkeypatch.setattr(daemon_module, "open_endpoints", lambda *args, **kwargs: made)
    return made


def _refuse(*args):
    raise OSError(errno.ENOPROTOOPT, "Protocol not available")


@pytest.mark.parametrize(
    ("refused", "step"),
    [
        ("enable_esp_in_udp", "ESP in UDP on the NAT-T socket (UDP_ENCAP_ESPINUDP)"),
        ("bypass_socket", "IPsec bypass policies on the IKE sockets (IP_XFRM_POLICY)"),
    ],
)
def test_auto_falls_back_to_userspace_when_the_ike_sockets_cannot_be_set_up(
    monkeypatch, endpoints, refused, step
):
    def ok(_arg):
        return None

    monkeypatch.setattr(daemon_module, "enable_esp_in_udp", _refuse if refused == "enable_esp_in_udp" else ok)
    monkeypatch.setattr(xfrm, "bypass_socket", _refuse if refused == "bypass_socket" else ok)
    daemon = _daemon(AUTO)
    assert daemon._kernel_dataplane(["192.0.2.1"]) is None
    assert (daemon.dataplane_choice.mode, daemon.dataplane_choice.setting) == ("userspace", AUTO)
    assert daemon.dataplane_choice.reason.startswith("auto: kernel ESP is there, but %s failed: " % step)
    assert "Protocol not available" in daemon.dataplane_choice.reason
    assert all(endpoint.closed for endpoint in endpoints)
    assert daemon.dataplane is None

    daemon = _daemon(KERNEL)
    for endpoint in endpoints:
        endpoint.closed = False
    with pytest.raises(StartError, match=step.replace("(", r"\(").replace(")", r"\)")):
        daemon._kernel_dataplane(["192.0.2.1"])
    assert all(endpoint.closed for endpoint in endpoints)


def test_every_ike_socket_gets_the_bypass_policies(monkeypatch, endpoints):
    bypassed, encap = [], []
    monkeypatch.setattr(xfrm, "bypass_socket", bypassed.append)
    monkeypatch.setattr(daemon_module, "enable_esp_in_udp", encap.append)

    class Kernel:
        def __init__(self, *args, **kwargs):
            pass

        def flush(self):
            return 0, 0

    from pyike.runtime import kernel_dataplane

    monkeypatch.setattr(kernel_dataplane, "KernelDataplane", Kernel)
    daemon = _daemon(AUTO)
    assert daemon._kernel_dataplane(["192.0.2.1"]) == endpoints
    assert bypassed == [endpoint.sock for endpoint in endpoints]  # port 500 and 4500
    assert encap == [endpoints[1]]  # ESP in UDP on the NAT-T socket only


def test_a_reload_that_changes_the_dataplane_says_a_restart_is_needed(tmp_path, caplog):
    path = tmp_path / "pyike.json"
    path.write_text(json.dumps({"connections": {}, "settings": {"dataplane": "userspace"}}))
    path.chmod(0o600)
    daemon = Daemon(str(path), parse_config({"connections": {}, "settings": {}}, "<test>"))
    daemon.dataplane_choice = DataplaneChoice(KERNEL, AUTO, "auto: kernel ESP available: ...")
    with caplog.at_level(logging.WARNING, logger="pyike.daemon"):
        answer = asyncio.run(daemon._reload())
    expected = "settings.dataplane changed from auto to userspace: the kernel dataplane stays until the daemon restarts"
    assert expected in answer["message"]
    assert expected in caplog.text
    caplog.clear()
    daemon.dataplane_choice = DataplaneChoice("userspace", "userspace", "settings.dataplane is userspace")
    with caplog.at_level(logging.WARNING, logger="pyike.daemon"):
        answer = asyncio.run(daemon._reload())
    assert "restart" not in answer["message"] and "restart" not in caplog.text


def test_the_userspace_daemon_does_not_load_pyroute2():
    """Imported, the daemon loads no pyroute2 (120 ms, and nothing on hosts that never ask the kernel):
    the kernel dataplane and the XFRM client are imported when kernel mode starts."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys, pyike.runtime.daemon; print(sorted(m for m in sys.modules if " +
         "'pyroute2' in m or m.endswith(('.xfrm', '.xfrm_msg', '.kernel_dataplane'))))"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(MODULE_UTILS)), timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
