"""Create and destroy a lab of namespace hosts from a LabPlan (see plan.py).

Every host is a holder process (holder.py) that is PID 1 of its own net/mount/uts/ipc/pid
namespaces. The lab's state directory records what was created — holder PIDs in `<host>.pid`, the
plan in `lab.json` — and destroy removes exactly that, by PID, never by process name.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Tuple

from . import holder
from .plan import HostPlan, LabPlan

DEFAULT_STATE_ROOT = "/run/pyike-lab"
NSENTER_NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid")
READY_TIMEOUT = 20.0
EXIT_TIMEOUT = 10.0


class LabError(RuntimeError):
    """Creating, using or destroying the lab failed; the message says which host and step."""


def state_dir_for(name: str, state_root: Optional[str] = None) -> str:
    return os.path.join(state_root or DEFAULT_STATE_ROOT, name)


def pid_file_for(name: str, host: str, state_root: Optional[str] = None) -> str:
    return os.path.join(state_dir_for(name, state_root), host + ".pid")


def holder_marker(lab: str, host: str) -> str:
    return "%s:%s/%s" % (holder.MARKER, lab, host)


def read_holder_pid(pid_file: str, marker: Optional[str] = None) -> int:
    """The PID in `pid_file` if that process is a live lab holder; LabError says what is wrong."""
    try:
        with open(pid_file) as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        raise LabError(
            "pid file %s does not exist: the lab host was never created or was removed" % pid_file
        ) from None
    except OSError as exc:
        raise LabError("cannot read pid file %s: %s" % (pid_file, exc)) from None
    if not text.isdigit():
        raise LabError("pid file %s does not hold a PID (%r)" % (pid_file, text[:40]))
    pid = int(text)
    if not holder_is_alive(pid, marker or holder.MARKER):
        raise LabError(
            "the holder process %d named in %s is not running: the lab host is down" % (pid, pid_file)
        )
    return pid


def holder_is_alive(pid: int, marker: str) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
        with open("/proc/%d/stat" % pid) as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and any(marker.encode() in arg for arg in argv)


def wait_for(predicate, timeout: float, step: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def nsenter_argv(pid: int, argv: Sequence[str], namespaces: Sequence[str] = NSENTER_NAMESPACES) -> List[str]:
    """``argv`` in the namespaces of process ``pid`` (all of a lab host's by default)."""
    return ["nsenter", "--target", str(pid), *namespaces, "--", *argv]


def run(argv: Sequence[str], what: str, input_data: Optional[bytes] = None, timeout: float = 30.0) -> str:
    try:
        done = subprocess.run(list(argv), input=input_data, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise LabError("%s: %s timed out after %ss" % (what, " ".join(argv), timeout)) from None
    except OSError as exc:
        raise LabError("%s: cannot run %s: %s" % (what, argv[0], exc)) from None
    if done.returncode != 0:
        raise LabError(
            "%s: %s failed (rc=%d): %s"
            % (what, " ".join(argv), done.returncode, done.stderr.decode(errors="replace").strip())
        )
    return done.stdout.decode(errors="replace")


def _ip_batch(pid: int, commands: List[str], what: str) -> None:
    """`ip` commands in one process; a failure names the command, as a single `ip` would."""
    done = subprocess.run(nsenter_argv(pid, ["ip", "-batch", "-"]), input="\n".join(commands).encode() + b"\n",
                          capture_output=True, timeout=30.0, check=False)  # fmt: skip
    if done.returncode != 0:
        error = done.stderr.decode(errors="replace").strip()
        failed = re.search(r"Command failed -:(\d+)", error)  # ip -batch stops at the first failing line
        if failed and int(failed.group(1)) <= len(commands):
            command = commands[int(failed.group(1)) - 1]
        else:  # an argument it refuses ends it at once, without naming the line
            command = "-batch (%s)" % "; ".join(commands)
        detail = re.sub(r"\s*Command failed -:\d+\s*", " ", error).strip()
        raise LabError("%s: ip %s failed (rc=%d): %s" % (what, command, done.returncode, detail))


def stop_by_pid_file(lab: Lab, host: str, pid_file: str) -> None:
    """SIGTERM the process named in a host's pid file, SIGKILL it after 5 s; a host that is
    already gone counts as stopped."""
    try:
        lab.run_in(
            host,
            [
                "/bin/sh",
                "-c",
                "pid=$(cat %s 2>/dev/null) && kill $pid 2>/dev/null; "
                "for i in $(seq 50); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.1; done; kill -9 $pid"
                % pid_file,
            ],
        )
    except LabError:
        pass


class Lab:
    """One lab, identified by its name; its state lives in `<state_root>/<name>/`."""

    def __init__(self, name: str, state_root: Optional[str] = None):
        self.name = name
        self.state_dir = state_dir_for(name, state_root)
        self._unshare_procs: List[subprocess.Popen] = []

    # --- queries -------------------------------------------------------------------------
    def recorded_plan(self) -> Optional[Dict[str, Any]]:
        try:
            with open(os.path.join(self.state_dir, "lab.json")) as handle:
                return json.load(handle)
        except (OSError, ValueError):
            return None

    def pid_of(self, host: str) -> int:
        return read_holder_pid(os.path.join(self.state_dir, host + ".pid"), holder_marker(self.name, host))

    def is_up(self, plan: LabPlan) -> bool:
        recorded = self.recorded_plan()
        if recorded is None or recorded.get("plan") != plan.to_dict():
            return False
        return all(
            holder_is_alive(pid, holder_marker(self.name, host))
            for host, pid in recorded.get("pids", {}).items()
        )

    def run_in(
        self, host: str, argv: Sequence[str], input_data: Optional[bytes] = None, timeout: float = 30.0
    ) -> str:
        return run(nsenter_argv(self.pid_of(host), argv), "lab host %s" % host, input_data, timeout)

    def write_file(self, host: str, path: str, data: bytes, mode: str = "0600") -> None:
        """Replace a file inside a lab host; it never exists with a mode wider than ``mode``."""
        quoted = shlex.quote(path)
        script = "umask 077 && mkdir -p %s && cat > %s.tmp && chmod %s %s.tmp && mv %s.tmp %s" % (
            shlex.quote(os.path.dirname(path)),
            quoted,
            mode,
            quoted,
            quoted,
            quoted,
        )
        self.run_in(host, ["/bin/sh", "-c", script], input_data=data)

    # --- create ----------------------------------------------------------------------------
    def up(self, plan: LabPlan) -> bool:
        """Bring the lab to `plan`; returns False when it already was exactly that."""
        if self.is_up(plan):
            return False
        self.down()
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        holder_path = os.path.join(self.state_dir, "holder.py")
        with open(holder_path, "w") as handle:
            handle.write(inspect.getsource(holder))
        pids: Dict[str, int] = {}
        try:
            # all holders start at once, then each is waited for: a Python start costs seconds where the
            # CPU is emulated (the VM lab)
            starting = [(host.name, *self._start_holder(host.name, holder_path)) for host in plan.hosts]
            for name, proc, status_read in starting:
                pids[name] = self._holder_ready(name, proc, status_read)
            for link in plan.links:
                self._add_link(pids, link)
            for host in plan.hosts:
                self._configure(host, pids[host.name])
        except LabError:
            self.down()
            raise
        with open(os.path.join(self.state_dir, "lab.json"), "w") as handle:
            json.dump({"plan": plan.to_dict(), "pids": pids}, handle, indent=1)
        return True

    def _start_holder(self, host: str, holder_path: str) -> Tuple[subprocess.Popen, int]:
        """Start a host's holder; returns its unshare process and the pipe it reports on."""
        overlay_dir = os.path.join(self.state_dir, host)
        os.makedirs(overlay_dir, mode=0o700, exist_ok=True)
        status_read, status_write = os.pipe()
        log = open(os.path.join(self.state_dir, host + ".log"), "ab")
        argv = [
            "unshare", "--net", "--mount", "--uts", "--ipc", "--pid", "--fork", "--mount-proc",
            "--propagation", "private", "--",
            "/usr/bin/python3", holder_path, host, overlay_dir, str(status_write), holder_marker(self.name, host),
        ]  # fmt: skip
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(status_write,),
                start_new_session=True,
            )
        except OSError as exc:
            raise LabError("lab host %s: cannot start unshare: %s" % (host, exc)) from None
        finally:
            os.close(status_write)
            log.close()
        self._unshare_procs.append(proc)
        with open(os.path.join(self.state_dir, host + ".unshare.pid"), "w") as handle:
            handle.write("%d\n" % proc.pid)
        return proc, status_read

    def _holder_ready(self, host: str, proc: subprocess.Popen, status_read: int) -> int:
        status = self._read_status(status_read)
        holder_pid = self._child_of(proc.pid)
        if holder_pid is not None:
            with open(os.path.join(self.state_dir, host + ".pid"), "w") as handle:
                handle.write("%d\n" % holder_pid)
        if status != "ready" or holder_pid is None:
            raise LabError(
                "lab host %s: holder did not start: %s (log: %s.log)" % (host, status or "no answer", host)
            )
        return holder_pid

    @staticmethod
    def _read_status(fd: int) -> str:
        deadline = time.monotonic() + READY_TIMEOUT
        data = b""
        try:
            while b"\n" not in data and time.monotonic() < deadline:
                ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
                if not ready:
                    break
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        return data.decode(errors="replace").strip()

    @staticmethod
    def _child_of(pid: int) -> Optional[int]:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
                    children = handle.read().split()
            except OSError:
                return None
            if children:
                return int(children[0])
            time.sleep(0.01)
        return None

    def _add_link(self, pids: Dict[str, int], link) -> None:
        what = "link %s:%s <-> %s:%s" % (link.a_host, link.a_name, link.b_host, link.b_name)
        run(
            ["ip", "link", "add", link.a_name, "netns", str(pids[link.a_host]), "type", "veth",
             "peer", "name", link.b_name, "netns", str(pids[link.b_host])],
            what,
        )  # fmt: skip
        if link.b_bridge:
            self._ensure_bridge(pids[link.b_host], link.b_host, link.b_bridge)
            run(
                nsenter_argv(pids[link.b_host], ["ip", "link", "set", link.b_name, "master", link.b_bridge]),
                what,
            )

    @staticmethod
    def _ensure_bridge(pid: int, host: str, bridge: str) -> None:
        links = run(nsenter_argv(pid, ["ip", "-o", "link", "show"]), "lab host %s" % host)
        if (" %s:" % bridge) not in links and (" %s@" % bridge) not in links:
            run(nsenter_argv(pid, ["ip", "link", "add", bridge, "type", "bridge"]), "lab host %s" % host)

    def _configure(self, host: HostPlan, pid: int) -> None:
        what = "lab host %s" % host.name
        for bridge in host.bridges:
            self._ensure_bridge(pid, host.name, bridge)
        # one process per tool, not per setting: each costs a second where the CPU is emulated (the VM lab)
        sysctl = "1" if host.forwarding else "0"
        settings = ["net.ipv4.ip_forward=" + sysctl, "net.ipv6.conf.all.forwarding=" + sysctl]
        settings += ["%s=%s" % (key, value) for key, value in host.sysctls.items()]
        run(nsenter_argv(pid, ["sysctl", "-q", "-w", *settings]), what)
        links = run(nsenter_argv(pid, ["ip", "-o", "link", "show"]), what)
        commands = []
        for line in links.splitlines():
            ifname = line.split(":")[1].strip().split("@")[0]
            if ifname != "lo":
                commands.append("link set %s up" % ifname)
        for ifname, cidrs in host.addresses.items():
            for cidr in cidrs:
                # nodad: IPv6 addresses are usable at once instead of tentative for a second or two
                commands.append("address add %s dev %s%s" % (cidr, ifname, " nodad" if ":" in cidr else ""))
        if host.default_gateway:
            commands.append("route add default via %s" % host.default_gateway)
        if host.default_gateway6:
            commands.append("route add default via %s" % host.default_gateway6)  # the family is the gateway's
        _ip_batch(pid, commands, what)
        if host.nftables:
            run(nsenter_argv(pid, ["nft", "-f", "-"]), what + " (pyike_lab_nftables)", host.nftables.encode())

    # --- destroy ---------------------------------------------------------------------------
    def down(self) -> bool:
        """Kill every holder this lab recorded and remove its state; True if anything was there."""
        if not os.path.isdir(self.state_dir):
            return False
        victims = []
        for entry in sorted(os.listdir(self.state_dir)):
            if entry.endswith(".pid") and not entry.endswith(".unshare.pid"):
                host = entry[: -len(".pid")]
                try:
                    with open(os.path.join(self.state_dir, entry)) as handle:
                        pid = int(handle.read().strip() or 0)
                except (OSError, ValueError):
                    continue
                if pid and holder_is_alive(pid, holder_marker(self.name, host)):
                    os.kill(pid, signal.SIGKILL)
                    victims.append(pid)
        deadline = time.monotonic() + EXIT_TIMEOUT
        for pid in victims:
            while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        for proc in self._unshare_procs:
            try:
                proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._unshare_procs = []
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return True
