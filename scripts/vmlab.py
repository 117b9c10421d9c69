"""The VM lab (make vm-test): boot ONE VM with Debian's stock kernel, run pytest inside it, return its result.

    python scripts/vmlab.py [PYTEST_ARGS...]      (default: tests/vm)
    python scripts/vmlab.py --script SCRIPT [ARGS...]   (a program instead: bench/esp_throughput.py under this
                                                        interpreter, scripts/molecule-vm.sh as it is)

The VM is virtme-ng's `vng` under QEMU TCG (--disable-kvm: nested KVM hangs on these machines) with the
host's root filesystem shared read-only; scripts/vm-guest.sh prepares it (modules, tmpfs) and runs
pytest with this interpreter. The exit code is honest: non-zero when the VM cannot start, times out,
crashes, when a test fails, when no test ran or when a test was skipped (a skipped VM test proves
nothing). Environment: VM_KERNEL (a /boot/vmlinuz-*), VM_MEMORY (2G), VM_CPUS (2), VM_TIMEOUT (1500 s:
the budget of the whole VM part, boot to power-off).

The root share is 9p without caching (virtme-ng's choice), so every file lookup is a round trip through
the emulated virtio device: importing cryptography alone took 10 s. /usr, the checkout and the virtualenv,
which nothing changes during a run, are shared a second time (cached_shares) and vm-guest.sh mounts them
over the same paths with cache=loose: the same import then takes 2 s.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST_SCRIPT = os.path.join(ROOT, "scripts", "vm-guest.sh")
RESULTS_ROOT = os.path.join(ROOT, ".build", "vm")
DEFAULT_TESTS = ["tests/vm"]
SETUP_HINT = "run `make setup` (scripts/setup.sh installs qemu-system-x86, busybox-static, linux-image-amd64, virtme-ng)"
MARKER = re.compile(r"^vmlab: (guest-start|prepared|tests-done)\b")


class VmLabError(RuntimeError):
    """The VM lab cannot run here, or the VM did not bring back a result; the message says why."""


def kernel_version(image: str) -> str:
    return os.path.basename(image)[len("vmlinuz-") :]


def has_kernel_esp(version: str) -> bool:
    return bool(glob.glob("/lib/modules/%s/kernel/net/ipv4/esp4.ko*" % version))


def _version_key(version: str) -> List[int]:
    return [int(part) for part in re.findall(r"\d+", version)]


def find_kernel(environ: Dict[str, str]) -> str:
    """VM_KERNEL, else the newest /boot/vmlinuz-* whose modules include esp4."""
    chosen = environ.get("VM_KERNEL")
    if chosen:
        if not os.path.isfile(chosen):
            raise VmLabError("VM_KERNEL=%s: no such file" % chosen)
        if not has_kernel_esp(kernel_version(chosen)):
            raise VmLabError(
                "VM_KERNEL=%s: /lib/modules/%s has no esp4 module (kernel ESP)"
                % (chosen, kernel_version(chosen))
            )
        return chosen
    images = [image for image in glob.glob("/boot/vmlinuz-*") if has_kernel_esp(kernel_version(image))]
    if not images:
        raise VmLabError("no kernel with kernel ESP: no /boot/vmlinuz-* with an esp4 module; " + SETUP_HINT)
    return max(images, key=lambda image: _version_key(kernel_version(image)))


def find_tools() -> Dict[str, str]:
    """vng (next to this interpreter, else on PATH) and QEMU; a VmLabError names what is missing."""
    tools = {}
    beside = os.path.join(os.path.dirname(sys.executable), "vng")
    tools["vng"] = beside if os.access(beside, os.X_OK) else (shutil.which("vng") or "")
    tools["qemu"] = shutil.which("qemu-system-x86_64") or ""
    tools["busybox"] = shutil.which("busybox") or ""
    missing = [name for name, path in tools.items() if not path]
    if missing:
        raise VmLabError("cannot boot the VM lab: %s not found; %s" % (", ".join(missing), SETUP_HINT))
    if os.geteuid() != 0:
        raise VmLabError(
            "the VM lab runs as root (it reads /boot/vmlinuz-* and the lab needs root in the VM)"
        )
    return tools


def cached_shares() -> List[Tuple[str, str, str]]:
    """(9p tag, path, how) of the directories shared a second time, with caching in the guest: /usr as a
    writable overlay (virtme-ng makes it writable too), the checkout and this virtualenv read-only."""
    shares = [("vmlab0", "/usr", "overlay"), ("vmlab1", ROOT, "ro")]
    prefix = os.path.realpath(sys.prefix)
    if not any(prefix == path or prefix.startswith(path + os.sep) for _tag, path, _how in shares):
        shares.append(("vmlab2", prefix, "ro"))
    for _tag, path, _how in shares:
        if "," in path or "\t" in path or "\n" in path:
            raise VmLabError("cannot share %r with the VM: a comma, tab or newline in the path" % path)
    return shares


def vng_argv(
    vng: str,
    kernel: str,
    results: str,
    shares: List[Tuple[str, str, str]],
    pytest_args: List[str],
    environ: Dict[str, str],
) -> List[str]:
    guest = " ".join(
        shlex.quote(arg) for arg in ["bash", GUEST_SCRIPT, results, sys.executable, *pytest_args]
    )  # pytest_args may start with --script: vm-guest.sh then runs that program with the rest
    virtfs = [
        "--qemu-opts=-virtfs local,path=%s,mount_tag=%s,security_model=none,readonly=on" % (path, tag)
        for tag, path, _how in shares
    ]
    return [
        vng, "--run", kernel, "--disable-kvm", "--force-9p",
        "--memory", environ.get("VM_MEMORY", "2G"), "--cpus", environ.get("VM_CPUS", "2"),
        "--rwdir", results, "--cwd", ROOT, *virtfs, "--exec", guest,
    ]  # fmt: skip


def junit_counts(path: str) -> Optional[Dict[str, int]]:
    """tests/failures/errors/skipped summed over the suites of a JUnit XML file; None if unreadable."""
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - our own pytest wrote it a moment ago
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {
        key: sum(int(suite.get(key, 0)) for suite in suites)
        for key in ("tests", "failures", "errors", "skipped")
    }
    counts["skipped_names"] = [  # type: ignore[assignment]
        "%s::%s" % (case.get("classname"), case.get("name"))
        for case in root.iter("testcase")
        if case.find("skipped") is not None
    ]
    return counts


class Boot:
    """One vng process: its output echoed as it comes, each marker line timed from the start."""

    def __init__(self, argv: List[str], timeout: float):
        self.argv = argv
        self.timeout = timeout
        self.marks: Dict[str, float] = {}
        self.timed_out = False
        self.returncode: Optional[int] = None
        self.elapsed = 0.0

    def run(self) -> None:
        start = time.monotonic()
        # A session of its own, so that a timeout kills vng, QEMU and nothing else (by this group's id).
        proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        timer = threading.Timer(self.timeout, self._kill, (proc,))
        timer.start()
        try:
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\r\n")
                match = MARKER.match(line)
                if match and match.group(1) not in self.marks:
                    self.marks[match.group(1)] = time.monotonic() - start
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            self.returncode = proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:
                self._kill(proc)
                proc.wait()
        self.elapsed = time.monotonic() - start

    def _kill(self, proc: subprocess.Popen) -> None:
        self.timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def phases(self) -> str:
        marks = self.marks
        parts = []
        if "guest-start" in marks:
            parts.append("boot %.1f s" % marks["guest-start"])
        if "prepared" in marks and "guest-start" in marks:
            parts.append("prepare %.1f s" % (marks["prepared"] - marks["guest-start"]))
        if "tests-done" in marks and "prepared" in marks:
            parts.append("tests %.1f s" % (marks["tests-done"] - marks["prepared"]))
        if "tests-done" in marks:
            parts.append("shutdown %.1f s" % (self.elapsed - marks["tests-done"]))
        parts.append("total %.1f s" % self.elapsed)
        return ", ".join(parts)


def verdict(boot: Boot, results: str, script: bool = False) -> List[str]:
    """Why this run failed (empty: it passed)."""
    if boot.timed_out:
        return ["the VM did not finish within VM_TIMEOUT=%.0f s and was killed" % boot.timeout]
    try:
        with open(os.path.join(results, "error.txt")) as handle:
            return [handle.read().strip()]
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(results, "rc")) as handle:
            rc = int(handle.read().strip())
    except (OSError, ValueError):
        if "guest-start" not in boot.marks:
            return ["the VM never ran the guest script (vng exit %s): see its output above" % boot.returncode]
        return [
            "the guest left no pytest exit code: the VM crashed or pytest was killed (vng exit %s)"
            % boot.returncode
        ]
    problems = []
    if rc != 0:
        problems.append("pytest inside the VM exited %d" % rc)
    if boot.returncode != rc:
        problems.append("vng exited %s although pytest exited %d" % (boot.returncode, rc))
    if script:
        return [problem.replace("pytest", "the script") for problem in problems]
    counts = junit_counts(os.path.join(results, "junit.xml"))
    if counts is None:
        problems.append("pytest wrote no readable junit.xml")
    else:
        if counts["tests"] == 0:
            problems.append("no test ran inside the VM (check the selection)")
        if counts["skipped"]:
            problems.append(
                "%d test(s) skipped inside the VM: %s"
                % (counts["skipped"], ", ".join(counts["skipped_names"]))
            )
    return problems


def main(argv: List[str]) -> int:
    environ = dict(os.environ)
    try:
        tools = find_tools()
        kernel = find_kernel(environ)
        timeout = float(environ.get("VM_TIMEOUT", "1500"))
        shares = cached_shares()
    except (VmLabError, ValueError) as exc:
        print("vm-test: FAILED: %s" % exc, file=sys.stderr)
        return 2
    os.makedirs(RESULTS_ROOT, exist_ok=True)
    results = tempfile.mkdtemp(prefix="run-", dir=RESULTS_ROOT)
    # vng finds virtme-run and friends on PATH.
    os.environ["PATH"] = os.path.dirname(tools["vng"]) + os.pathsep + os.environ.get("PATH", "")
    # The guest mounts these (vm-guest.sh): tag, path and how, tab-separated.
    with open(os.path.join(results, "shares"), "w") as handle:
        handle.writelines("%s\t%s\t%s\n" % share for share in shares)
    print("vm-test: kernel %s, QEMU TCG, results in %s" % (kernel, results), flush=True)
    boot = Boot(vng_argv(tools["vng"], kernel, results, shares, argv or DEFAULT_TESTS, environ), timeout)
    boot.run()
    problems = verdict(boot, results, script=bool(argv) and argv[0] == "--script")
    print("vm-test: times: %s" % boot.phases())
    if problems:
        for problem in problems:
            print("vm-test: FAILED: %s" % problem, file=sys.stderr)
        return 1
    shutil.rmtree(results, ignore_errors=True)
    print("vm-test: passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
