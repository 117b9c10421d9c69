"""pyike.ipsec.engine, config and sa_info against two lab gateways, through the nsenter connection.

One lab (two sites with a LAN client each) is shared by the tests of this file, which run in order
and build on each other: install and start, a tunnel and a ping, idempotence, check mode, a refused
configuration, a key change under -vvv, an upgrade, stop and removal.

Lab hosts share /opt and /usr/local with the machine (only /etc, /var/lib and /var/log are
copy-on-write), so the engine goes to /var/lib/pyike here instead of /opt/pyike and /usr/local/sbin.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import ansible_env, run_playbook, task_results
from pings import assert_replies

pytestmark = pytest.mark.root

PLAYBOOKS = Path(__file__).parent / "playbooks"
SITE = PLAYBOOKS / "modules_site.yml"
BAD = PLAYBOOKS / "modules_bad_config.yml"
ENGINE_STATE = PLAYBOOKS / "modules_engine_state.yml"
PSK = "modules-test-psk-9c2e71b04a"
NEW_PSK = "modules-test-psk-rotated-5d83f2"
INSTALL_ROOT = "/var/lib/pyike/opt"
BIN_DIR = "/var/lib/pyike/sbin"
CONFIG = "/etc/pyike/pyike.yml"
GATEWAYS = ("gw1", "gw2")


@pytest.fixture(scope="module")
def lab(module_lab):
    return module_lab


@pytest.fixture(scope="module")
def inventory(lab, tmp_path_factory):
    def gateway(me, peer, wan, lan, peer_wan, peer_lan):
        return {"wan": wan, "lan": lan, "peer": peer, "peer_wan": peer_wan, "peer_lan": peer_lan}

    data = {
        "lab": {
            "vars": {
                "pyike_lab_name": lab.name,
                "ansible_connection": "pyike.ipsec.nsenter",
                "ansible_python_interpreter": "/usr/bin/python3",
                "pyike_install_root": INSTALL_ROOT,
                "pyike_bin_dir": BIN_DIR,
            },
            "children": {
                "gateways": {
                    "hosts": {
                        "gw1": gateway(
                            "gw1", "gw2", "192.0.2.1", "10.1.0.0/24", "198.51.100.1", "10.2.0.0/24"
                        ),
                        "gw2": gateway(
                            "gw2", "gw1", "198.51.100.1", "10.2.0.0/24", "192.0.2.1", "10.1.0.0/24"
                        ),
                    }
                },
                "clients": {"hosts": {"c1": {}, "c2": {}}},
            },
        }
    }
    path = tmp_path_factory.mktemp("modules") / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def sh(lab, host, script):
    return lab.run_in(host, ["/bin/sh", "-c", script])


def ping_across(lab):
    out = lab.run_in("c1", ["ping", "-c", "3", "-i", "0.2", "-w", "10", "10.2.0.10"])
    assert_replies(out, 3)


def fingerprint(lab, host):
    """What check mode must leave alone: the config, the installed versions, the daemon's PID."""
    return sh(
        lab,
        host,
        "sha256sum %s; ls %s; cat /run/pyike/pyiked.pid 2>/dev/null; true" % (CONFIG, INSTALL_ROOT),
    )


def changed_count(result):
    return {host: stats["changed"] for host, stats in result["stats"].items()}


