"""The three modules run by real Ansible on localhost (no root): AnsiballZ payload, no_log, check mode.

The engine module copies the engine out of its AnsiballZ zip here, exactly as on a target; the
config and sa_info modules talk to a fake daemon. Skipped where ansible-core is not installed (the
hosts' /usr/bin/python3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import modules_support
import pytest
from modules_support import COLLECTIONS_ROOT, ENGINE_DIR, REPO, FakeDaemon

pytest.importorskip("ansible")
pytestmark = pytest.mark.slow

PSK = "ansible-unit-psk-4Fq9-secret"


def _playbook(tmp_path, tasks, *args):
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]))
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_ROOT),
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_STDOUT_CALLBACK="ansible.builtin.default",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
        ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ansible",
            "playbook",
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=%s" % sys.executable,
            str(playbook),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_engine_installs_the_engine_from_its_payload(tmp_path):
    task = {
        "name": "Install",
        "pyike.ipsec.engine": {
            "state": "present",
            "install_root": str(tmp_path / "opt"),
            "bin_dir": str(tmp_path / "sbin"),
            "config_path": str(tmp_path / "pyike.json"),
            "service_manager": "supervisor",
        },
        "register": "installed",
    }
    show = {"name": "Show", "ansible.builtin.debug": {"var": "installed"}}
    rc, output = _playbook(tmp_path, [task, show])
    assert rc == 0, output
    version_dir = tmp_path / "opt" / "0.1.0"
    expected = {p.relative_to(ENGINE_DIR) for p in ENGINE_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    installed = {p.relative_to(version_dir / "pyike") for p in (version_dir / "pyike").rglob("*.py")}
    assert installed == expected
    for relative in expected:
        assert (version_dir / "pyike" / relative).read_bytes() == (ENGINE_DIR / relative).read_bytes()
    assert '"changed": true' in output and '"running": false' in output
    done = subprocess.run(
        [str(tmp_path / "sbin" / "pyikectl"), "--socket", str(tmp_path / "no.ctl"), "stats"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "no daemon control socket at" in done.stderr

    rc, output = _playbook(tmp_path, [task, show])
    assert rc == 0, output
    assert "changed=0" in output


def test_config_masks_keys_everywhere(tmp_path):
    answers = {"reload": {"ok": True, "result": {"message": "reloaded by the fake daemon"}}}
    daemon = FakeDaemon(tmp_path / "ctl", lambda command, args: answers[command])
    try:
        task = {
            "name": "Configure",
            "pyike.ipsec.config": {
                "path": str(tmp_path / "etc" / "pyike" / "pyike.yml"),
                "control_socket": str(tmp_path / "ctl"),
                "settings": {"listen": ["192.0.2.1"]},
                "connections": {
                    "hq": {
                        "local": {"address": "192.0.2.1", "id": "gw1.example"},
                        "remote": {"address": "198.51.100.1", "id": "gw2.example"},
                        "children": {"net": {"local_ts": ["10.1.0.0/24"], "remote_ts": ["10.2.0.0/24"]}},
                    }
                },
                "secrets": {"hq": PSK},
            },
        }
        rc, output = _playbook(tmp_path, [task], "-vvv", "--diff", "--check")
        assert rc == 0, output
        assert not (tmp_path / "etc").exists()
        rc, output = _playbook(tmp_path, [task], "-vvv", "--diff")
        assert rc == 0, output
        assert "reloaded by the fake daemon" in output and "psk: <hidden>" in output
        assert PSK not in output
        assert PSK in (tmp_path / "etc" / "pyike" / "pyike.yml").read_text()
        rc, output = _playbook(tmp_path, [task])
        assert rc == 0 and "changed=0" in output, output
        assert daemon.commands() == ["reload"]

        inline = json.loads(json.dumps(task))
        inline["pyike.ipsec.config"]["connections"]["hq"]["psk"] = PSK + "-inline"
        rc, output = _playbook(tmp_path, [inline], "-vvv")
        assert rc != 0
        assert "connections.hq.psk: pre-shared keys go in the no_log option secrets" in output
        assert PSK not in output
    finally:
        daemon.close()


def test_sa_info_fails_naming_what_is_not_up(tmp_path):
    conns = [
        {"name": "hq", "local_address": "192.0.2.1", "remote_address": "198.51.100.1", "children": ["net"]}
    ]
    answers = {
        "list-conns": {"ok": True, "result": conns},
        "list-sas": {"ok": True, "result": []},
        "initiate": {"ok": False, "error": "hq: IKE_AUTH failed: AUTHENTICATION_FAILED"},
        "stats": {"ok": True, "result": {"recent_failures": []}},
    }
    daemon = FakeDaemon(tmp_path / "ctl", lambda command, args: answers[command])
    try:
        task = {
            "name": "Wait",
            "pyike.ipsec.sa_info": {
                "control_socket": str(tmp_path / "ctl"),
                "wait_for": ["hq"],
                "initiate": True,
                "timeout": 2,
            },
        }
        rc, output = _playbook(tmp_path, [task])
        assert rc != 0
        assert (
            "not up after 2s: hq (no IKE SA; initiate: hq: IKE_AUTH failed: AUTHENTICATION_FAILED)" in output
        )
        rc, output = _playbook(tmp_path, [task], "--check")
        assert rc == 0, output  # check mode looks once and reports, it does not wait or fail
    finally:
        daemon.close()


assert modules_support
