"""ESP throughput: strongSwan (kernel-libipsec) against pyike, same lab, same run (not a test).

    sudo .venv/bin/python bench/esp_throughput.py [--seconds 10] [--runs 3] [--traffic forwarded,originated]
        [--family 4,6] [--encap udp,raw] [--python /usr/bin/python3 ...] [--cryptography-wheel WHEEL]
        [--udp-loss [--udp-seconds 60]] [--paths bare,strongswan,pyike,pyike-ike] [--profile PREFIX]

One lab (gw1/c1 at site 1, gw2/c2 at site 2, joined by the internet host); iperf3 TCP with 1 and
with 4 streams through, in turn:

* bare routing, no tunnel (the internet host routes the LANs): context only;
* a strongSwan <-> strongSwan tunnel, charon with kernel-libipsec (userspace ESP over TUN), the
  baseline;
* a pyike <-> pyike tunnel, once per interpreter (default: the hosts' /usr/bin/python3 with
  Debian's cryptography, and this interpreter if it differs; ``--cryptography-wheel`` adds
  /usr/bin/python3 with the cryptography of that wheel).

Traffic (``--traffic``): "forwarded" is c1 -> c2, forwarded by both gateways; "originated" is
gw1 -> gw2, iperf3 bound to the gateways' own LAN addresses (gw1's traffic to gw2, as a
gateway's own services send it). ``--family 6`` adds IPv6 inside the tunnel (the lab's fd00:0:N::/64
LANs; the outer packets stay IPv4). ``--encap`` picks ESP in UDP 4500 and/or raw ESP (IP protocol 50).

Same inner MTU (TUN MTU 1400 on both), same cipher (aes256gcm16). Every path runs ``--runs`` times,
round-robin (run 1 of every path, then run 2 of every path...) so that load drift hits every path
alike; the tables give the median and the min-max of each figure and ratios of medians against
strongSwan; nothing is asserted. The machine is shared by everything in the lab (2 vCPUs here):
gateways, clients and iperf3 all compete, so run it on an otherwise idle machine; the load average is
printed at the start, before each round and at the end. After each figure it reports how many bytes
left gw1 through the tunnel's TUN device, so a path that bypasses the tunnel shows.

``--udp-loss``: after the TCP rounds, each tunnel's UDP maximum (the highest rate that loses at most
0.1 % in one of two 5-second iperf3 UDP runs, found by bisection below 1.5 times its 1-stream TCP median),
then 80 % of that maximum for ``--udp-seconds`` (60): the loss, the rate the receiver saw and where
packets were dropped (gw1's TUN queue, the gateways' UDP sockets, the receiver's socket). The
iperf3 server asks for a 4 MiB socket buffer (capped by net.core.rmem_max): with the default one,
the receiving iperf3, which shares the CPUs with both gateways, drops more than any tunnel.

pyike runs twice per interpreter: keyed statically (``pyike.runtime.static_tunnel``, the
dataplane alone) and as the real daemon with the Child SA negotiated over IKEv2
(:class:`PyikeIke`); all paths implement the small :class:`Tunnel` seam (``up(lab)``, ``down()``).

Kernel ESP (``--vm``): this machine's kernel has no ESP, so the script boots the VM lab
(scripts/vmlab.py --script, Debian's stock kernel under QEMU TCG) and runs itself inside it with the
paths bare, strongswan-kernel (charon with kernel-netlink, its default, the baseline there),
pyike-kernel (the daemon with ``settings.dataplane: kernel``) and pyike-ike (the userspace dataplane),
by default raw ESP, forwarded traffic, one run. The CPU is emulated, so the absolute figures mean
nothing; the ratios within the run do.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parent.parent
MODULE_UTILS = REPO / "plugins" / "module_utils"
sys.path.insert(0, str(MODULE_UTILS))

from pyike.runtime.static_tunnel import make_pair  # noqa: E402
from pyike_lab.lab import Lab, LabError, nsenter_argv  # noqa: E402
from pyike_lab.plan import build_plan  # noqa: E402
from pyike_lab.pyike import PyikeDaemon, site_to_site  # noqa: E402
from pyike_lab.strongswan import (  # noqa: E402
    KERNEL_NETLINK_PLUGINS,
    LOG_FILE,
    PLUGINS,
    STRONGSWAN_CONF,
    SWANCTL_PLUGINS,
    VICI_SOCKET,
    SiteToSite,
    StrongSwan,
)
from pyike_lab.wheels import unpack_wheel  # noqa: E402

HOSTS = [
    {"name": "gw1", "site": 1, "role": "gateway"},
    {"name": "c1", "site": 1, "role": "client"},
    {"name": "gw2", "site": 2, "role": "gateway"},
    {"name": "c2", "site": 2, "role": "client"},
]
GATEWAY_PAIRS = (("gw1", "gw2"), ("gw2", "gw1"))  # (me, peer): each gateway's view of the tunnel
CIPHER = "aes256gcm16"
INNER_MTU = 1400
PSK = "bench-only-psk-5be1c0"
IN_VM = os.environ.get("PYIKE_VM_LAB") == "1"
SLOW = 10.0 if IN_VM else 1.0  # daemons start and negotiate tens of times slower on an emulated CPU
VM_PATHS = "bare,strongswan-kernel,pyike-kernel,pyike-ike"
PATHS = ("bare", "strongswan", "strongswan-kernel", "pyike", "pyike-kernel", "pyike-ike")
PER_INTERPRETER_PATHS = ("pyike", "pyike-kernel", "pyike-ike")
TRAFFIC_KINDS = ("forwarded", "originated")
ENCAPS = ("udp", "raw")
ENCAP_NAMES = {"udp": "ESP in UDP 4500", "raw": "raw ESP", None: "no ESP"}
STREAMS = (1, 4)
UDP_LOAD = 0.8  # UDP offered at this share of the path's UDP maximum
UDP_MAX_LOSS = 0.1  # percent: the UDP maximum is the highest rate that loses no more
UDP_SEARCH = (1.5, 6, 5)  # bisection below this multiple of the 1-stream TCP median, steps, seconds each
UDP_SOCKET_BUFFER = "4M"  # iperf3 -w: the receiving socket's buffer
UDP_PAYLOAD = {4: 1360, 6: 1340}  # iperf3 -l: datagram + UDP + IP header fit the 1400 inner MTU
# A figure is flagged when less than this share of its bytes left gw1 through the tunnel's TUN device.
TUN_CHECK_SHARE = 0.5

# Addresses come from the lab's own plan (names do not change them): {host: {family: interface}}.
_PLAN = build_plan("addresses", HOSTS)
_LAN_IFNAME = {"gateway": "lan0", "client": "eth0"}


def _interfaces(host: str, ifname: str) -> Dict[int, ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    cidrs = (ipaddress.ip_interface(cidr) for cidr in _PLAN.host(host).addresses[ifname])
    return {iface.version: iface for iface in cidrs}


LAN = {host["name"]: _interfaces(host["name"], _LAN_IFNAME[host["role"]]) for host in HOSTS}
WAN = {host["name"]: _interfaces(host["name"], "wan0") for host in HOSTS if host["role"] == "gateway"}


def lan_address(host: str, family: int) -> str:
    return str(LAN[host][family].ip)


def lan_selectors(gateway: str, families: Sequence[int]) -> List[str]:
    """The gateway's LAN prefixes, one per family: its side of the traffic selectors."""
    return [str(LAN[gateway][family].network) for family in families]


