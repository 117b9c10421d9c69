"""config_path and bin_dir reach the daemon unchanged through the sh wrapper and the systemd unit.

The wrapper runs under the real /bin/sh and starts the real daemon, which names the file it could
not read. The unit is read by a real systemd (a private user manager, see systemd_harness), whose
ExecStart starts a program that records its arguments. A path that cannot be written into a unit
(systemd refuses quotes, backslashes and control characters in a program path) is refused.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import modules_support
import pytest
import systemd_harness
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import install
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import write_atomic

MODULE_UTILS = str(modules_support.ENGINE_DIR.parent)  # the directory that holds the pyike package

# Paths an administrator may really use, and the characters that break naive quoting.
CONFIG_PATHS = {
    "space": "/etc/pyike/my vpn.yml",
    "quotes": '/etc/pyike/it\'s "quoted".yml',
    "dollar": "/etc/pyike/$HOME ${PATH} $$ $.yml",
    "percent": "/etc/pyike/100%n %% %i %.yml",
    "semicolon": "/etc/pyike/a;b ; c.yml",
    "backslash-tab": "/etc/pyike/back\\slash \\n\ttab.yml",
    "control": "/etc/pyike/bell\x07del\x7f.yml",
    "unicode": "/etc/pyike/ünïcödé €.yml",
    "backquote": "/etc/pyike/`id` $(id).yml",
}
INJECTED = "/etc/pyike/x\ntouch {marker}\nExecStartPre=/bin/touch {marker}\n.yml"


def _daemon_wrapper(path, config_path):
    content = install.wrapper_text("daemon", sys.executable, MODULE_UTILS, config_path, "1.0.0", "ab")
    write_atomic(str(path), content, install.EXEC_MODE)
    return path


@pytest.mark.parametrize("config_path", [*CONFIG_PATHS.values(), INJECTED], ids=[*CONFIG_PATHS, "newlines"])
def test_the_wrapper_hands_config_path_to_the_daemon_unchanged(tmp_path, config_path):
    marker = tmp_path / "injected"
    config_path = config_path.replace("{marker}", str(marker))
    wrapper = _daemon_wrapper(tmp_path / "pyiked", config_path)
    done = subprocess.run([str(wrapper)], capture_output=True, timeout=60, check=False)
    # The real daemon cannot read that file, and says which file it tried.
    expected = "pyike: %s: cannot read the configuration" % config_path
    assert expected.encode() in done.stderr, done.stderr
    assert done.returncode == 2
    assert not marker.exists(), "a line of config_path ran as a shell command"


def _argv_recorder(path, output):
    """A program that writes its arguments, NUL-terminated, to `output`."""
    path.write_text(
        '#!/bin/sh\nfor arg in "$@"; do printf \'%%s\\0\' "$arg"; done > %s\n' % shlex.quote(str(output))
    )
    os.chmod(path, 0o755)


@pytest.mark.skipif(bool(systemd_harness.unavailable()), reason=systemd_harness.unavailable() or "ok")
def test_systemd_hands_config_path_and_bin_dir_to_the_daemon_unchanged(tmp_path):
    marker = tmp_path / "injected"
    config_paths = dict(CONFIG_PATHS, newlines=INJECTED.replace("{marker}", str(marker)))
    # (bin_dir, config_path) per unit: every config path from a plain bin_dir, then a program path
    # with what systemd allows there (spaces, '%', '$', ';', non-ASCII) and a plain config path.
    cases = {name: (tmp_path / ("bin-%s" % name), path) for name, path in config_paths.items()}
    cases["program-path"] = (tmp_path / "bin %n $HOME ; ü", "/etc/pyike/pyike.yml")
    units = tmp_path / "units"
    units.mkdir()
    outputs = {}
    for name, (bin_dir, config_path) in cases.items():
        bin_dir.mkdir()
        outputs[name] = tmp_path / ("argv-%s" % name)
        _argv_recorder(bin_dir / "pyiked", outputs[name])
        (units / ("pyiked-%s.service" % name)).write_bytes(
            install.unit_text(str(bin_dir), config_path, "1.0.0")
        )
    wants = " ".join("pyiked-%s.service" % name for name in cases)
    (units / "pyike-test.target").write_text("[Unit]\nWants=%s\n" % wants)
    with systemd_harness.PrivateManager(units, "pyike-test.target", tmp_path / "manager.log") as manager:
        manager.wait_for(list(outputs.values()))
    wrong = {}
    for name, (_bin_dir, config_path) in cases.items():
        if not outputs[name].exists():
            wrong[name] = "did not run: %s" % systemd_harness.verify(units / ("pyiked-%s.service" % name))
        elif outputs[name].read_bytes().split(b"\0")[:-1] != [b"--config", config_path.encode()]:
            wrong[name] = outputs[name].read_bytes()
    assert wrong == {}
    assert not marker.exists(), "a line of config_path became a unit directive"


def test_plain_paths_are_written_as_they_are():
    unit = install.unit_text("/usr/local/sbin", "/etc/pyike/pyike.yml", "0.1.0").decode()
    assert "\nExecStart=/usr/local/sbin/pyiked --config /etc/pyike/pyike.yml\n" in unit
    unit = install.unit_text("/usr/local/sbin", "/etc/pyike/my vpn%.yml", "0.1.0").decode()
    assert '\nExecStart=/usr/local/sbin/pyiked --config "/etc/pyike/my vpn%%.yml"\n' in unit


@pytest.mark.parametrize(
    "bin_dir", ["/opt/it's", '/opt/"x"', "/opt/back\\slash", "/opt/new\nline", "/opt/del\x7f"]
)
def test_a_bin_dir_systemd_cannot_run_a_program_from_is_refused(tmp_path, bin_dir):
    with pytest.raises(install.InstallError) as caught:
        install.unit_text(bin_dir, "/etc/pyike/pyike.yml", "1.0.0")
    message = str(caught.value)
    assert message.startswith("bin_dir %r cannot hold the program of a systemd unit" % bin_dir)
    assert "\n" not in message
    if systemd_harness.SYSTEMD_ANALYZE:  # systemd's own word on such a program path
        unit = tmp_path / "refused.service"
        program = install.systemd_argument("program", bin_dir + "/pyiked")  # escaped as an argument would be
        unit.write_text("[Service]\nExecStart=%s\n" % program)
        assert "Executable name contains special characters" in systemd_harness.verify(unit)


@pytest.mark.parametrize(
    ("config_path", "expected"),
    [
        ("", "config_path must not be empty"),
        ("/etc/pyike/\0.yml", "contains a NUL character"),
        ("/etc/pyike/\udcff.yml", "is not valid UTF-8"),
    ],
)
def test_a_config_path_no_file_can_hold_is_refused(config_path, expected):
    with pytest.raises(install.InstallError, match=expected):
        install.unit_text("/usr/local/sbin", config_path, "1.0.0")
    with pytest.raises(install.InstallError, match=expected):
        install.wrapper_text("daemon", "/usr/bin/python3", "/opt/pyike/1.0.0", config_path, "1.0.0", "ab")


def test_a_relative_bin_dir_is_refused_for_systemd():
    with pytest.raises(install.InstallError, match="'sbin' must be an absolute path for systemd"):
        install.unit_text("sbin", "/etc/pyike/pyike.yml", "1.0.0")