def test_install_start_tunnel_and_idempotence(lab, inventory):
    rc, result, output = run_playbook(SITE, inventory, "-e", "tunnel_psk=%s" % PSK)
    assert rc == 0, output
    assert PSK not in output
    for host in GATEWAYS:
        installed = task_results(result, "Install the engine")[host]
        assert installed["changed"] is True and installed["installed"] is True, installed
        assert installed["running"] is False and installed["service_manager"] == "supervisor"
        assert installed["dependencies"]["cryptography"] and installed["dependencies"]["pyroute2"]
        configured = task_results(result, "Configure the tunnel")[host]
        assert configured["changed"] is True and configured["added"] == ["site2site"]
        assert configured["reloaded"] is False  # no daemon yet: it reads the file when it starts
        started = task_results(result, "Start the engine")[host]
        assert started["changed"] is True and started["started"] is True and started["running"] is True
        status = task_results(result, "Wait for the tunnel")[host]
        assert status["connections"]["site2site"]["up"] is True
        assert status["connections"]["site2site"]["children"]["net"]["state"] == "INSTALLED"
        assert status["not_up"] == []
        # which dataplane carries ESP and why (settings.dataplane, default auto: the probe decides)
        dataplane = status["dataplane"]
        assert dataplane["setting"] == "auto" and dataplane["mode"] in ("kernel", "userspace"), dataplane
        assert dataplane["reason"].startswith("auto: kernel ESP %s" % (
            "available" if dataplane["mode"] == "kernel" else "unavailable: XFRM_MSG_NEWSA")), dataplane  # fmt: skip
        # The supervisor holds the pid file; the daemon is its child; the control socket answers.
        pid = int(sh(lab, host, "cat /run/pyike/pyiked.pid").strip())
        assert pid == started["pid"]
        tree = sh(lab, host, "ps -o pid=,ppid=,args= -e")
        assert any(
            line.split()[0] == str(pid) and "pyike_supervisor.py" in line for line in tree.splitlines()
        )
        assert any(line.split()[1] == str(pid) and "-m pyike daemon" in line for line in tree.splitlines())
        assert sh(lab, host, "stat -c %%a %s /etc/pyike" % CONFIG).split() == ["600", "700"]
        assert "ESTABLISHED" in sh(lab, host, "%s/pyikectl list-sas" % BIN_DIR)
    ping_across(lab)

    rc, result, output = run_playbook(SITE, inventory, "-e", "tunnel_psk=%s" % PSK)
    assert rc == 0, output
    assert changed_count(result) == {"c1": 0, "gw1": 0, "gw2": 0}
    assert all(r["reloaded"] is False for r in task_results(result, "Configure the tunnel").values())


def test_check_mode_changes_nothing(lab, inventory):
    before = {host: fingerprint(lab, host) for host in GATEWAYS}
    sas_before = json.loads(sh(lab, "gw1", "%s/pyikectl list-sas --json" % BIN_DIR))
    rc, result, output = run_playbook(
        SITE,
        inventory,
        "--check",
        "--diff",
        "-e",
        "tunnel_psk=%s tunnel_esp=aes128gcm16 engine_version=0.1.9" % NEW_PSK,
    )
    assert rc == 0, output
    assert PSK not in output and NEW_PSK not in output
    for host in GATEWAYS:
        configured = task_results(result, "Configure the tunnel")[host]
        assert configured["changed"] is True and configured["modified"] == ["site2site"]
        assert "- aes128gcm16" in configured["diff"]["after"]
        assert "psk: <hidden, changed>" in configured["diff"]["after"]
        engine = task_results(result, "Install the engine")[host]
        assert engine["changed"] is True and engine["restarted"] is True
        assert engine["version"] == "0.1.9"
    assert {host: fingerprint(lab, host) for host in GATEWAYS} == before
    sas_after = json.loads(sh(lab, "gw1", "%s/pyikectl list-sas --json" % BIN_DIR))
    assert [sa["spi_i"] for sa in sas_after] == [sa["spi_i"] for sa in sas_before]


def test_a_refused_configuration_keeps_file_and_tunnel(lab, inventory):
    before = sh(lab, "gw1", "sha256sum %s" % CONFIG)
    rc, result, output = run_playbook(BAD, inventory, "-e", "tunnel_psk=%s" % PSK)
    assert rc == 0, output  # the failing task is ignored; the next one checks the tunnel
    refused = task_results(result, "Configure a broken connection")["gw1"]
    assert refused["failed"] is True and refused["changed"] is False
    assert "connections.broken.ike_proposals[0]" in refused["msg"] and "nosuchgroup" in refused["msg"]
    assert "connections.broken.children.net.local_ts[0]" in refused["msg"] and "/33" in refused["msg"]
    assert len(refused["problems"]) == 2
    assert PSK not in output
    assert task_results(result, "The tunnel is still up")["gw1"]["not_up"] == []
    assert sh(lab, "gw1", "sha256sum %s" % CONFIG) == before
    ping_across(lab)


