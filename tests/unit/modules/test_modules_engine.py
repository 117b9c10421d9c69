"""pyike.ipsec.engine's logic with systemd faked: unit, enable/start, idempotence, upgrade, removal.

(The supervisor path runs for real in tests/integration/test_modules.py.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import modules_support
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import deploy
from modules_support import FakeDaemon


class FakeSystemd:
    """systemctl/journalctl for one unit; a start runs the pyiked wrapper's environment in a sleeper."""

    def __init__(self, tmp_path, bin_dir):
        self.tmp_path = tmp_path
        self.bin_dir = bin_dir
        self.commands = []
        self.active = False
        self.enabled = False
        self.sleeper = None
        self.daemon = None

    def _start(self):
        wrapper = (self.bin_dir / "pyiked").read_text()
        digest = re.search(r"^PYIKE_ENGINE_DIGEST=(\S+)$", wrapper, re.M).group(1)
        env = dict(os.environ, PYIKE_ENGINE_DIGEST=digest)
        self.sleeper = subprocess.Popen(["sleep", "60"], env=env)
        self.daemon = FakeDaemon(self.tmp_path / "ctl", lambda command, args: {"ok": True, "result": {}})
        self.active = True

    def _stop(self):
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait()
            self.daemon.close()
            self.sleeper = self.daemon = None
        self.active = False

    def __call__(self, argv):
        if argv[0] not in ("systemctl", "journalctl"):  # e.g. the cryptography wheel's probe: run it
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
            return done.returncode, done.stdout, done.stderr
        self.commands.append(" ".join(argv[1:]) if argv[0] == "systemctl" else argv[0])
        verb = argv[1] if argv[0] == "systemctl" else None
        if verb == "is-active":
            return (0, "active\n", "") if self.active else (3, "inactive\n", "")
        if verb == "is-enabled":
            return (0, "enabled\n", "") if self.enabled else (1, "disabled\n", "")
        if verb == "show":
            return 0, "%d\n" % (self.sleeper.pid if self.sleeper else 0), ""
        if verb in ("start", "restart"):
            self._stop()
            self._start()
        elif verb == "stop":
            self._stop()
        elif verb == "enable":
            self.enabled = True
        elif verb == "disable":
            self.enabled = False
        return 0, "", ""


@pytest.fixture
def host(tmp_path):
    bin_dir = tmp_path / "sbin"
    config = tmp_path / "pyike.json"
    config.write_text(json.dumps({"settings": {"control_socket": str(tmp_path / "ctl")}, "connections": {}}))
    systemd = FakeSystemd(tmp_path, bin_dir)
    yield tmp_path, systemd
    systemd._stop()


def _run(tmp_path, systemd, check_mode=False, **overrides):
    params = {
        "state": "started",
        "config_path": str(tmp_path / "pyike.json"),
        "version": "1.0.0",
        "install_root": str(tmp_path / "opt"),
        "bin_dir": str(tmp_path / "sbin"),
        "service_manager": "systemd",
        "pid_file": str(tmp_path / "pid"),
        "log_file": str(tmp_path / "log"),
        "start_timeout": 5,
    }
    params.update(overrides)
    warnings = []
    task = deploy.EngineTask(
        params,
        check_mode,
        systemd,
        warnings.append,
        python=sys.executable,
        unit_path=str(tmp_path / "pyiked.service"),
    )
    return task.execute(), warnings


def test_systemd_install_start_idempotence_upgrade_and_removal(host):
    tmp_path, systemd = host
    result, _warnings = _run(tmp_path, systemd, check_mode=True)
    assert result["changed"] is True and result["started"] is True
    assert systemd.commands == ["is-active pyiked.service", "is-enabled pyiked.service"]
    assert not (tmp_path / "opt").exists()

    result, _warnings = _run(tmp_path, systemd)
    assert result["changed"] is True and result["started"] is True and result["running"] is True
    assert result["control_socket"] == str(tmp_path / "ctl")
    assert "daemon-reload" in systemd.commands and "enable pyiked.service" in systemd.commands
    assert "start pyiked.service" in systemd.commands
    unit = (tmp_path / "pyiked.service").read_text()
    assert "ExecStart=%s/sbin/pyiked --config %s/pyike.json" % (tmp_path, tmp_path) in unit

    systemd.commands.clear()
    result, _warnings = _run(tmp_path, systemd)
    assert result["changed"] is False and result["restarted"] is False, result
    assert not any(c.startswith(("start", "restart", "daemon-reload")) for c in systemd.commands)

    result, _warnings = _run(tmp_path, systemd, version="1.0.1")
    assert result["changed"] is True and result["restarted"] is True
    assert result["removed_versions"] == ["1.0.0"]
    assert sorted(os.listdir(tmp_path / "opt")) == ["1.0.1"]
    assert (tmp_path / "pyike.json").exists()

    result, _warnings = _run(tmp_path, systemd, state="stopped", version="1.0.1")
    assert result["changed"] is True and result["stopped"] is True and systemd.enabled is False

    result, _warnings = _run(tmp_path, systemd, state="absent", version="1.0.1")
    assert result["changed"] is True and result["removed_versions"] == ["1.0.1"]
    assert not (tmp_path / "pyiked.service").exists() and not (tmp_path / "opt").exists()
    assert os.listdir(tmp_path / "sbin") == []
    result, _warnings = _run(tmp_path, systemd, state="absent", version="1.0.1")
    assert result["changed"] is False


def test_started_without_configuration_installs_and_warns(host):
    tmp_path, systemd = host
    (tmp_path / "pyike.json").unlink()
    result, warnings = _run(tmp_path, systemd)
    assert result["changed"] is True and result["installed"] is True and result["running"] is False
    assert result["config_exists"] is False
    assert "was installed but not started" in warnings[0]
    assert not any(c.startswith(("start", "enable")) for c in systemd.commands)


def test_a_start_that_never_answers_fails_with_the_journal(host):
    tmp_path, systemd = host

    def no_answer(argv):
        if argv[:2] == ["systemctl", "start"]:
            systemd.commands.append("start")
            return 0, "", ""
        if argv[0] == "journalctl":
            return 0, "pyiked[42]: pyike: [Errno 98] Address already in use\n", ""
        return systemd(argv)

    with pytest.raises(deploy.EngineTaskError) as error:
        _run(tmp_path, no_answer, start_timeout=1)
    assert "pyiked did not come up" in str(error.value)
    assert "Address already in use" in str(error.value)


def test_foreign_wrappers_are_not_replaced(host):
    tmp_path, systemd = host
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "pyiked").write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(deploy.EngineTaskError, match="was not installed by pyike"):
        _run(tmp_path, systemd)


assert modules_support