def wan_address(gateway: str, family: int = 4) -> str:
    return str(WAN[gateway][family].ip)


# --- what is measured ------------------------------------------------------------------------------
TRAFFIC = {  # kind -> (iperf3 client host, bound to its LAN address, iperf3 server host)
    "forwarded": ("c1", False, "c2"),
    "originated": ("gw1", True, "gw2"),
}


@dataclass(frozen=True)
class Scenario:
    """One kind of traffic in one IP family: who sends to whom, over which addresses."""

    traffic: str
    family: int

    @property
    def client(self) -> str:
        return TRAFFIC[self.traffic][0]

    @property
    def server(self) -> str:
        return TRAFFIC[self.traffic][2]

    @property
    def source(self) -> Optional[str]:
        """The address the client binds to (iperf3 -B, ping -I), None for the default."""
        return lan_address(self.client, self.family) if TRAFFIC[self.traffic][1] else None

    @property
    def destination(self) -> str:
        return lan_address(self.server, self.family)

    @property
    def name(self) -> str:
        return "%s IPv%d" % (self.traffic, self.family)

    def title(self) -> str:
        return "%s: %s %s -> %s %s" % (
            self.name,
            self.client,
            lan_address(self.client, self.family),
            self.server,
            self.destination,
        )


class Unsupported(Exception):
    """A path cannot run with the requested option (e.g. raw ESP); the message says why."""


# --- the tunnels -----------------------------------------------------------------------------------
class Tunnel:
    """What the benchmark needs of a tunnel: bring it up in the lab, take it down.

    ``encap``: "udp" or "raw" (None: no ESP at all); ``device``: gw1's TUN device that carries the
    tunnel's cleartext (None: not checked, e.g. kernel ESP); ``baseline``: the ratios' reference."""

    label = "tunnel"
    encap: Optional[str] = None
    device: Optional[str] = None
    baseline = False

    def up(self, lab: Lab) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError


class BareRouting(Tunnel):
    """No tunnel: the internet host routes each LAN to its gateway."""

    label = "bare routing, no tunnel"

    def __init__(self, families: Sequence[int]) -> None:
        self.routes = [
            (str(LAN[gw][family].network), wan_address(gw, family))
            for gw in ("gw1", "gw2")
            for family in families
        ]
        self.lab: Optional[Lab] = None

    def up(self, lab: Lab) -> None:
        self.lab = lab
        for net, via in self.routes:
            lab.run_in("internet", ["ip", "route", "replace", net, "via", via])

    def down(self) -> None:
        if self.lab is not None:
            for net, _via in self.routes:
                self.lab.run_in("internet", ["sh", "-c", "ip route del %s 2>/dev/null || true" % net])


def _swanctl_site(me: str, peer: str, families: Sequence[int], extra: Sequence[str] = ()) -> SiteToSite:
    return SiteToSite(
        name="bench",
        local_addr=wan_address(me),
        remote_addr=wan_address(peer),
        local_id="%s.example" % me,
        remote_id="%s.example" % peer,
        psk=PSK,
        local_ts=lan_selectors(me, families),
        remote_ts=lan_selectors(peer, families),
        esp_proposals=CIPHER,
        extra=list(extra),
    )


