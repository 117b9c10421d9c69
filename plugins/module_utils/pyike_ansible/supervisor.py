# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""pyiked's supervisor where systemd is not PID 1 (containers, lab hosts): keeps the daemon running.

The engine module installs this file as ``<install_root>/<version>/pyike_supervisor.py`` and starts
it with ``--daemonize``: it moves its standard streams to /dev/null and the log file, forks, calls
setsid() and then

* holds an exclusive flock(2) on the pid file for its whole life and writes its PID there (a
  second supervisor refuses to start; "running" means "the lock is held", which survives PID reuse),
* runs ``python -m pyike daemon --config FILE`` with PYTHONPATH set to the engine directory, in the
  same process group, and restarts it when it exits, after 1, 2, 4 ... up to 30 seconds (back to 1 s
  after a run of a minute or more),
* forwards SIGHUP (reload) to the daemon, and on SIGTERM/SIGINT stops the daemon with SIGTERM,
  waits for it, removes the pid file and exits.

Standard library only, Python 3.9+; it is not imported by the daemon.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import signal
import time

MAX_DELAY = 30.0
STABLE_RUN = 60.0
DAEMON_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def log(text):
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.write(2, ("%s pyike.supervisor %s\n" % (stamp, text)).encode("utf-8", "replace"))
    except OSError:
        pass


def describe_status(status):
    if os.WIFSIGNALED(status):
        return "was killed by signal %d" % os.WTERMSIG(status)
    return "exited with status %d" % os.WEXITSTATUS(status)


def lock_pid_file(path):
    """An fd holding the exclusive lock on `path`, or None when another supervisor holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, ("%d\n" % os.getpid()).encode())
    return fd


def daemonize(log_file):
    """Detach: streams to /dev/null and the log, fork, new session, cwd /, umask 077."""
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    null_fd = os.open(os.devnull, os.O_RDWR)
    os.dup2(null_fd, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (log_fd, null_fd):
        if fd > 2:
            os.close(fd)
    if os.fork() > 0:
        os._exit(0)  # the starter returns at once; the child carries on
    os.setsid()
    os.chdir("/")
    os.umask(0o077)


class Supervisor:
    def __init__(self, python, engine_dir, config, log_level=None, engine_digest="", site_dir=None):
        self.argv = [python, "-m", "pyike", "daemon", "--config", config]
        if log_level:
            self.argv += ["--log-level", log_level]
        pythonpath = engine_dir + (":" + site_dir if site_dir else "")
        self.env = {"PATH": DAEMON_PATH, "PYTHONPATH": pythonpath, "LANG": "C.UTF-8"}
        if engine_digest:
            self.env["PYIKE_ENGINE_DIGEST"] = engine_digest
        self.child = None
        self.stopping = False

    def _on_stop(self, signum, frame):
        self.stopping = True
        self._forward(signal.SIGTERM)

    def _on_hup(self, signum, frame):
        self._forward(signal.SIGHUP)

    def _forward(self, signum):
        if self.child is not None:
            try:
                os.kill(self.child, signum)
            except OSError:
                pass

    def _spawn(self):
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                        signal.signal(signum, signal.SIG_DFL)
                    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
                    os.execve(self.argv[0], self.argv, self.env)  # noqa: S606 - argv is ours, no shell
                except BaseException:  # pylint: disable=broad-except
                    os._exit(127)
            self.child = pid
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        return pid

    def _sleep(self, seconds):
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def run(self):
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        delay = 1.0
        while not self.stopping:
            started = time.monotonic()
            pid = self._spawn()
            log("started pyiked (pid %d): %s" % (pid, " ".join(self.argv)))
            status = os.waitpid(pid, 0)[1]
            self.child = None
            if self.stopping:
                log("pyiked (pid %d) %s; stopping" % (pid, describe_status(status)))
                break
            if time.monotonic() - started >= STABLE_RUN:
                delay = 1.0
            log("pyiked (pid %d) %s; restarting in %g s" % (pid, describe_status(status), delay))
            self._sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
        return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyike_supervisor", description="keep pyiked running")
    parser.add_argument("--python", required=True, help="interpreter that runs the daemon")
    parser.add_argument("--engine-dir", required=True, help="directory that holds the pyike package")
    parser.add_argument("--config", required=True, help="the daemon's configuration file")
    parser.add_argument("--pid-file", required=True)
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--log-level", default=None)
    parser.add_argument("--site-dir", default=None, help="searched after the engine: a newer cryptography")
    parser.add_argument("--engine-digest", default="", help="recorded so that the module can tell an upgrade")
    parser.add_argument("--daemonize", action="store_true", help="detach from the caller first")
    args = parser.parse_args(argv)
    if args.daemonize:
        daemonize(args.log_file)
    fd = lock_pid_file(args.pid_file)
    if fd is None:
        log("another supervisor holds %s; not starting" % args.pid_file)
        return 1
    try:
        return Supervisor(
            args.python, args.engine_dir, args.config, args.log_level, args.engine_digest, args.site_dir
        ).run()
    finally:
        try:
            os.unlink(args.pid_file)
        except OSError:
            pass
        os.close(fd)


if __name__ == "__main__":
    raise SystemExit(main())
