# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running pyiked as a service: a systemd unit where systemd is PID 1, else a supervised process.

Both managers answer status() with whether the daemon runs, its PID and the digest of the
engine it was started from (PYIKE_ENGINE_DIGEST: on the supervisor's command line, or in the
environment the pyiked wrapper gives the daemon), so that an upgraded engine, or an engine
reinstalled after a failed restart, is restarted exactly once.

Commands go through ``run(argv) -> (rc, stdout, stderr)``: the module passes its run_command.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import time

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.client import is_answering

DIGEST_VARIABLE = "PYIKE_ENGINE_DIGEST"


class ServiceError(Exception):
    pass


def systemd_is_pid1():
    """sd_booted(3): systemd runs as init exactly when /run/systemd/system exists."""
    return os.path.isdir("/run/systemd/system")


def process_environ(pid):
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
    return env


def process_cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            raw = handle.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def read_new_text(path, offset, limit=6000):
    """What was appended to `path` since byte `offset` (the last `limit` characters)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return text[-limit:]


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def wait_for_daemon(control_socket, timeout, failed=None, sleep=time.sleep):
    """True once the daemon answers on `control_socket`; False on timeout or when failed() says so."""
    deadline = time.monotonic() + timeout
    while True:
        if is_answering(control_socket, timeout=2.0):
            return True
        if (failed is not None and failed()) or time.monotonic() >= deadline:
            return False
        sleep(0.1)


class Supervised:
    """pyike_supervisor.py started detached (setsid) with a pid file it keeps locked."""

    name = "supervisor"

    def __init__(
        self,
        run,
        python,
        version_dir,
        config_path,
        pid_file,
        log_file,
        control_socket,
        engine_digest,
        site_dir=None,
    ):
        self.run = run
        self.python = python
        self.version_dir = version_dir
        self.config_path = config_path
        self.pid_file = pid_file
        self.log_file = log_file
        self.control_socket = control_socket
        self.engine_digest = engine_digest
        self.site_dir = site_dir

    def _locked_pid(self):
        """The supervisor's PID when one holds the pid file's lock, else None."""
        try:
            fd = os.open(self.pid_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                content = os.read(fd, 64).decode("ascii", "replace").strip()
                try:
                    return int(content)
                except ValueError:
                    return -1  # locked but the PID is not written yet
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def status(self):
        pid = self._locked_pid()
        if pid is None:
            return {"running": False, "pid": None, "engine_digest": None}
        argv = process_cmdline(pid) if pid > 0 else []
        running_digest = None
        if "--engine-digest" in argv[:-1]:
            running_digest = argv[argv.index("--engine-digest") + 1]
        return {"running": True, "pid": pid, "engine_digest": running_digest}

    def start(self, timeout):
        for directory in (os.path.dirname(self.pid_file), os.path.dirname(self.log_file)):
            if directory and not os.path.isdir(directory):
                os.makedirs(directory, 0o700)
        offset = file_size(self.log_file)
        argv = [
            self.python,
            os.path.join(self.version_dir, "pyike_supervisor.py"),
            "--daemonize",
            "--python",
            self.python,
            "--engine-dir",
            self.version_dir,
            "--config",
            self.config_path,
            "--pid-file",
            self.pid_file,
            "--log-file",
            self.log_file,
            "--engine-digest",
            self.engine_digest,
        ]
        if self.site_dir:
            argv += ["--site-dir", self.site_dir]
        rc, out, err = self.run(argv)
        if rc != 0:
            raise ServiceError("starting the supervisor failed (rc=%d): %s" % (rc, (err or out).strip()))

        def failed():
            text = read_new_text(self.log_file, offset)
            return "restarting in" in text or "not starting" in text

        if not wait_for_daemon(self.control_socket, timeout, failed):
            exited = failed()
            log = read_new_text(self.log_file, offset)
            self.stop(10)
            raise ServiceError(
                "pyiked did not come up (%s); it was stopped again. %s:\n%s"
                % (
                    "it exited right after starting"
                    if exited
                    else "no answer on %s within %ss" % (self.control_socket, timeout),
                    self.log_file,
                    log.strip() or "(empty)",
                )
            )

    def stop(self, timeout):
        pid = self._locked_pid()
        if pid is None or pid <= 0:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._locked_pid() is None:
                return
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)  # the supervisor leads its session and process group
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while self._locked_pid() is not None and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, timeout):
        self.stop(timeout)
        self.start(timeout)

    def remove(self):
        pass


class Systemd:
    """The unit pyiked.service; the daemon's journal explains failures."""

    name = "systemd"
    unit = "pyiked.service"

    def __init__(self, run, control_socket):
        self.run = run
        self.control_socket = control_socket

    def _systemctl(self, *args, **kwargs):
        rc, out, err = self.run(["systemctl", *args])
        if rc != 0 and kwargs.get("check", True):
            raise ServiceError("systemctl %s failed (rc=%d): %s" % (" ".join(args), rc, (err or out).strip()))
        return rc, (out or "").strip()

    def status(self):
        rc, state = self._systemctl("is-active", self.unit, check=False)
        running = rc == 0 and state in ("active", "reloading", "activating")
        pid = None
        running_digest = None
        if running:
            pid_rc, pid_text = self._systemctl(
                "show", "--property=MainPID", "--value", self.unit, check=False
            )
            if pid_rc == 0 and pid_text.isdigit() and int(pid_text) > 0:
                pid = int(pid_text)
                running_digest = process_environ(pid).get(DIGEST_VARIABLE)
        rc, enabled = self._systemctl("is-enabled", self.unit, check=False)
        return {
            "running": running,
            "pid": pid,
            "engine_digest": running_digest,
            "enabled": enabled == "enabled",
        }

    def daemon_reload(self):
        self._systemctl("daemon-reload")

    def enable(self):
        self._systemctl("enable", self.unit)

    def disable(self):
        self._systemctl("disable", self.unit, check=False)

    def _journal(self):
        rc, out, err = self.run(["journalctl", "--unit", self.unit, "--lines", "30", "--no-pager"])
        return (out if rc == 0 else err).strip()

    def _started(self, verb, timeout):
        self._systemctl(verb, self.unit)

        def failed():  # the daemon exited: no point waiting for a slow start
            _rc, state = self._systemctl("is-active", self.unit, check=False)
            return state in ("failed", "inactive")

        if not wait_for_daemon(self.control_socket, timeout, failed):
            raise ServiceError(
                "pyiked did not come up (no answer on %s within %ss); journalctl --unit %s:\n%s"
                % (self.control_socket, timeout, self.unit, self._journal())
            )

    def start(self, timeout):
        self._started("start", timeout)

    def restart(self, timeout):
        self._started("restart", timeout)

    def stop(self, timeout):
        self._systemctl("stop", self.unit)
