"""Installing the engine tree, wrappers and unit: planning, applying, idempotence, stale files."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import modules_support
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import install, payload, supervisor
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import write_atomic

ENGINE = "ansible_collections.pyike.ipsec.plugins.module_utils.pyike"


def _tree(version_dir, version="1.0.0"):
    __import__(ENGINE)
    files = payload.package_files(ENGINE)
    return install.desired_tree(
        files, payload.module_source(supervisor), version, sys.executable, version_dir
    )


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_install_is_idempotent_and_runnable(tmp_path):
    version_dir = str(tmp_path / "opt" / "1.0.0")
    tree, digest = _tree(version_dir)
    changes = install.plan_tree(version_dir, tree)
    assert changes and all(action == "create" for action, _path in changes)
    assert ("create", "pyike/cli.py") in changes and ("create", "MANIFEST.json") in changes
    install.apply_tree(version_dir, tree, changes)
    assert install.plan_tree(version_dir, tree) == []
    assert _mode(os.path.join(version_dir, "pyike", "cli.py")) == 0o644
    assert _mode(os.path.join(version_dir, "pyike", "config")) == 0o755
    manifest = install.read_manifest(version_dir)
    assert manifest["version"] == "1.0.0" and manifest["installed_by"] == "pyike.ipsec.engine"
    assert "pyike_supervisor.py" in manifest["files"]

    ctl = tmp_path / "pyikectl"
    write_atomic(
        str(ctl),
        install.wrapper_text("ctl", sys.executable, version_dir, "/etc/pyike/pyike.yml", "1.0.0", digest),
        install.EXEC_MODE,
    )
    done = subprocess.run(
        [str(ctl), "--socket", str(tmp_path / "none.ctl"), "list-sas"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no daemon control socket at %s" % (tmp_path / "none.ctl") in done.stderr
    assert install.is_ours(str(ctl))


def test_changed_and_stale_files_are_planned(tmp_path):
    version_dir = str(tmp_path / "1.0.0")
    tree, _digest = _tree(version_dir)
    install.apply_tree(version_dir, tree, install.plan_tree(version_dir, tree))
    (tmp_path / "1.0.0" / "pyike" / "cli.py").write_text("# edited\n")
    os.chmod(os.path.join(version_dir, "pyike", "ids.py"), 0o600)
    (tmp_path / "1.0.0" / "pyike" / "gone.py").write_text("")
    (tmp_path / "1.0.0" / "pyike" / "oldpkg").mkdir()
    (tmp_path / "1.0.0" / "pyike" / "oldpkg" / "__init__.py").write_text("")
    (tmp_path / "1.0.0" / "pyike" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "1.0.0" / "pyike" / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"x")
    changes = install.plan_tree(version_dir, tree)
    assert sorted(changes) == sorted(
        [
            ("update", "pyike/cli.py"),
            ("mode", "pyike/ids.py"),
            ("remove", "pyike/gone.py"),
            ("remove", "pyike/oldpkg/__init__.py"),
        ]
    )
    install.apply_tree(version_dir, tree, changes)
    assert install.plan_tree(version_dir, tree) == []
    assert not os.path.exists(os.path.join(version_dir, "pyike", "oldpkg"))
    assert os.path.exists(os.path.join(version_dir, "pyike", "__pycache__", "cli.cpython-311.pyc"))


def test_digest_follows_files_location_and_interpreter(tmp_path):
    first = _tree(str(tmp_path / "1.0.0"))[1]
    assert first == _tree(str(tmp_path / "1.0.0"))[1]
    assert first != _tree(str(tmp_path / "1.0.1"), "1.0.1")[1]


def test_foreign_files_are_not_replaced(tmp_path):
    foreign = tmp_path / "pyiked"
    foreign.write_text("#!/bin/sh\necho mine\n")
    with pytest.raises(install.InstallError, match=r"was not installed by pyike\.ipsec\.engine"):
        install.plan_owned_file(str(foreign), b"#!/bin/sh\n", install.EXEC_MODE)
    assert install.plan_owned_file(str(tmp_path / "new"), b"x", install.EXEC_MODE) == "create"


def test_our_versions_only_lists_manifested_directories(tmp_path):
    for version in ("1.0.0", "1.0.1"):
        version_dir = str(tmp_path / version)
        tree = _tree(version_dir, version)[0]
        install.apply_tree(version_dir, tree, install.plan_tree(version_dir, tree))
    (tmp_path / "someone-elses").mkdir()
    assert sorted(install.our_versions(str(tmp_path))) == ["1.0.0", "1.0.1"]


@pytest.mark.parametrize("version", ["", "..", "../x", "a/b", "-x", "1.0 0"])
def test_bad_version_labels_are_refused(version):
    with pytest.raises(install.InstallError):
        install.check_version(version)


def test_unit_and_wrapper_text():
    unit = install.unit_text("/usr/local/sbin", "/etc/pyike/pyike.yml", "0.1.0").decode()
    assert "ExecStart=/usr/local/sbin/pyiked --config /etc/pyike/pyike.yml" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit and "WantedBy=multi-user.target" in unit
    daemon = install.wrapper_text(
        "daemon", "/usr/bin/python3", "/opt/pyike/0.1.0", "/etc/p.yml", "0.1.0", "ab"
    )
    assert b"PYTHONPATH=/opt/pyike/0.1.0\n" in daemon
    assert b"PYIKE_ENGINE_DIGEST=ab\n" in daemon
    assert b'exec /usr/bin/python3 -m pyike daemon "$@"' in daemon
    assert b"set -- --config /etc/p.yml" in daemon


assert modules_support
