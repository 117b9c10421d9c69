"""ESP throughput: strongSwan (kernel-libipsec) against pyike, same lab, same run (not a test).

    sudo .venv/bin/python bench/esp_throughput.py [--seconds 10] [--python /usr/bin/python3 ...]

One lab (gw1/c1 at site 1, gw2/c2 at site 2, joined by the internet host); iperf3 TCP from c1
to c2 with 1 and with 4 streams through, in turn:

* bare routing, no tunnel (the internet host routes the LANs): context only;
* a strongSwan <-> strongSwan tunnel, charon with kernel-libipsec (userspace ESP over TUN), the
  baseline;
* a pyike <-> pyike tunnel, once per ``--python`` interpreter (default: the hosts'
  /usr/bin/python3 with Debian's cryptography, and this interpreter if it differs).

Same inner MTU (TUN MTU 1400 on both), same cipher (aes256gcm16), ESP in UDP 4500 on both. It
prints Mbit/s for each and the ratios pyike/strongSwan; nothing is asserted. The machine is
shared by everything in the lab (2 vCPUs here): gateways, clients and iperf3 all compete, so
run it on an otherwise idle machine; the load average is printed first.

pyike runs twice per interpreter: keyed statically (``pyike.runtime.static_tunnel``, the
dataplane alone) and as the real daemon with the Child SA negotiated over IKEv2
(:class:`PyikeIke`); both implement the small :class:`Tunnel` seam (``up(lab)``, ``down()``).

Kernel ESP (``--vm``): this machine's kernel has no ESP, so the script boots the VM lab
(scripts/vmlab.py --script, Debian's stock kernel under QEMU TCG) and runs itself inside it with the
paths bare, strongswan-kernel (charon with kernel-netlink, its default, the baseline there),
pyike-kernel (the daemon with ``settings.dataplane: kernel``) and pyike-ike (the userspace dataplane),
all raw ESP (no UDP encapsulation). The CPU is emulated, so the absolute figures mean nothing; the
ratios within the run do.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
MODULE_UTILS = REPO / "plugins" / "module_utils"
sys.path.insert(0, str(MODULE_UTILS))

from pyike.runtime.static_tunnel import make_pair  # noqa: E402
from pyike_lab.lab import Lab, LabError, nsenter_argv  # noqa: E402
from pyike_lab.plan import build_plan  # noqa: E402
from pyike_lab.pyike import PyikeDaemon, site_to_site  # noqa: E402
from pyike_lab.strongswan import (  # noqa: E402
    KERNEL_NETLINK_PLUGINS,
    STRONGSWAN_CONF,
    SWANCTL_PLUGINS,
    SiteToSite,
    StrongSwan,
)

HOSTS = [
    {"name": "gw1", "site": 1, "role": "gateway"},
    {"name": "c1", "site": 1, "role": "client"},
    {"name": "gw2", "site": 2, "role": "gateway"},
    {"name": "c2", "site": 2, "role": "client"},
]
SITES = {
    "gw1": {"address": "192.0.2.1", "lan": "10.1.0.1", "ts": "10.1.0.0/24"},
    "gw2": {"address": "198.51.100.1", "lan": "10.2.0.1", "ts": "10.2.0.0/24"},
}
SERVER = "10.2.0.10"
CIPHER = "aes256gcm16"
INNER_MTU = 1400
PSK = "bench-only-psk-5be1c0"
IN_VM = os.environ.get("PYIKE_VM_LAB") == "1"
SLOW = 10.0 if IN_VM else 1.0  # daemons start and negotiate tens of times slower on an emulated CPU
VM_PATHS = "bare,strongswan-kernel,pyike-kernel,pyike-ike"


class Tunnel:
    """What the benchmark needs of a tunnel: bring it up in the lab, take it down."""

    label = "tunnel"

    def up(self, lab: Lab) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError


class BareRouting(Tunnel):
    """No tunnel: the internet host routes each LAN to its gateway."""

    label = "bare routing, no tunnel"
    ROUTES = (("10.1.0.0/24", "192.0.2.1"), ("10.2.0.0/24", "198.51.100.1"))

    def __init__(self) -> None:
        self.lab: Optional[Lab] = None

    def up(self, lab: Lab) -> None:
        self.lab = lab
        for net, via in self.ROUTES:
            lab.run_in("internet", ["ip", "route", "replace", net, "via", via])

    def down(self) -> None:
        if self.lab is not None:
            for net, _via in self.ROUTES:
                self.lab.run_in("internet", ["sh", "-c", "ip route del %s 2>/dev/null || true" % net])


class StrongSwanPair(Tunnel):
    """charon + kernel-libipsec on both gateways; the TUN MTU set explicitly to 1400."""

    def __init__(self) -> None:
        self.sides: List[StrongSwan] = []
        self.label = "strongSwan kernel-libipsec"

    def up(self, lab: Lab) -> None:
        conf = STRONGSWAN_CONF.replace(
            "  plugins {\n", "  plugins {\n    kernel-libipsec {\n      mtu = %d\n    }\n" % INNER_MTU, 1
        )
        for me, peer in (("gw1", "gw2"), ("gw2", "gw1")):
            side = StrongSwan(lab, me)
            site = SiteToSite(
                name="bench",
                local_addr=SITES[me]["address"],
                remote_addr=SITES[peer]["address"],
                local_id="%s.example" % me,
                remote_id="%s.example" % peer,
                psk=PSK,
                local_ts=[SITES[me]["ts"]],
                remote_ts=[SITES[peer]["ts"]],
                esp_proposals=CIPHER,
            )
            side.configure(site.swanctl_conf())
            side.write_file(
                "/etc/strongswan.conf",
                conf % {"plugins": _plugins(), "vici": "/run/charon.vici", "log": "/var/log/charon.log"},
                "0644",
            )
            self.sides.append(side)
            side.start()
        out = self.sides[0].initiate("net")
        if "initiate completed successfully" not in out:
            raise LabError("strongSwan did not establish the tunnel:\n%s" % out)
        version = _charon_version()
        self.label = "strongSwan %s kernel-libipsec" % version
        print("  strongSwan TUN:", _tun_line(lab, "gw1", "ipsec"))

    def down(self) -> None:
        for side in self.sides:
            side.stop()
        self.sides = []


def _charon_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.stdout.split("-")[0] if done.returncode == 0 else "?"


def _plugins() -> str:
    from pyike_lab.strongswan import PLUGINS

    return PLUGINS


def _tun_line(lab: Lab, host: str, hint: str) -> str:
    for line in lab.run_in(host, ["ip", "-o", "link", "show"]).splitlines():
        if hint in line:
            name = line.split(":")[1].strip()
            mtu = line.split(" mtu ")[1].split()[0] if " mtu " in line else "?"
            return "%s mtu %s" % (name, mtu)
    return "(no %s device)" % hint


class StrongSwanKernel(Tunnel):
    """charon with kernel-netlink (strongSwan's default): the kernel carries ESP; raw ESP, no TUN."""

    def __init__(self) -> None:
        self.sides: List[StrongSwan] = []
        self.label = "strongSwan kernel-netlink"

    def up(self, lab: Lab) -> None:
        for me, peer in (("gw1", "gw2"), ("gw2", "gw1")):
            side = StrongSwan(lab, me, plugins=KERNEL_NETLINK_PLUGINS, swanctl_plugins=SWANCTL_PLUGINS,
                              timeout_scale=SLOW)  # fmt: skip
            site = SiteToSite("bench", SITES[me]["address"], SITES[peer]["address"], "%s.example" % me,
                              "%s.example" % peer, PSK, [SITES[me]["ts"]], [SITES[peer]["ts"]], esp_proposals=CIPHER)  # fmt: skip
            side.configure(site.swanctl_conf())
            self.sides.append(side)
            side.start()
        out = self.sides[0].initiate("net", timeout=int(30 * SLOW))
        if "initiate completed successfully" not in out:
            raise LabError("strongSwan did not establish the tunnel:\n%s" % out)
        self.label = "strongSwan %s kernel-netlink" % _charon_version()

    def down(self) -> None:
        for side in self.sides:
            side.stop()
        self.sides = []


class PyikeStatic(Tunnel):
    """pyike's dataplane on both gateways, keyed statically (the static_tunnel test tool)."""

    CONFIG = "/run/pyike-bench.json"

    def __init__(self, python: str, profile: Optional[str] = None):
        self.python = python
        self.profile = profile
        self.procs: List[subprocess.Popen] = []
        self.logs: List = []
        versions = subprocess.run(
            [
                python,
                "-c",
                "import sys, cryptography; print(sys.version.split()[0], cryptography.__version__)",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        self.label = "pyike static keys (python %s, cryptography %s)" % tuple(versions)

    def up(self, lab: Lab) -> None:
        configs = dict(
            zip(("gw1", "gw2"), make_pair(SITES["gw1"], SITES["gw2"], cipher=CIPHER, mtu=INNER_MTU))
        )
        for host, config in configs.items():
            lab.run_in(
                host,
                ["sh", "-c", "umask 077 && cat > %s" % self.CONFIG],
                input_data=json.dumps(config).encode(),
            )
            argv = ["env", "PYTHONPATH=%s" % MODULE_UTILS, self.python, "-m", "pyike.runtime.static_tunnel"]
            argv.append(self.CONFIG)
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
        print("  pyike TUN:", _tun_line(lab, "gw1", "pyike"))

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

    def __init__(self, python: str, dataplane: str = "userspace", encap: bool = True):
        self.python = python
        self.dataplane = dataplane
        self.encap = encap
        self.sides: List[PyikeDaemon] = []
        self.label = "pyike daemon, %s ESP (%s)" % (dataplane, python)

    def up(self, lab: Lab) -> None:
        for me, peer in (("gw1", "gw2"), ("gw2", "gw1")):
            side = PyikeDaemon(lab, me, self.python)
            self.sides.append(side)
            config = site_to_site(
                "bench",
                SITES[me]["address"],
                SITES[peer]["address"],
                "%s.example" % me,
                "%s.example" % peer,
                PSK,
                [SITES[me]["ts"]],
                [SITES[peer]["ts"]],
                esp_proposals=[CIPHER],
                tun_mtu=INNER_MTU,
                dataplane=self.dataplane,
            )
            # ESP in UDP 4500, as kernel-libipsec does; raw ESP beside kernel-netlink (--vm)
            config["connections"]["bench"]["encap"] = self.encap
            side.start(config, timeout=20 * SLOW)
        out = self.sides[0].ctl("initiate", "bench", "--wait", str(10 * SLOW), timeout=20 * SLOW)
        if "initiate completed successfully" not in out:
            raise LabError("pyike did not establish the tunnel: %s" % out)

    def down(self) -> None:
        for side in self.sides:
            side.stop()
        self.sides = []


def iperf(lab: Lab, seconds: int, streams: int) -> float:
    """Mbit/s received by c2 (the first second, slow start, is omitted)."""
    argv = ["iperf3", "-c", SERVER, "-t", str(seconds), "-O", "1", "-P", str(streams), "-J"]
    out = lab.run_in("c1", argv, timeout=seconds + 40)
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e6


def reachable(lab: Lab) -> bool:
    try:
        lab.run_in("c1", ["ping", "-c", "3", "-i", "0.2", "-W", "2", SERVER], timeout=20)
    except LabError:
        return False
    return True


def measure(lab: Lab, tunnel: Tunnel, seconds: int) -> Dict[int, Optional[float]]:
    print("%s ..." % tunnel.label, flush=True)
    results: Dict[int, Optional[float]] = {1: None, 4: None}
    try:
        tunnel.up(lab)
        if not reachable(lab):
            print("  c1 cannot reach c2: skipped")
            return results
        for streams in (1, 4):
            rate = iperf(lab, seconds, streams)
            results[streams] = rate
            print("  %d stream%s: %8.0f Mbit/s" % (streams, "s" if streams > 1 else " ", rate), flush=True)
    except (LabError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        print("  failed: %s" % exc)
    finally:
        tunnel.down()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="iperf3 duration per measurement")
    parser.add_argument(
        "--python",
        action="append",
        help="interpreter for the pyike gateways (repeatable); default: /usr/bin/python3 and this one",
    )
    parser.add_argument(
        "--paths",
        default="bare,strongswan,pyike,pyike-ike",
        help="comma-separated subset of bare,strongswan,pyike (static keys),pyike-ike (the daemon; default: all)",
    )
    parser.add_argument("--profile", help="cProfile the pyike gateways into PREFIX.<host>.prof")
    parser.add_argument(
        "--vm", action="store_true", help="kernel ESP: run in the VM lab (paths %s)" % VM_PATHS
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root: it builds a lab of network namespaces", file=sys.stderr)
        return 2
    if args.vm and not IN_VM:
        argv = [sys.executable, str(REPO / "scripts" / "vmlab.py"), "--script", *sys.argv]
        if "--paths" not in sys.argv:
            argv += ["--paths", VM_PATHS]
        env = dict(os.environ, VM_TIMEOUT=os.environ.get("VM_TIMEOUT", "3600"))
        return subprocess.run(argv, env=env, check=False).returncode
    pythons = args.python or ["/usr/bin/python3"]
    if not args.python and os.path.realpath(sys.executable) != os.path.realpath("/usr/bin/python3"):
        pythons.append(sys.executable)

    load = os.getloadavg()
    print(
        "esp_throughput: %d s per figure, %s, inner MTU %d, load average %.2f %.2f %.2f (%d CPUs)%s"
        % (args.seconds, CIPHER, INNER_MTU, load[0], load[1], load[2], os.cpu_count() or 0,
           ", in the VM lab (QEMU TCG, kernel %s)" % os.uname().release if IN_VM else "")
    )  # fmt: skip
    paths = {path.strip() for path in args.paths.split(",")}
    tunnels: List[Tunnel] = []
    if "bare" in paths:
        tunnels.append(BareRouting())
    if "strongswan" in paths:
        tunnels.append(StrongSwanPair())
    if "pyike" in paths:
        tunnels.extend(PyikeStatic(python, args.profile) for python in pythons)
    if "strongswan-kernel" in paths:
        tunnels.append(StrongSwanKernel())
    if "pyike-kernel" in paths:
        tunnels.extend(PyikeIke(python, "kernel", encap=False) for python in pythons)
    if "pyike-ike" in paths:
        tunnels.extend(PyikeIke(python, encap=not args.vm) for python in pythons)

    lab = Lab("bench" + uuid.uuid4().hex[:6])
    server = None
    results = []
    try:
        lab.up(build_plan(lab.name, HOSTS))
        server = subprocess.Popen(
            nsenter_argv(lab.pid_of("c2"), ["iperf3", "-s"]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(0.3)
        for tunnel in tunnels:
            results.append((tunnel.label, measure(lab, tunnel, args.seconds)))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        lab.down()

    baseline = next((figures for label, figures in results if label.startswith("strongSwan")), {})
    print()
    print("%-58s %10s %10s %8s %8s" % ("path", "1 stream", "4 streams", "ratio 1", "ratio 4"))
    for label, figures in results:
        cells = []
        for streams in (1, 4):
            value = figures.get(streams)
            cells.append("%10.0f" % value if value else "%10s" % "-")
        ratios = []
        for streams in (1, 4):
            value, base = figures.get(streams), baseline.get(streams)
            ratios.append("%8.2f" % (value / base) if value and base else "%8s" % "-")
        print("%-58s %s %s %s %s" % (label[:58], cells[0], cells[1], ratios[0], ratios[1]))
    print("(Mbit/s received by c2; ratio = figure / strongSwan's figure)")
    print("command: %s" % " ".join(shlex.quote(arg) for arg in sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
