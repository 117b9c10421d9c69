"""A private systemd user manager that reads units from one directory: systemd itself parses them.

The manager runs in its own mount namespace (a tmpfs /run with /run/systemd/system, so it starts
at all) and its own cgroup namespace rooted at a cgroup made for it, so the cgroups it creates and
the processes it moves stay inside that cgroup: nothing of the host is touched. It is stopped by
killing that cgroup (every process in it was started here) and the cgroup is removed.

Needs root, unshare(1), systemd and a cgroup2 hierarchy; ``unavailable()`` says what is missing.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import List, Optional

SYSTEMD = "/lib/systemd/systemd"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# DefaultDependencies pull in basic.target; an empty one stands in for the real boot target.
STUB_TARGET = "[Unit]\nDescription=stand-in for the test\n"


def cgroup2_root() -> Optional[str]:
    with open("/proc/self/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    return None


def unavailable() -> str:
    """Why a private systemd manager cannot run here ("" when it can)."""
    if os.geteuid() != 0:
        return "needs root (mount and cgroup namespaces)"
    if not os.access(SYSTEMD, os.X_OK):
        return "systemd is not installed (%s)" % SYSTEMD
    if shutil.which("unshare") is None:
        return "unshare(1) is not installed"
    if cgroup2_root() is None:
        return "no cgroup2 hierarchy is mounted"
    return ""


def verify(unit_file: Path) -> str:
    """What ``systemd-analyze verify`` says about a unit file (parse errors name the line)."""
    if SYSTEMD_ANALYZE is None:
        return "(systemd-analyze is not installed)"
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (done.stdout + done.stderr).strip()


class PrivateManager:
    """``systemd --user --unit=TARGET`` over ``units_dir``; use as a context manager."""

    def __init__(self, units_dir: Path, target: str, log: Path):
        self.units_dir = units_dir
        self.target = target
        self.log = log
        self.cgroup = os.path.join(cgroup2_root() or "", "pyike-test-systemd-%s" % uuid.uuid4().hex[:12])
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> PrivateManager:
        (self.units_dir / "basic.target").write_text(STUB_TARGET)
        os.mkdir(self.cgroup)
        inner = (
            "mount -t tmpfs tmpfs /run && mount -t cgroup2 cgroup2 /sys/fs/cgroup && "
            "mkdir -p /run/systemd/system /run/user/0 && chmod 700 /run/user/0 && "
            "XDG_RUNTIME_DIR=/run/user/0 SYSTEMD_UNIT_PATH=%s exec %s --user --unit=%s"
            % (self.units_dir, SYSTEMD, self.target)
        )
        outer = 'echo $$ > "$1/cgroup.procs" && exec unshare -m -C --propagation private sh -c "$2"'
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                ["/bin/sh", "-c", outer, "sh", self.cgroup, inner],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_for(self, paths: List[Path], deadline_seconds: float = 60.0) -> List[Path]:
        """The paths of ``paths`` that exist once all do, or when the manager ended or the deadline
        (a bound for a broken run, not a timing assertion) passed."""
        deadline = time.monotonic() + deadline_seconds
        while time.monotonic() < deadline:
            if all(path.exists() for path in paths) or self.process.poll() is not None:
                break
            time.sleep(0.05)
        return [path for path in paths if path.exists()]

    def _kill_cgroup(self) -> None:
        try:
            with open(os.path.join(self.cgroup, "cgroup.kill"), "w") as kill:
                kill.write("1")
            return
        except OSError:  # before Linux 5.14: each process of the cgroup, all started here
            pass
        for root, _dirs, _files in os.walk(self.cgroup):
            try:
                with open(os.path.join(root, "cgroup.procs")) as procs:
                    pids = [int(line) for line in procs if line.strip()]
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __exit__(self, *exc_info) -> None:
        self._kill_cgroup()
        if self.process is not None:
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        for _attempt in range(100):
            try:
                for root, dirs, _files in os.walk(self.cgroup, topdown=False):
                    for name in dirs:
                        os.rmdir(os.path.join(root, name))
                os.rmdir(self.cgroup)
                return
            except FileNotFoundError:
                return
            except OSError:  # the kernel is still releasing the killed processes
                time.sleep(0.05)