def test_key_rotation_under_vvv_shows_no_key(lab, inventory):
    env = ansible_env()
    env["ANSIBLE_STDOUT_CALLBACK"] = "ansible.builtin.default"
    done = subprocess.run(
        [
            "ansible-playbook",
            "-vvv",
            "--diff",
            "-i",
            str(inventory),
            str(SITE),
            "-e",
            "tunnel_psk=%s" % NEW_PSK,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "psk: <hidden, changed>" in output
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" in output  # the secrets option in the invocation
    assert PSK not in output and NEW_PSK not in output
    ping_across(lab)
    for host in GATEWAYS:
        assert sh(lab, host, "stat -c %%a %s" % CONFIG).strip() == "600"
        found = sh(
            lab,
            host,
            "grep -rlF -e %s -e %s /etc /var/log /var/lib/pyike /run /root/.ansible 2>/dev/null; true"
            % (PSK, NEW_PSK),
        )
        assert found.split() == [CONFIG], found
        # /tmp is copy-on-write over the machine's (a checkout may live there): check what the host wrote.
        tmp_layer = os.path.join(lab.state_dir, host, "tmp.upper")
        written = subprocess.run(
            ["grep", "-rlF", "-e", PSK, "-e", NEW_PSK, tmp_layer],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        assert written == "", written


def test_upgrade_restarts_on_the_new_engine_and_keeps_the_config(lab, inventory):
    config_before = {host: sh(lab, host, "sha256sum %s" % CONFIG) for host in GATEWAYS}
    rc, result, output = run_playbook(SITE, inventory, "-e", "tunnel_psk=%s engine_version=0.1.1" % NEW_PSK)
    assert rc == 0, output
    for host in GATEWAYS:
        upgraded = task_results(result, "Install the engine")[host]
        assert upgraded["changed"] is True and upgraded["restarted"] is True, upgraded
        assert upgraded["removed_versions"] == ["0.1.0"]
        assert task_results(result, "Configure the tunnel")[host]["changed"] is False
        assert task_results(result, "Wait for the tunnel")[host]["not_up"] == []
        assert sh(lab, host, "ls %s" % INSTALL_ROOT).split() == ["0.1.1"]
        assert "%s/0.1.1/pyike_supervisor.py" % INSTALL_ROOT in sh(lab, host, "ps -e -o args=")
        assert sh(lab, host, "sha256sum %s" % CONFIG) == config_before[host]
    ping_across(lab)


def wait_for_tunnel(lab, timeout=60.0):
    """After a restart of both daemons (the connection has no start_action): initiate from gw1 and wait
    until it lists an installed Child SA."""
    deadline = time.monotonic() + timeout
    while "INSTALLED" not in sh(
        lab, "gw1", "%s/pyikectl initiate site2site; %s/pyikectl list-sas" % (BIN_DIR, BIN_DIR)
    ):
        assert time.monotonic() < deadline, sh(lab, "gw1", "tail -20 /var/log/pyike/pyiked.log")
        time.sleep(0.5)


def _daemon_pid(lab, host):
    supervisor = sh(lab, host, "cat /run/pyike/pyiked.pid").strip()
    return sh(lab, host, "cat /proc/%s/task/%s/children" % (supervisor, supervisor)).split()[0]


def test_a_newer_cryptography_from_a_wheel_and_the_fallback(lab, inventory):
    """/usr/bin/python3 (Debian's cryptography 38) runs the daemon with the wheel's cryptography 51; a wheel
    that cannot be used leaves the distribution's, with a warning; the tunnel carries traffic throughout."""
    wheels = sorted(Path(__file__).resolve().parents[2].glob(".build/wheels/cryptography-*.whl"))
    assert wheels, "no cryptography wheel in .build/wheels: run `make setup`"
    site = "%s/0.1.1/site" % INSTALL_ROOT
    state = "engine_state=started engine_version=0.1.1 engine_wheel=%s"
    rc, result, output = run_playbook(ENGINE_STATE, inventory, "-e", state % wheels[0])
    assert rc == 0, output
    version = wheels[0].name.split("-")[1]
    for host in GATEWAYS:
        engine = task_results(result, "Set the engine state")[host]
        assert engine["restarted"] is True, engine
        assert engine["cryptography"] == {
            "version": version,
            "source": "wheel",
            "path": site,
            "slow_aead": False,
        }
        maps = sh(lab, host, "cat /proc/%s/maps" % _daemon_pid(lab, host))
        assert "%s/cryptography/hazmat/bindings/_rust.abi3.so" % site in maps
        assert "cryptography %s from %s" % (version, site) in sh(lab, host, "cat /var/log/pyike/pyiked.log")
    assert task_results(result, "Set the engine state")["gw1"]["python"] == "/usr/bin/python3"
    wait_for_tunnel(lab)
    ping_across(lab)
    rc, result, output = run_playbook(ENGINE_STATE, inventory, "-e", state % wheels[0])
    assert rc == 0 and changed_count(result) == {"gw1": 0, "gw2": 0}, output

    # A wheel built for another C library (here: one whose import fails) is refused on the host itself.
    broken = "/tmp/cryptography-99.0.0-cp37-abi3-manylinux_2_99_x86_64.whl"
    for host in GATEWAYS:
        sh(lab, host, "cd /tmp && rm -rf w && mkdir -p w/cryptography && echo 'raise ImportError(\"GLIBC_2.99 not found\")' "
                      "> w/cryptography/__init__.py && cd w && rm -f %s && python3 -m zipfile -c %s cryptography" % (broken, broken))  # fmt: skip
    rc, result, output = run_playbook(ENGINE_STATE, inventory, "-e", state % broken)
    assert rc == 0, output
    for host in GATEWAYS:
        engine = task_results(result, "Set the engine state")[host]
        assert engine["restarted"] is True and engine["cryptography"]["source"] == "distribution", engine
        assert any("GLIBC_2.99 not found" in warning and broken in warning for warning in engine["warnings"])
        assert sh(lab, host, "find %s -type f 2>/dev/null; true" % site).strip() == ""
        assert site not in sh(lab, host, "cat %s/pyiked" % BIN_DIR)
        maps = sh(lab, host, "cat /proc/%s/maps" % _daemon_pid(lab, host))
        assert (
            site not in maps and "/usr/lib/python3/dist-packages/cryptography/hazmat/bindings/_rust" in maps
        )
    wait_for_tunnel(lab)
    ping_across(lab)


def test_stop_and_remove(lab, inventory):
    rc, result, output = run_playbook(
        ENGINE_STATE, inventory, "-e", "engine_state=stopped engine_version=0.1.1"
    )
    assert rc == 0, output
    for host in GATEWAYS:
        stopped = task_results(result, "Set the engine state")[host]
        assert stopped["changed"] is True and stopped["stopped"] is True and stopped["running"] is False
        processes = sh(lab, host, "ps -e -o args=")
        assert "pyike_supervisor" not in processes and "-m pyike daemon" not in processes
        assert sh(lab, host, "test -e /run/pyike/pyiked.pid && echo yes || echo no").strip() == "no"
    rc, result, output = run_playbook(ENGINE_STATE, inventory, "-e", "engine_state=absent")
    assert rc == 0, output
    for host in GATEWAYS:
        removed = task_results(result, "Set the engine state")[host]
        assert removed["changed"] is True and removed["removed_versions"] == ["0.1.1"]
        assert sh(lab, host, "find %s %s -type f 2>/dev/null; true" % (BIN_DIR, INSTALL_ROOT)).strip() == ""
        assert sh(lab, host, "test -e %s && echo kept" % CONFIG).strip() == "kept"
    rc, result, output = run_playbook(ENGINE_STATE, inventory, "-e", "engine_state=absent")
    assert rc == 0 and changed_count(result) == {"gw1": 0, "gw2": 0}, output