def _charon_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.split("-")[0] if done.returncode == 0 else "?"


class _StrongSwanTunnel(Tunnel):
    """charon on both gateways, gw1 initiates; subclasses say how each charon is configured."""

    baseline = True
    backend = ""
    encaps: Tuple[str, ...] = ENCAPS
    why_not = ""  # why an encapsulation is missing from encaps

    def __init__(self, families: Sequence[int], encap: str) -> None:
        self.label = "strongSwan %s %s" % (_charon_version(), self.backend)
        if encap not in self.encaps:
            raise Unsupported("%s: no %s%s" % (self.label, ENCAP_NAMES[encap], self.why_not))
        self.families = list(families)
        self.encap = encap
        self.sides: List[StrongSwan] = []

    def _side(self, lab: Lab, me: str, site: SiteToSite) -> StrongSwan:
        raise NotImplementedError

    def up(self, lab: Lab) -> None:
        for me, peer in GATEWAY_PAIRS:
            side = self._side(lab, me, _swanctl_site(me, peer, self.families, self._swanctl_extra()))
            self.sides.append(side)
            side.start()
        out = self.sides[0].initiate("net", timeout=int(30 * SLOW))
        if "initiate completed successfully" not in out:
            raise LabError("strongSwan did not establish the tunnel:\n%s" % out)

    def _swanctl_extra(self) -> List[str]:
        return []

    def down(self) -> None:
        for side in self.sides:
            side.stop()
        self.sides = []


class StrongSwanPair(_StrongSwanTunnel):
    """charon + kernel-libipsec on both gateways; the TUN MTU set explicitly to 1400.

    kernel-libipsec enforces ESP in UDP 4500 whatever swanctl.conf says; raw ESP came with
    strongSwan 5.9.11 (``charon.plugins.kernel-libipsec.raw_esp``), Debian 12 ships 5.9.8."""

    backend = "kernel-libipsec"
    device = "ipsec0"
    encaps = ("udp",)
    why_not = " (kernel-libipsec enforces ESP in UDP before 5.9.11's raw_esp)"
    CONF = STRONGSWAN_CONF.replace(
        "  plugins {\n", "  plugins {\n    kernel-libipsec {\n      mtu = %d\n    }\n" % INNER_MTU, 1
    ) % {"plugins": PLUGINS, "vici": VICI_SOCKET, "log": LOG_FILE}

    def _side(self, lab: Lab, me: str, site: SiteToSite) -> StrongSwan:
        side = StrongSwan(lab, me)
        side.configure(site.swanctl_conf())
        side.write_file("/etc/strongswan.conf", self.CONF, "0644")
        return side

    def up(self, lab: Lab) -> None:
        super().up(lab)
        print("  strongSwan TUN:", _tun_line(lab, "gw1", self.device), flush=True)


class StrongSwanKernel(_StrongSwanTunnel):
    """charon with kernel-netlink (strongSwan's default): the kernel carries ESP; no TUN."""

    backend = "kernel-netlink"

    def _side(self, lab: Lab, me: str, site: SiteToSite) -> StrongSwan:
        side = StrongSwan(lab, me, plugins=KERNEL_NETLINK_PLUGINS, swanctl_plugins=SWANCTL_PLUGINS,
                          timeout_scale=SLOW)  # fmt: skip
        side.configure(site.swanctl_conf())
        return side

    def _swanctl_extra(self) -> List[str]:
        return ["encap = yes"] if self.encap == "udp" else []  # swanctl's default: raw ESP without NAT


def _tun_line(lab: Lab, host: str, hint: str) -> str:
    for line in lab.run_in(host, ["ip", "-o", "link", "show"]).splitlines():
        if hint in line:
            name = line.split(":")[1].strip()
            mtu = line.split(" mtu ")[1].split()[0] if " mtu " in line else "?"
            return "%s mtu %s" % (name, mtu)
    return "(no %s device)" % hint


