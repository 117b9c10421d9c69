"""pyike_supervisor.py with a stand-in daemon: lock, restart with back-off, HUP and TERM forwarding."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from modules_support import REPO

SUPERVISOR = REPO / "plugins" / "module_utils" / "pyike_ansible" / "supervisor.py"

FAKE_DAEMON = """
import os, signal, sys, time
config = sys.argv[sys.argv.index("--config") + 1]
record = os.path.join(os.path.dirname(config), "record")
def note(text):
    with open(record, "a") as handle:
        handle.write("%s %d %s\\n" % (text, os.getpid(), os.environ.get("PYIKE_ENGINE_DIGEST", "")))
note("start")
if open(config).read().strip() == "exit":
    sys.exit(3)
signal.signal(signal.SIGHUP, lambda *a: note("hup"))
def term(*a):
    note("term")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def engine(tmp_path):
    package = tmp_path / "engine" / "pyike"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_DAEMON)
    return tmp_path


def _argv(tmp_path, *extra):
    return [
        sys.executable,
        str(SUPERVISOR),
        "--python",
        sys.executable,
        "--engine-dir",
        str(tmp_path / "engine"),
        "--config",
        str(tmp_path / "config"),
        "--pid-file",
        str(tmp_path / "pyiked.pid"),
        "--log-file",
        str(tmp_path / "pyiked.log"),
        "--engine-digest",
        "d1",
        *extra,
    ]


def _records(tmp_path):
    try:
        return [line.split() for line in (tmp_path / "record").read_text().splitlines()]
    except FileNotFoundError:
        return []


def _wait(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_runs_forwards_hup_and_stops_on_term(engine):
    (engine / "config").write_text("run")
    proc = subprocess.Popen(_argv(engine), stderr=subprocess.PIPE)
    try:
        assert _wait(lambda: [r[0] for r in _records(engine)] == ["start"])
        assert (engine / "pyiked.pid").read_text().strip() == str(proc.pid)
        assert _records(engine)[0][2] == "d1"  # the daemon learns which engine it runs
        second = subprocess.run(_argv(engine), capture_output=True, text=True, timeout=10, check=False)
        assert second.returncode == 1 and "another supervisor holds" in second.stderr
        proc.send_signal(signal.SIGHUP)
        assert _wait(lambda: [r[0] for r in _records(engine)] == ["start", "hup"])
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert [r[0] for r in _records(engine)] == ["start", "hup", "term"]
        assert not (engine / "pyiked.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_restarts_a_daemon_that_exits(engine):
    (engine / "config").write_text("exit")
    proc = subprocess.Popen(_argv(engine), stderr=subprocess.PIPE)
    try:
        assert _wait(lambda: len(_records(engine)) >= 2, timeout=6)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stderr.read().decode()
    assert "exited with status 3; restarting in 1 s" in log


def test_daemonize_detaches_and_logs(engine):
    (engine / "config").write_text("run")
    started = subprocess.run(_argv(engine, "--daemonize"), capture_output=True, timeout=10, check=False)
    assert started.returncode == 0 and started.stdout == b"" and started.stderr == b""
    assert _wait(lambda: (engine / "pyiked.pid").exists() and _records(engine))
    pid = int((engine / "pyiked.pid").read_text())
    try:
        assert os.getsid(pid) == pid  # setsid: its own session, away from the caller's
        assert oct(os.stat(engine / "pyiked.log").st_mode & 0o777) == "0o600"
    finally:
        os.kill(pid, signal.SIGTERM)
    assert _wait(lambda: not (engine / "pyiked.pid").exists())
    assert "started pyiked" in (engine / "pyiked.log").read_text()
