"""The fixture API of the VM lab: a two-site lab with kernel ESP, and the daemons that use it.

Inside the VM (make vm-test, scripts/vm-guest.sh sets PYIKE_VM_LAB=1) the kernel has ESP, so XFRM states
and policies that a daemon installs really carry traffic. The lab is the usual one (tests/conftest.py):

    c1 (10.1.0.10) -- gw1 [wan0 192.0.2.1]    -- internet --    [wan0 198.51.100.1] gw2 -- c2 (10.2.0.10)
                      LAN 10.1.0.0/24                                LAN 10.2.0.0/24

A test in tests/vm asks for the ``vm_lab`` fixture (tests/vm/conftest.py), a :class:`KernelLab` on a
fresh lab of its own, or for ``shared_vm_lab``: one lab for all the tests of a module that ask for it,
with every host's XFRM states and policies flushed before each test (:meth:`KernelLab.reset`); anything
else a test changes in it (interfaces, routes, files) the test undoes itself. Building a lab is most of a
test's time in the VM, so tests that only install and read XFRM entries share one.

    def test_x(vm_lab):
        vm_lab.strongswan("gw2")                       # charon with kernel-netlink (no libipsec), started
        daemon = vm_lab.pyike("gw1", **settings)       # pyike, settings = the engine's settings section
        daemon.ctl("initiate", "s2s")                  # connection "s2s", child "net"
        assert_replies(vm_lab.ping("c1", "c2"), 5)   # tests/pings.py
        states = vm_lab.xfrm_states("gw1")             # [XfrmState], with byte/packet counters

Every daemon started through it is stopped after the test, then the lab is destroyed. Run one test with
`make vm-test VM_TESTS="tests/vm/test_x.py -k name"`. Outside the VM every test of tests/vm is skipped
(IN_VM); inside it a skip fails the run (scripts/vmlab.py). Building the lab takes about a minute of the
emulated CPU; waits for daemons are scaled by SLOWDOWN, protocol timers are not.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from pyike_lab.lab import Lab
from pyike_lab.pyike import PyikeDaemon, site_to_site
from pyike_lab.strongswan import KERNEL_NETLINK_PLUGINS, SWANCTL_PLUGINS, SiteToSite, StrongSwan

# Set by scripts/vm-guest.sh, which runs pytest inside the VM lab.
IN_VM = os.environ.get("PYIKE_VM_LAB") == "1"
# QEMU emulates the VM's CPUs (TCG): every process start is 10-20 times slower than on the host, so
# the lab waits that much longer for daemons and their control tools. Only waits, never a protocol timer.
SLOWDOWN = 4.0
PSK = "vm-lab-only-psk-7d41c09b2e"
TWO_SITES = [
    {"name": "gw1", "site": 1, "role": "gateway"},
    {"name": "c1", "site": 1, "role": "client"},
    {"name": "gw2", "site": 2, "role": "gateway"},
    {"name": "c2", "site": 2, "role": "client"},
]


HOSTS = [host["name"] for host in TWO_SITES]


@dataclass(frozen=True)
class Site:
    gateway: str
    wan: str
    lan: str
    client: str
    client_address: str


SITES = {
    "gw1": Site("gw1", "192.0.2.1", "10.1.0.0/24", "c1", "10.1.0.10"),
    "gw2": Site("gw2", "198.51.100.1", "10.2.0.0/24", "c2", "10.2.0.10"),
}


def peer_of(gateway: str) -> Site:
    if gateway not in SITES:
        raise KeyError("%r is not a gateway of the VM lab (%s)" % (gateway, ", ".join(SITES)))
    return next(site for name, site in SITES.items() if name != gateway)


@dataclass
class XfrmState:
    """One SA of `ip -s xfrm state`."""

    src: str
    dst: str
    proto: str
    spi: int
    reqid: int
    mode: str
    aead: Optional[str]  # e.g. rfc4106(gcm(aes)); None for enc+auth SAs
    key_bits: int  # of the aead key (for rfc4106: key + 32-bit salt)
    icv_bits: int
    bytes: int  # lifetime current
    packets: int
    encap: Optional[str]  # e.g. "espinudp 4500 4500", None for plain ESP


_STATE_PATTERNS = {
    "head": re.compile(r"^src (\S+) dst (\S+)", re.M),
    "proto": re.compile(r"proto (\S+) spi 0x([0-9a-f]+)\S* reqid (\d+)\S* mode (\S+)"),
    "aead": re.compile(r"aead (\S+) 0x[0-9a-f]+ \((\d+) bits\) (\d+)"),
    "current": re.compile(r"lifetime current:\s+(\d+)\(bytes\), (\d+)\(packets\)"),
    "encap": re.compile(r"encap type (\S+) sport (\d+) dport (\d+)"),
}


def parse_xfrm_states(text: str) -> List[XfrmState]:
    """`ip -s xfrm state` output (iproute2 6.1) as XfrmStates; a block it cannot read raises ValueError."""
    starts = [match.start() for match in _STATE_PATTERNS["head"].finditer(text)]
    states = []
    for begin, end in zip(starts, [*starts[1:], len(text)]):
        block = text[begin:end]
        head = _STATE_PATTERNS["head"].match(block)
        proto = _STATE_PATTERNS["proto"].search(block)
        current = _STATE_PATTERNS["current"].search(block)
        if not (head and proto and current):
            raise ValueError("cannot read this `ip -s xfrm state` block:\n%s" % block)
        aead = _STATE_PATTERNS["aead"].search(block)
        encap = _STATE_PATTERNS["encap"].search(block)
        states.append(
            XfrmState(
                src=head.group(1),
                dst=head.group(2),
                proto=proto.group(1),
                spi=int(proto.group(2), 16),
                reqid=int(proto.group(3)),
                mode=proto.group(4),
                aead=aead.group(1) if aead else None,
                key_bits=int(aead.group(2)) if aead else 0,
                icv_bits=int(aead.group(3)) if aead else 0,
                bytes=int(current.group(1)),
                packets=int(current.group(2)),
                encap=" ".join(encap.groups()) if encap else None,
            )
        )
    return states


class KernelLab:
    """The two-site lab inside the VM and the daemons a test starts in it (see the module's docstring)."""

    def __init__(self, lab: Lab, daemons: List[Any]):
        self.lab = lab
        self.daemons = daemons  # tests/conftest.py's `daemons`: each is stopped after the test

    # --- the kernel's view -------------------------------------------------------------------------
    def ip_xfrm(self, host: str, *args: str) -> str:
        return self.lab.run_in(host, ["ip", "xfrm", *args])

    def xfrm_states(self, host: str) -> List[XfrmState]:
        return parse_xfrm_states(self.lab.run_in(host, ["ip", "-s", "xfrm", "state", "list"]))

    def xfrm_policies(self, host: str) -> str:
        return self.ip_xfrm(host, "policy", "list")

    def reset(self) -> None:
        """Between tests on a shared lab: flush every host's XFRM states and policies, then check that
        none is left (the daemons fixture has stopped the previous test's daemons by then)."""
        for host in HOSTS:
            self.ip_xfrm(host, "state", "flush")
            self.ip_xfrm(host, "policy", "flush")
            left = self.ip_xfrm(host, "state", "list") + self.ip_xfrm(host, "policy", "list")
            if left.strip():
                raise AssertionError("lab host %s kept XFRM entries after a flush:\n%s" % (host, left))

    def ping(self, src: str, dst: str, count: int = 5, deadline: int = 10) -> str:
        """`ping -c count -w deadline` from lab host ``src`` to ``dst`` (an address, or a lab client:
        c1, c2); returns ping's output. Any loss makes ping exit non-zero: LabError with its output."""
        address = next((s.client_address for s in SITES.values() if s.client == dst), dst)
        argv = ["ping", "-c", str(count), "-w", str(deadline), address]
        return self.lab.run_in(src, argv, timeout=deadline + 10 * SLOWDOWN)

    # --- daemons -----------------------------------------------------------------------------------
    def strongswan_site(self, gateway: str, **overrides: Any) -> SiteToSite:
        """The swanctl connection "s2s" (child "net") of ``gateway`` towards the other gateway."""
        local, remote = SITES[gateway], peer_of(gateway)
        fields: Dict[str, Any] = dict(
            name="s2s",
            local_addr=local.wan,
            remote_addr=remote.wan,
            local_id="%s.example" % local.gateway,
            remote_id="%s.example" % remote.gateway,
            psk=PSK,
            local_ts=[local.lan],
            remote_ts=[remote.lan],
        )
        fields.update(overrides)
        return SiteToSite(**fields)

    def strongswan(self, gateway: str, site: Optional[SiteToSite] = None, start: bool = True) -> StrongSwan:
        """charon with kernel-netlink (kernel ESP, no kernel-libipsec) in ``gateway``, configured with
        ``site`` (default :meth:`strongswan_site`) and, unless ``start=False``, started."""
        charon = StrongSwan(
            self.lab, gateway, KERNEL_NETLINK_PLUGINS, swanctl_plugins=SWANCTL_PLUGINS, timeout_scale=SLOWDOWN
        )
        charon.configure((site or self.strongswan_site(gateway)).swanctl_conf())
        if start:
            self.daemons.append(charon)
            charon.start()
        return charon

    def pyike_config(self, gateway: str, **settings: Any) -> Dict[str, Any]:
        """pyike's configuration of ``gateway`` (connection "s2s", child "net") towards the other
        gateway, matching :meth:`strongswan_site`; ``settings`` go into its settings section."""
        local, remote = SITES[gateway], peer_of(gateway)
        return site_to_site(
            "s2s",
            local.wan,
            remote.wan,
            "%s.example" % local.gateway,
            "%s.example" % remote.gateway,
            PSK,
            [local.lan],
            [remote.lan],
            **settings,
        )

    def pyike(self, gateway: str, config: Optional[Dict[str, Any]] = None, **settings: Any) -> PyikeDaemon:
        """The pyike daemon (the hosts' /usr/bin/python3) in ``gateway``, started with ``config``
        (default :meth:`pyike_config` with ``settings``, e.g. ``dataplane="xfrm"``)."""
        daemon = PyikeDaemon(self.lab, gateway)
        self.daemons.append(daemon)
        daemon.start(config or self.pyike_config(gateway, **settings), timeout=15.0 * SLOWDOWN)
        return daemon
