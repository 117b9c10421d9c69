"""IKE setup latency and CPU cost: pyike vs strongSwan's charon, PSK and ECDSA, in one lab run.

gw1 initiates, gw2 responds; both run the same daemon (charon with charon, pyike with pyike). Both
daemons are asked over their own control sockets (pyike's JSON socket, charon's VICI) from this
process, reached through /proc/<holder>/root so no client program start-up is timed. Each `initiate`
returns once the Child SA is installed: that call is the latency. Around it the responder's (and the
initiator's) CPU time is read from /proc, so the CPU per IKE SA + Child SA comes from the same runs.

    sudo PYTHONPATH=plugins/module_utils .venv/bin/python bench/ike_setup.py [--runs 20]
        [--auth psk,ecdsa] [--python /usr/bin/python3] [--site-dir DIR | --cryptography-wheel WHEEL]

ECDSA: a P-256 CA and P-256 gateway certificates (SHA-256, subjectAltName gw1.example/gw2.example)
are made at run time with tests/integration/lab_pki.py, the helpers of the certificate interop tests.

Not a test: it asserts nothing about absolute times.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "plugins", "module_utils"))
# lab_pki: the certificate builders of the interop tests (tests/integration/test_interop_certs.py)
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))

from cryptography import x509
from lab_pki import issue, key_pem, new_key, pem
from pyike.runtime.control import call
from pyike_lab.lab import Lab
from pyike_lab.plan import build_plan
from pyike_lab.pyike import CONTROL_SOCKET, HOST_PYTHON, PyikeDaemon, site_to_site
from pyike_lab.pyike import PID_FILE as PYIKE_PID_FILE
from pyike_lab.strongswan import PID_FILE as CHARON_PID_FILE
from pyike_lab.strongswan import VICI_SOCKET, SiteToSite, StrongSwan
from pyike_lab.wheels import unpack_wheel

PSK = "bench-psk-not-secret"
LEFT = ("192.0.2.1", "gw1.example", "10.1.0.0/24")
RIGHT = ("198.51.100.1", "gw2.example", "10.2.0.0/24")
IKE_PROPOSAL, ESP_PROPOSAL = "aes256gcm16-prfsha256-x25519", "aes256gcm16"
AUTHS = ("psk", "ecdsa")
CERT_DIR, KEY_DIR = "/etc/pyike/certs", "/etc/pyike/private"
TICK = 1.0 / os.sysconf("SC_CLK_TCK")
# Reports which cryptography (and OpenSSL) an interpreter imports with a given PYTHONPATH.
RUNTIME_PROBE = (
    "import sys, cryptography\n"
    "try:\n"
    "    from cryptography.hazmat.backends.openssl.backend import backend\n"
    "    ssl = backend.openssl_version_text()\n"
    "except Exception as exc:\n"
    "    ssl = 'OpenSSL unknown (%s)' % exc\n"
    "print('Python %s, cryptography %s (%s), %s' % (sys.version.split()[0], cryptography.__version__,\n"
    "      cryptography.__file__.rsplit('/', 2)[0], ssl))\n"
)


def host_path(lab: Lab, host: str, path: str) -> str:
    return "/proc/%d/root%s" % (lab.pid_of(host), path)


class ProcCpu:
    """One daemon process of a lab host, read from the host's own /proc (its PID namespace) through
    /proc/<holder>/root, without starting anything inside the host."""

    def __init__(self, lab: Lab, host: str, pid_file: str, token: str):
        with open(host_path(lab, host, pid_file)) as handle:
            pid = int(handle.read().strip())
        self.proc = host_path(lab, host, "/proc/%d" % pid)
        with open(self.proc + "/cmdline", "rb") as handle:
            argv = handle.read().decode(errors="replace").split("\0")
        if not any(token in arg for arg in argv):
            raise RuntimeError("%s: pid %d of %s runs %r, not %s" % (host, pid, pid_file, argv, token))

    def _stat(self):
        with open(self.proc + "/stat") as handle:
            head, tail = handle.read().rsplit(")", 1)
        return head.split("(", 1)[1], tail.split()

    def ticks(self) -> int:
        """utime + stime of the whole process, its ended threads included (clock ticks)."""
        fields = self._stat()[1]  # after "(comm)": state is field 3, utime 14, stime 15
        return int(fields[11]) + int(fields[12])

    def nanoseconds(self) -> int:
        """CPU time of the live threads, to the nanosecond (sum of /proc/PID/task/*/schedstat)."""
        total = 0
        for tid in os.listdir(self.proc + "/task"):
            try:
                with open("%s/task/%s/schedstat" % (self.proc, tid)) as handle:
                    total += int(handle.read().split()[0])
            except FileNotFoundError:
                pass  # a thread that ended meanwhile
        return total

    def maps(self) -> str:
        with open(self.proc + "/maps") as handle:
            return handle.read()


def wait_gone(check, timeout=5.0):
    deadline = time.monotonic() + timeout
    while check():
        if time.monotonic() > deadline:
            raise RuntimeError("the IKE SA is still there %.0f s after terminate" % timeout)
        time.sleep(0.005)


def measure(runs, warmup, initiate, teardown, responder: ProcCpu, initiator: ProcCpu) -> dict:
    """`warmup` untimed rounds, then `runs` timed ones; CPU deltas summed over the timed ones.

    setup window: the `initiate` call; teardown window: terminate until both ends have no IKE SA
    (polling the initiator, then the responder, whose SA is normally gone by then: one poll)."""
    for _run in range(warmup):
        initiate()
        teardown()
    times = []
    cpu = dict.fromkeys(("resp_setup", "resp_down", "init_setup", "init_down"), 0)
    resp_ticks, init_ticks = responder.ticks(), initiator.ticks()
    for _run in range(runs):
        r0, i0 = responder.nanoseconds(), initiator.nanoseconds()
        start = time.perf_counter()
        initiate()
        times.append(time.perf_counter() - start)
        r1, i1 = responder.nanoseconds(), initiator.nanoseconds()
        teardown()
        r2, i2 = responder.nanoseconds(), initiator.nanoseconds()
        cpu["resp_setup"] += r1 - r0
        cpu["resp_down"] += r2 - r1
        cpu["init_setup"] += i1 - i0
        cpu["init_down"] += i2 - i1
    result = {key: value / 1e9 / runs for key, value in cpu.items()}
    result["resp_stat"] = (responder.ticks() - resp_ticks) * TICK / runs
    result["init_stat"] = (initiator.ticks() - init_ticks) * TICK / runs
    result["times"] = times
    return result


def make_pki():
    """A P-256 CA and a P-256 certificate per gateway (SHA-256, subjectAltName = its IKE ID)."""
    ca_key = new_key("p256", "ike_setup bench CA")
    ca = issue(x509.Name.from_rfc4514_string("CN=ike_setup bench CA,O=pyike bench"), ca_key, ca=True)
    leaves = {}
    for serial, (host, ident) in enumerate((("gw1", LEFT[1]), ("gw2", RIGHT[1])), start=10):
        key = new_key("p256", "ike_setup bench " + ident)
        subject = x509.Name.from_rfc4514_string("CN=%s,O=pyike bench" % ident)
        leaves[host] = (issue(subject, key, ca, ca_key, dns=ident, serial=serial), key)
    return ca, leaves


def bench_charon(lab: Lab, runs: int, warmup: int, auth: str, pki) -> dict:
    import vici

    left, right = StrongSwan(lab, "gw1"), StrongSwan(lab, "gw2")
    for daemon, me, peer in ((left, LEFT, RIGHT), (right, RIGHT, LEFT)):
        options = {}
        if auth == "ecdsa":
            ca, leaves = pki
            cert, key = leaves[daemon.host]
            options = {
                "auth": "pubkey",
                "cert": daemon.install_credentials(daemon.host, pem(cert), key_pem(key), [pem(ca)]),
            }
        conf = SiteToSite("s2s", me[0], peer[0], me[1], peer[1], PSK, [me[2]], [peer[2]], **options)
        daemon.configure(conf.swanctl_conf())
        daemon.start()
    sessions = []
    try:
        sessions = [_unix(host_path(lab, host, VICI_SOCKET)) for host in ("gw1", "gw2")]
        session, right_session = (vici.Session(sock) for sock in sessions)

        def initiate():
            for _log in session.initiate({"child": "net", "timeout": 5000}):
                pass

        def teardown():
            for _log in session.terminate({"ike": "s2s", "timeout": 5000}):
                pass
            wait_gone(lambda: list(session.list_sas({"ike": "s2s"})))
            wait_gone(lambda: list(right_session.list_sas({"ike": "s2s"})))

        return measure(
            runs,
            warmup,
            initiate,
            teardown,
            ProcCpu(lab, "gw2", CHARON_PID_FILE, "charon"),
            ProcCpu(lab, "gw1", CHARON_PID_FILE, "charon"),
        )
    finally:
        for sock in sessions:
            sock.close()
        left.stop()
        right.stop()


def bench_pyike(lab: Lab, runs: int, warmup: int, auth: str, pki, python: str, site_dirs) -> dict:
    left, right = PyikeDaemon(lab, "gw1", python, site_dirs), PyikeDaemon(lab, "gw2", python, site_dirs)
    try:
        for daemon, me, peer in ((left, LEFT, RIGHT), (right, RIGHT, LEFT)):
            credentials = None
            if auth == "ecdsa":
                ca, leaves = pki
                cert, key = leaves[daemon.host]
                daemon.write_file("%s/%s.pem" % (CERT_DIR, daemon.host), pem(cert), "0644")
                daemon.write_file("%s/%s.key" % (KEY_DIR, daemon.host), key_pem(key, pkcs8=False), "0600")
                daemon.write_file("%s/ca.pem" % CERT_DIR, pem(ca), "0644")
                credentials = {
                    "cert": "%s/%s.pem" % (CERT_DIR, daemon.host),
                    "private_key": "%s/%s.key" % (KEY_DIR, daemon.host),
                    "ca_certs": ["%s/ca.pem" % CERT_DIR],
                }
            daemon.start(
                site_to_site(
                    "s2s", me[0], peer[0], me[1], peer[1], PSK, [me[2]], [peer[2]], credentials=credentials
                )
            )
        socket_path = host_path(lab, "gw1", CONTROL_SOCKET)
        right_socket = host_path(lab, "gw2", CONTROL_SOCKET)

        def initiate():
            call(socket_path, "initiate", {"conn": "s2s", "child": "net", "wait": 5})

        def teardown():
            call(socket_path, "terminate", {"conn": "s2s"})  # sends the DELETE, does not wait for it
            wait_gone(lambda: call(socket_path, "list-sas"))
            wait_gone(lambda: call(right_socket, "list-sas"))

        responder = ProcCpu(lab, "gw2", PYIKE_PID_FILE, "pyike")
        initiate()  # once more than the warm-up: which signature the responder verified
        (ike_sa,) = call(right_socket, "list-sas")
        teardown()
        result = measure(
            runs, warmup, initiate, teardown, responder, ProcCpu(lab, "gw1", PYIKE_PID_FILE, "pyike")
        )
        result["remote_auth"] = ike_sa.get("remote_auth") or ike_sa.get("auth")
        # where the responder's cryptography really came from: its Rust extension in the memory map
        result["loaded_from"] = sorted(
            {
                line.split()[-1].split("/cryptography/hazmat/")[0]
                for line in responder.maps().splitlines()
                if "/cryptography/hazmat/bindings/_rust" in line
            }
        )
        return result
    finally:
        left.stop()
        right.stop()


def _unix(path: str):
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def charon_version() -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "strongswan-charon"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        return "unknown (%s)" % exc
    return done.stdout.strip()


def command_line() -> str:
    env = ["PYTHONPATH=" + os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    sudo = ["sudo"] if os.environ.get("SUDO_USER") else []
    return shlex.join(sudo + env + [sys.executable, *sys.argv])


def ms(seconds: float) -> str:
    return "%.2f" % (seconds * 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs per daemon and auth method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default %(default)s)")
    parser.add_argument("--auth", default=",".join(AUTHS), help="comma-separated: psk, ecdsa (default both)")
    parser.add_argument(
        "--python", default=HOST_PYTHON, help="interpreter for the pyike daemons (default %(default)s)"
    )
    parser.add_argument(
        "--site-dir", action="append", default=[], metavar="DIR",
        help="extra directory on the daemons' PYTHONPATH, ahead of the interpreter's packages",
    )  # fmt: skip
    parser.add_argument(
        "--cryptography-wheel", metavar="WHEEL",
        help="unpack this cryptography wheel into a temporary directory and use it as a site directory",
    )  # fmt: skip
    args = parser.parse_args()
    auths = [auth.strip() for auth in args.auth.split(",") if auth.strip()]
    if not auths or any(auth not in AUTHS for auth in auths):
        parser.error("--auth %r: expected a comma-separated list of %s" % (args.auth, ", ".join(AUTHS)))
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    load = os.getloadavg()
    site_dirs = list(args.site_dir)
    wheel_dir = None
    name = "b" + uuid.uuid4().hex[:8]
    lab = Lab(name)
    results = {}
    try:
        if args.cryptography_wheel:
            # before the lab: the hosts see /tmp as it was when they started (copy-on-write)
            wheel_dir = unpack_wheel(args.cryptography_wheel, "ike-setup-wheel-")
            site_dirs.append(wheel_dir)
        pki = make_pki() if "ecdsa" in auths else None
        lab.up(build_plan(name, [{"name": "gw1", "site": 1}, {"name": "gw2", "site": 2}]))
        pythonpath = PyikeDaemon(lab, "gw2", args.python, site_dirs).pythonpath
        runtime = lab.run_in(
            "gw2", ["env", "PYTHONPATH=" + pythonpath, args.python, "-c", RUNTIME_PROBE]
        ).strip()
        print(
            "IKE setup: initiate -> Child SA installed; %s, ESP %s; median of %d runs (after %d warm-up)"
            % (IKE_PROPOSAL, ESP_PROPOSAL, args.runs, args.warmup)
        )
        print("  load average   : %.2f %.2f %.2f (%d CPUs)" % (*load, os.cpu_count() or 0))
        print("  charon         : strongswan-charon %s (kernel-libipsec)" % charon_version())
        probe_dir = runtime.split("(", 1)[1].split(")", 1)[0]
        print("  pyike daemons  : %s: %s" % (args.python, runtime))
        if site_dirs:
            print("  site dirs      : %s" % ":".join(site_dirs))
        sys.stdout.flush()
        for auth in auths:
            for daemon in ("charon", "pyike"):
                print(
                    "  ... %s %s, %d runs" % (daemon, auth, args.warmup + args.runs),
                    file=sys.stderr,
                    flush=True,
                )
                if daemon == "charon":
                    results[auth, daemon] = bench_charon(lab, args.runs, args.warmup, auth, pki)
                else:
                    results[auth, daemon] = bench_pyike(
                        lab, args.runs, args.warmup, auth, pki, args.python, site_dirs
                    )
    finally:
        lab.down()
        if wheel_dir:
            shutil.rmtree(wheel_dir, ignore_errors=True)

    loaded = sorted({path for auth in auths for path in results[auth, "pyike"]["loaded_from"]})
    note = "" if loaded == [probe_dir] else "   <- NOT the probe's %s" % probe_dir
    print(
        "  pyike loaded   : cryptography from %s (the responder's memory map)%s" % (", ".join(loaded), note)
    )
    for auth in auths:
        print("  pyike %-5s    : responder verified %s" % (auth, results[auth, "pyike"]["remote_auth"]))
    print()
    header = (
        "auth",
        "charon ms",
        "pyike ms",
        "ratio",
        "charon CPU ms/SA (resp)",
        "pyike CPU ms/SA (resp)",
        "ratio",
    )
    rows = []
    for auth in auths:
        charon, pyike = results[auth, "charon"], results[auth, "pyike"]
        charon_ms, pyike_ms = statistics.median(charon["times"]), statistics.median(pyike["times"])
        rows.append(
            (
                auth,
                ms(charon_ms),
                ms(pyike_ms),
                "%.2f" % (pyike_ms / charon_ms),
                ms(charon["resp_stat"]),
                ms(pyike["resp_stat"]),
                "%.2f" % (pyike["resp_stat"] / charon["resp_stat"]) if charon["resp_stat"] else "n/a",
            )
        )
    widths = [max(len(row[col]) for row in [header, *rows]) for col in range(len(header))]
    for row in [header, *rows]:
        print("  " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    print()
    print("  ms: median latency of `initiate` (IKE_SA_INIT + IKE_AUTH, Child SA installed on both ends),")
    print("      ratio pyike/charon (below 1.0: pyike is faster).")
    print(
        "  CPU ms/SA: the responder's (gw2) utime+stime from /proc/PID/stat over the %d timed runs / %d;"
        % (args.runs, args.runs)
    )
    print("      the window holds setup AND teardown (INFORMATIONAL DELETE) of each IKE SA + Child SA, and")
    print(
        "      about one list-sas poll; resolution %.1f ms / %d runs = %.2f ms/SA."
        % (TICK * 1000, args.runs, TICK * 1000 / args.runs)
    )
    print()
    print("  CPU ms per IKE SA + Child SA by phase, live threads' schedstat (ns resolution):")
    phase_header = (
        "auth",
        "daemon",
        "latency min..max ms",
        "resp setup",
        "resp teardown",
        "init setup",
        "init teardown",
        "init stat",
    )
    phase_rows = []
    for auth in auths:
        for daemon in ("charon", "pyike"):
            result = results[auth, daemon]
            phase_rows.append(
                (
                    auth,
                    daemon,
                    "%s..%s" % (ms(min(result["times"])), ms(max(result["times"]))),
                    ms(result["resp_setup"]),
                    ms(result["resp_down"]),
                    ms(result["init_setup"]),
                    ms(result["init_down"]),
                    ms(result["init_stat"]),
                )
            )
    widths = [max(len(row[col]) for row in [phase_header, *phase_rows]) for col in range(len(phase_header))]
    for row in [phase_header, *phase_rows]:
        print("  " + " | ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    print("  setup = during `initiate`; teardown = terminate until neither end lists the IKE SA (the")
    print("  initiator's teardown includes its list-sas polls); init stat = the initiator's /proc/PID/stat")
    print("  over both, as the responder's column above.")
    print()
    print("  load average at the end: %.2f %.2f %.2f" % os.getloadavg())
    print("  command: %s" % command_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