@dataclass(frozen=True)
class Interpreter:
    """A Python for the pyike gateways; ``site_dirs`` go on PYTHONPATH after the engine (a wheel's
    cryptography); ``label`` says which Python and which cryptography it really imports."""

    python: str
    site_dirs: Tuple[str, ...] = ()
    origin: str = ""  # where its cryptography comes from, if not the interpreter's own

    @property
    def pythonpath(self) -> str:
        return ":".join([str(MODULE_UTILS), *self.site_dirs])

    def versions(self) -> Tuple[str, str]:
        probe = "import sys, cryptography; print(sys.version.split()[0], cryptography.__version__)"
        out = subprocess.run(
            ["env", "PYTHONPATH=%s" % self.pythonpath, self.python, "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        return out[0], out[1]

    @cached_property
    def label(self) -> str:
        python_version, crypto_version = self.versions()
        shown = os.path.relpath(self.python, REPO) if self.python.startswith(str(REPO)) else self.python
        origin = " from %s" % self.origin if self.origin else ""
        return "%s %s, cryptography %s%s" % (shown, python_version, crypto_version, origin)


class PyikeStatic(Tunnel):
    """pyike's dataplane on both gateways, keyed statically (the static_tunnel test tool)."""

    CONFIG = "/run/pyike-bench.json"
    device = "pyike0"

    def __init__(self, interpreter: Interpreter, families: Sequence[int], encap: str,
                 profile: Optional[str] = None):  # fmt: skip
        self.interpreter = interpreter
        self.families = list(families)
        self.encap = encap
        self.profile = profile
        self.procs: List[subprocess.Popen] = []
        self.logs: List = []
        self.label = "pyike static keys (%s)" % interpreter.label

    def configs(self) -> Dict[str, dict]:
        """static_tunnel's configuration per gateway: fresh keys, our selectors and encapsulation."""
        # make_pair takes one selector and one route source per side: both are replaced below
        ends = [{"address": wan_address(gw), "lan": "", "ts": ""} for gw in ("gw1", "gw2")]
        pair = make_pair(ends[0], ends[1], cipher=CIPHER, mtu=INNER_MTU, raw_esp=self.encap == "raw")
        configs = dict(zip(("gw1", "gw2"), pair))
        for me, peer in GATEWAY_PAIRS:
            config = configs[me]
            config["route_source"] = [lan_address(me, family) for family in self.families]
            for child in config["children"]:
                child.update(
                    local_ts=lan_selectors(me, self.families),
                    remote_ts=lan_selectors(peer, self.families),
                    encap=self.encap == "udp",
                )
        return configs

    def up(self, lab: Lab) -> None:
        for host, config in self.configs().items():
            lab.run_in(
                host,
                ["sh", "-c", "umask 077 && cat > %s" % self.CONFIG],
                input_data=json.dumps(config).encode(),
            )
            argv = ["env", "PYTHONPATH=%s" % self.interpreter.pythonpath, self.interpreter.python]
            argv += ["-m", "pyike.runtime.static_tunnel", self.CONFIG]
            if self.profile:
                argv += ["--profile", "%s.%s.prof" % (self.profile, host)]
            log = tempfile.TemporaryFile()
            self.logs.append(log)
            proc = subprocess.Popen(
                nsenter_argv(lab.pid_of(host), argv),
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
            self.procs.append(proc)
            ready, _w, _x = select.select([proc.stdout], [], [], 20)
            if not ready or b'"ready": true' not in proc.stdout.readline():
                log.seek(0)
                raise LabError("pyike static tunnel on %s did not start: %s" % (host, log.read().decode()))
        print("  pyike TUN:", _tun_line(lab, "gw1", self.device), flush=True)

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    with open("/proc/%d/task/%d/children" % (proc.pid, proc.pid)) as handle:
                        os.kill(int(handle.read().split()[0]), signal.SIGTERM)
                except (OSError, IndexError, ValueError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.procs = []
        for log in self.logs:
            log.close()
        self.logs = []


class PyikeIke(Tunnel):
    """The real thing: the pyike daemon on both gateways, the Child SA negotiated with IKEv2 (PSK)."""

    def __init__(self, interpreter: Interpreter, families: Sequence[int], encap: str,
                 dataplane: str = "userspace"):  # fmt: skip
        self.interpreter = interpreter
        self.families = list(families)
        self.encap = encap
        self.dataplane = dataplane
        self.device = "pyike0" if dataplane == "userspace" else None
        self.sides: List[PyikeDaemon] = []
        self.label = "pyike daemon, %s ESP (%s)" % (dataplane, interpreter.label)

    def up(self, lab: Lab) -> None:
        for me, peer in GATEWAY_PAIRS:
            side = PyikeDaemon(lab, me, self.interpreter.python, site_dirs=self.interpreter.site_dirs)
            self.sides.append(side)
            config = site_to_site(
                "bench",
                wan_address(me),
                wan_address(peer),
                "%s.example" % me,
                "%s.example" % peer,
                PSK,
                lan_selectors(me, self.families),
                lan_selectors(peer, self.families),
                esp_proposals=[CIPHER],
                tun_mtu=INNER_MTU,
                dataplane=self.dataplane,
            )
            config["connections"]["bench"]["encap"] = self.encap == "udp"
            side.start(config, timeout=20 * SLOW)
        out = self.sides[0].ctl("initiate", "bench", "--wait", str(10 * SLOW), timeout=20 * SLOW)
        if "initiate completed successfully" not in out:
            raise LabError("pyike did not establish the tunnel: %s" % out)

    def down(self) -> None:
        for side in self.sides:
            side.stop()
        self.sides = []


def build_tunnels(paths: Sequence[str], interpreters: Sequence[Interpreter], families: Sequence[int],
                  encaps: Sequence[str], profile: Optional[str]) -> List[Tunnel]:  # fmt: skip
    """One Tunnel per path, encapsulation and (for pyike) interpreter, in the order of PATHS."""
    makers = {
        "strongswan": lambda encap, _interp: StrongSwanPair(families, encap),
        "strongswan-kernel": lambda encap, _interp: StrongSwanKernel(families, encap),
        "pyike": lambda encap, interp: PyikeStatic(interp, families, encap, profile),
        "pyike-kernel": lambda encap, interp: PyikeIke(interp, families, encap, "kernel"),
        "pyike-ike": lambda encap, interp: PyikeIke(interp, families, encap),
    }
    tunnels: List[Tunnel] = []
    for path in (path for path in PATHS if path in paths):
        if path == "bare":
            tunnels.append(BareRouting(families))
            continue
        for encap in encaps:
            for interpreter in interpreters if path in PER_INTERPRETER_PATHS else [None]:
                try:
                    tunnels.append(makers[path](encap, interpreter))
                except Unsupported as exc:
                    print("not measured: %s" % exc)
    return tunnels


# --- measuring -------------------------------------------------------------------------------------
class UdpFigure(NamedTuple):
    offered: float  # Mbit/s
    received: float  # Mbit/s at the receiver
    loss_percent: float
    drops: Dict[str, int]  # where packets were dropped: {place: packets}
    maximum: float = 0.0  # Mbit/s: the path's UDP maximum that ``offered`` is a share of


class Results:
    """Every TCP figure of every run, and the UDP figures."""

    def __init__(self) -> None:
        self.tcp: Dict[Tuple[Tunnel, Scenario, int], List[float]] = defaultdict(list)
        self.udp: Dict[Tuple[Tunnel, Scenario], UdpFigure] = {}

    def runs(self, tunnel: Tunnel, scenario: Scenario, streams: int) -> List[float]:
        return self.tcp.get((tunnel, scenario, streams), [])

    def median(self, tunnel: Tunnel, scenario: Scenario, streams: int) -> Optional[float]:
        runs = self.runs(tunnel, scenario, streams)
        return statistics.median(runs) if runs else None


# measure_tcp or measure_udp: (lab, tunnel, scenario, seconds, results)
Measure = Callable[[Lab, Tunnel, Scenario, int, Results], None]


def load_average() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def iperf3(lab: Lab, scenario: Scenario, seconds: int, *options: str) -> dict:
    """iperf3's JSON report of a run from the scenario's client to its server."""
    argv = ["iperf3", "-c", scenario.destination, "-t", str(seconds), "-J", *options]
    if scenario.source:
        argv += ["-B", scenario.source]
    return json.loads(lab.run_in(scenario.client, argv, timeout=seconds + 40))


def iperf_tcp(lab: Lab, scenario: Scenario, seconds: int, streams: int) -> Tuple[float, int]:
    """(Mbit/s, bytes) received by the server; the first second, slow start, is omitted."""
    received = iperf3(lab, scenario, seconds, "-O", "1", "-P", str(streams))["end"]["sum_received"]
    return received["bits_per_second"] / 1e6, int(received["bytes"])


def iperf_udp(lab: Lab, tunnel: Tunnel, scenario: Scenario, seconds: int, mbits: float) -> UdpFigure:
    rate = "%.1fM" % mbits
    before = drop_counters(lab, tunnel, scenario)
    report = iperf3(lab, scenario, seconds, "-u", "-b", rate, "-l", str(UDP_PAYLOAD[scenario.family]),
                    "-w", UDP_SOCKET_BUFFER)  # fmt: skip
    after = drop_counters(lab, tunnel, scenario)
    drops = {place: after[place] - before[place] for place in after if after[place] > before.get(place, 0)}
    received = report["end"]["sum_received"]
    return UdpFigure(mbits, received["bits_per_second"] / 1e6, float(received["lost_percent"]), drops)


def udp_socket_drops(lab: Lab, host: str) -> int:
    """The host's UDP datagrams dropped for a full receive buffer (/proc/net/snmp RcvbufErrors)."""
    names, values = [line.split()[1:] for line in lab.run_in(host, ["cat", "/proc/net/snmp"]).splitlines()
                     if line.startswith("Udp:")][:2]  # fmt: skip
    return int(dict(zip(names, values))["RcvbufErrors"])


def drop_counters(lab: Lab, tunnel: Tunnel, scenario: Scenario) -> Dict[str, int]:
    """Counters of the places on the way where a UDP flow's packets are dropped."""
    counters = {}
    if tunnel.device:
        (link,) = json.loads(lab.run_in("gw1", ["ip", "-j", "-s", "link", "show", "dev", tunnel.device]))
        counters["gw1 %s queue" % tunnel.device] = int(link["stats64"]["tx"]["dropped"])
    for host in sorted({"gw1", "gw2", scenario.server}):
        counters["%s UDP sockets" % host] = udp_socket_drops(lab, host)
    return counters


def udp_maximum(lab: Lab, tunnel: Tunnel, scenario: Scenario, tcp_median: float) -> float:
    """The highest rate (Mbit/s) that loses at most UDP_MAX_LOSS %, by bisection (0 if none).

    A rate counts as carried if one of two runs at it stays under the limit: on a machine whose two
    CPUs run both gateways and both iperf3 ends, a run now and then loses packets to one moment of
    contention at rates far below what the path carries. The 60-s run at 80 % counts every loss."""
    multiple, steps, seconds = UDP_SEARCH
    carried, too_much = 0.0, multiple * tcp_median
    for _step in range(steps):
        rate = (carried + too_much) / 2
        runs = (iperf_udp(lab, tunnel, scenario, seconds, rate) for _run in range(2))
        if any(figure.loss_percent <= UDP_MAX_LOSS for figure in runs):
            carried = rate
        else:
            too_much = rate
    return carried


def reachable(lab: Lab, scenario: Scenario) -> bool:
    argv = ["ping", "-c", "3", "-i", "0.2", "-W", "2", scenario.destination]
    if scenario.source:
        argv[1:1] = ["-I", scenario.source]
    try:
        lab.run_in(scenario.client, argv, timeout=20)
    except LabError:
        return False
    return True


def tun_tx_bytes(lab: Lab, device: Optional[str]) -> Optional[int]:
    """Bytes gw1 has sent into the tunnel's TUN device (cleartext on its way to be encrypted)."""
    if device is None:
        return None
    try:
        (link,) = json.loads(lab.run_in("gw1", ["ip", "-j", "-s", "link", "show", "dev", device]))
    except (LabError, ValueError):
        return None
    return int(link["stats64"]["tx"]["bytes"])


def tun_note(device: Optional[str], before: Optional[int], after: Optional[int], received: int) -> str:
    """Whether a figure's bytes went through gw1's TUN device, as a note for its line."""
    if device is None or before is None or after is None:
        return ""
    sent = after - before
    verdict = "" if sent >= TUN_CHECK_SHARE * received else "  NOT THROUGH THE TUNNEL?"
    return "  (gw1 %s tx %d MB for %d MB received)%s" % (device, sent // 10**6, received // 10**6, verdict)


def route_of(lab: Lab, scenario: Scenario) -> str:
    """How the client host routes the scenario's packets (the tunnel's device, or not)."""
    argv = ["ip", "route", "get", scenario.destination]
    if scenario.source:
        argv += ["from", scenario.source]
    return " ".join(lab.run_in(scenario.client, argv).split())


def measure_tcp(lab: Lab, tunnel: Tunnel, scenario: Scenario, seconds: int, results: Results) -> None:
    if not reachable(lab, scenario):
        print("  %-15s %s cannot reach %s: skipped" % (scenario.name, scenario.client, scenario.destination))
        return
    if scenario.source:
        print("  %-15s route: %s" % (scenario.name, route_of(lab, scenario)))
    for streams in STREAMS:
        before = tun_tx_bytes(lab, tunnel.device)
        mbits, received = iperf_tcp(lab, scenario, seconds, streams)
        note = tun_note(tunnel.device, before, tun_tx_bytes(lab, tunnel.device), received)
        results.tcp[(tunnel, scenario, streams)].append(mbits)
        plural = "s" if streams > 1 else " "
        print(
            "  %-15s %d stream%s: %8.0f Mbit/s%s" % (scenario.name, streams, plural, mbits, note), flush=True
        )


def with_tunnel(lab: Lab, tunnel: Tunnel, scenarios: Sequence[Scenario], measure: Measure, seconds: int,
                results: Results) -> None:  # fmt: skip
    """Bring the tunnel up, ``measure`` every scenario through it, take it down; failures are
    printed (a failing scenario does not stop the others)."""
    print("%s, %s ..." % (tunnel.label, ENCAP_NAMES[tunnel.encap]), flush=True)
    try:
        tunnel.up(lab)
        for scenario in scenarios:
            try:
                measure(lab, tunnel, scenario, seconds, results)
            except (LabError, subprocess.SubprocessError, ValueError, KeyError) as exc:
                print("  %s failed: %s" % (scenario.name, exc))
    except (LabError, subprocess.SubprocessError, ValueError, KeyError, OSError) as exc:
        print("  failed: %s" % exc)
    finally:
        tunnel.down()


def measure_udp(lab: Lab, tunnel: Tunnel, scenario: Scenario, seconds: int, results: Results) -> None:
    tcp_median = results.median(tunnel, scenario, 1)
    if not tcp_median:
        print("  %-15s no 1-stream TCP figure: skipped" % scenario.name)
        return
    maximum = udp_maximum(lab, tunnel, scenario, tcp_median)
    if not maximum:
        print("  %-15s UDP loses more than %s %% at any rate: skipped" % (scenario.name, UDP_MAX_LOSS))
        return
    figure = iperf_udp(lab, tunnel, scenario, seconds, UDP_LOAD * maximum)._replace(maximum=maximum)
    results.udp[(tunnel, scenario)] = figure
    print("  %-15s UDP maximum %.0f Mbit/s; %6.0f Mbit/s offered, %6.0f received, %5.2f %% lost%s"
          % (scenario.name, maximum, figure.offered, figure.received, figure.loss_percent,
             drops_note(figure.drops)), flush=True)  # fmt: skip


def drops_note(drops: Dict[str, int]) -> str:
    return "" if not drops else " (dropped: %s)" % ", ".join("%s %d" % item for item in sorted(drops.items()))


def start_iperf_servers(lab: Lab) -> List[subprocess.Popen]:
    """iperf3 servers on every scenario's server host (both families: they listen on ::)."""
    servers = []
    for host in sorted({server for _client, _bind, server in TRAFFIC.values()}):
        argv = nsenter_argv(lab.pid_of(host), ["iperf3", "-s"])
        servers.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True))  # fmt: skip
    time.sleep(0.3)
    return servers


def stop_iperf_servers(servers: Sequence[subprocess.Popen]) -> None:
    for server in servers:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)


def run_benchmark(
    tunnels: Sequence[Tunnel], scenarios: Sequence[Scenario], args: argparse.Namespace
) -> Results:
    results = Results()
    lab = Lab("bench" + uuid.uuid4().hex[:6])
    servers: List[subprocess.Popen] = []
    try:
        lab.up(build_plan(lab.name, HOSTS))
        servers = start_iperf_servers(lab)
        for run in range(1, args.runs + 1):
            print("\n-- round %d of %d, %s" % (run, args.runs, load_average()), flush=True)
            for tunnel in tunnels:
                with_tunnel(lab, tunnel, scenarios, measure_tcp, args.seconds, results)
        if args.udp_loss:
            print("\n-- UDP at %d %% of each path's UDP maximum, %s" % (UDP_LOAD * 100, load_average()))
            for tunnel in (tunnel for tunnel in tunnels if tunnel.encap is not None):
                with_tunnel(lab, tunnel, scenarios, measure_udp, args.udp_seconds, results)
    finally:
        stop_iperf_servers(servers)
        lab.down()
    return results


# --- the report ------------------------------------------------------------------------------------
def baseline_of(tunnels: Sequence[Tunnel], tunnel: Tunnel) -> Tuple[Optional[Tunnel], bool]:
    """The strongSwan path to compare ``tunnel`` with, and whether its encapsulation differs."""
    baselines = [candidate for candidate in tunnels if candidate.baseline]
    for candidate in baselines:
        if candidate.encap == tunnel.encap:
            return candidate, False
    return (baselines[0], tunnel.encap is not None) if baselines else (None, False)


def figure_cell(runs: List[float]) -> str:
    if not runs:
        return "-"
    if len(runs) == 1:
        return "%.0f" % runs[0]
    return "%.0f (%.0f-%.0f)" % (statistics.median(runs), min(runs), max(runs))


def ratio_cell(results: Results, tunnel: Tunnel, base: Optional[Tunnel], scenario: Scenario, streams: int,
               other_encap: bool) -> str:  # fmt: skip
    value = results.median(tunnel, scenario, streams)
    reference = results.median(base, scenario, streams) if base else None
    if not value or not reference:
        return "-"
    return "%.2f%s" % (value / reference, "*" if other_encap else "")


def print_tables(header: Sequence[str], tables: Dict[Scenario, List[List[str]]]) -> None:
    """One table per scenario, all with the same columns: the first (the path) left-aligned, the rest
    right-aligned, every column as wide as its widest cell in any table."""
    every_row = [list(header), *(row for rows in tables.values() for row in rows)]
    widths = [max(len(row[column]) for row in every_row) for column in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        return "  ".join(cells + [cell.rjust(width) for cell, width in zip(row[2:], widths[2:])])

    for scenario, rows in tables.items():
        print("\n" + scenario.title())
        for row in [header, *rows]:
            print(line(row))


def print_tcp_table(
    tunnels: Sequence[Tunnel], scenarios: Sequence[Scenario], results: Results, runs: int
) -> None:
    tables: Dict[Scenario, List[List[str]]] = {scenario: [] for scenario in scenarios}
    flagged = False
    for scenario, rows in tables.items():
        for tunnel in tunnels:
            base, other_encap = baseline_of(tunnels, tunnel)
            flagged |= other_encap
            figures = [figure_cell(results.runs(tunnel, scenario, streams)) for streams in STREAMS]
            ratios = [
                ratio_cell(results, tunnel, base, scenario, streams, other_encap) for streams in STREAMS
            ]
            rows.append([tunnel.label, tunnel.encap or "-", *figures, *ratios])
    print_tables(["path", "ESP", "1 stream", "4 streams", "ratio 1", "ratio 4"], tables)
    what = "median (min-max) of %d runs" % runs if runs > 1 else "one run"
    print("\n(Mbit/s received by the server, %s; ratio = median / strongSwan's median, same traffic)" % what)
    if flagged:
        print("(* against strongSwan with another encapsulation: it has none with this one)")


def print_udp_table(
    tunnels: Sequence[Tunnel], scenarios: Sequence[Scenario], results: Results, seconds: int
) -> None:
    if not results.udp:
        return
    tables: Dict[Scenario, List[List[str]]] = {scenario: [] for scenario in scenarios}
    for (tunnel, scenario), figure in sorted(results.udp.items(), key=lambda item: tunnels.index(item[0][0])):
        tables[scenario].append([tunnel.label, tunnel.encap or "-", "%.0f" % figure.maximum,
                                 "%.0f" % figure.offered, "%.0f" % figure.received,
                                 "%.3f" % figure.loss_percent, drops_note(figure.drops).strip(" ()")])  # fmt: skip
    print("\nUDP, %d s at %d %% of each path's UDP maximum, %d/%d-byte datagrams (IPv4/IPv6)"
          % (seconds, UDP_LOAD * 100, UDP_PAYLOAD[4], UDP_PAYLOAD[6]))  # fmt: skip
    print_tables(["path", "ESP", "maximum", "offered", "received", "loss %", "where"], tables)
    print(
        "(Mbit/s; maximum: the highest rate losing at most %s %% in one of two %d-s runs; received and loss %% as"
        " the iperf3 server counted them)" % (UDP_MAX_LOSS, UDP_SEARCH[2])
    )


# --- command line ----------------------------------------------------------------------------------
def comma_list(text: str, allowed: Sequence[str], option: str) -> List[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    wrong = [item for item in items if item not in allowed]
    if wrong or not items:
        raise SystemExit("%s: %s is not one of %s" % (option, ",".join(wrong) or "''", ",".join(allowed)))
    return items


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="iperf3 TCP duration per figure (default 10)")
    parser.add_argument("--runs", type=int, help="runs of every path, round-robin (default 3; 1 with --vm)")
    parser.add_argument(
        "--traffic",
        help="comma-separated forwarded (c1 -> c2), originated (gw1 -> gw2 from its LAN address); "
        "default both (forwarded with --vm)",
    )
    parser.add_argument("--family", default="4", help="inner IP families, comma-separated 4,6 (default 4)")
    parser.add_argument("--encap", help="udp (ESP in UDP 4500) and/or raw (ESP); default udp (raw with --vm)")
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter for the pyike gateways (repeatable); default: /usr/bin/python3 and this one",
    )
    parser.add_argument(
        "--cryptography-wheel",
        metavar="WHEEL",
        help="adds pyike under /usr/bin/python3 with the cryptography unpacked from this wheel",
    )
    parser.add_argument(
        "--paths",
        default="bare,strongswan,pyike,pyike-ike",
        help="comma-separated subset of bare,strongswan,pyike (static keys),pyike-ike (the daemon); default "
        "all four; strongswan-kernel,pyike-kernel need kernel ESP (--vm)",
    )
    parser.add_argument(
        "--udp-loss",
        action="store_true",
        help="then each path's UDP maximum, and UDP at 80 %% of it for --udp-seconds",
    )
    parser.add_argument(
        "--udp-seconds", type=int, default=60, help="duration of each UDP figure (default 60)"
    )
    parser.add_argument(
        "--profile", metavar="PREFIX", help="cProfile the pyike static gateways into PREFIX.<host>.prof"
    )
    parser.add_argument(
        "--vm", action="store_true", help="kernel ESP: run in the VM lab (paths %s)" % VM_PATHS
    )
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.vm else 3)
    args.traffic = comma_list(args.traffic or ("forwarded" if args.vm else "forwarded,originated"),
                              TRAFFIC_KINDS, "--traffic")  # fmt: skip
    args.family = [int(family) for family in comma_list(args.family, ("4", "6"), "--family")]
    args.encap = comma_list(args.encap or ("raw" if args.vm else "udp"), ENCAPS, "--encap")
    args.paths = comma_list(args.paths, PATHS, "--paths")
    if args.runs < 1 or args.seconds < 1 or args.udp_seconds < 1:
        parser.error("--runs, --seconds and --udp-seconds must be at least 1")
    return args


def run_in_vm() -> int:
    argv = [sys.executable, str(REPO / "scripts" / "vmlab.py"), "--script", *sys.argv]
    if "--paths" not in sys.argv:
        argv += ["--paths", VM_PATHS]
    env = dict(os.environ, VM_TIMEOUT=os.environ.get("VM_TIMEOUT", "3600"))
    return subprocess.run(argv, env=env, check=False).returncode


def interpreters_of(args: argparse.Namespace, wheel_dir: Optional[str]) -> List[Interpreter]:
    pythons = args.python or ["/usr/bin/python3"]
    if not args.python and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        pythons.append(sys.executable)
    interpreters = [Interpreter(python) for python in pythons]
    if wheel_dir:
        interpreters.append(Interpreter("/usr/bin/python3", (wheel_dir,), "wheel"))
    return interpreters


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("needs root: it builds a lab of network namespaces", file=sys.stderr)
        return 2
    if args.vm and not IN_VM:
        return run_in_vm()
    print(
        "esp_throughput: %d s per figure, %d run%s, %s, inner MTU %d, %s (%d CPUs)%s"
        % (args.seconds, args.runs, "s" if args.runs > 1 else "", CIPHER, INNER_MTU, load_average(),
           os.cpu_count() or 0, ", in the VM lab (QEMU TCG, kernel %s)" % os.uname().release if IN_VM else "")
    )  # fmt: skip
    # unpacked before the lab starts: a lab host's /tmp is an overlay of ours, changes after its start may not show
    wheel_dir = unpack_wheel(args.cryptography_wheel) if args.cryptography_wheel else None
    try:
        interpreters = interpreters_of(args, wheel_dir)
        tunnels = build_tunnels(args.paths, interpreters, args.family, args.encap, args.profile)
        scenarios = [Scenario(traffic, family) for traffic in args.traffic for family in args.family]
        if not tunnels:
            print("nothing to measure", file=sys.stderr)
            return 2
        results = run_benchmark(tunnels, scenarios, args)
    finally:
        if wheel_dir:
            shutil.rmtree(wheel_dir, ignore_errors=True)
    print("\n-- done, %s" % load_average())
    print_tcp_table(tunnels, scenarios, results, args.runs)
    if args.udp_loss:
        print_udp_table(tunnels, scenarios, results, args.udp_seconds)
    print("command: %s" % " ".join(shlex.quote(arg) for arg in sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
