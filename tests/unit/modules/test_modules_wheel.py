"""A newer cryptography from a wheel beside the engine (pyike_ansible/wheel.py and the engine task).

Synthetic wheels check the member rules and the probe; the real cryptography 51 wheel that `make setup`
fetches (requirements-target-wheel.txt) is probed under the interpreter running the tests, which is how the
engine module decides on a target.
"""

from __future__ import annotations

import glob
import json
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import modules_support
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import deploy, install, wheel
from test_modules_engine import FakeSystemd
from test_modules_engine import _run as _run_engine_task

assert modules_support  # imported first: it puts the collection on sys.path
REPO = Path(__file__).resolve().parents[3]
REQUIREMENT = [
    line.strip()
    for line in (REPO / "requirements-target-wheel.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
][-1]

# A stand-in cryptography: its own __init__ with the version it claims, and the installed cryptography's
# modules behind it (the package path continues in the real package), so that the probe's packet and the
# engine's imports really run while `cryptography.__file__` is the stand-in's.
SHIM = b"""import importlib.machinery, os, sys
_here = os.path.dirname(os.path.abspath(__file__))
_real = importlib.machinery.PathFinder.find_spec(
    "cryptography", [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(_here)])
__path__ = [_here] + list(_real.submodule_search_locations)
from cryptography.__about__ import __version__  # cryptography 38 checks its binding against the real one
import cryptography.hazmat.bindings.openssl.binding
__version__ = '%s'
"""


def make_wheel(directory, version="99.0.0", members=None, name=None):
    members = (
        members
        if members is not None
        else {
            "cryptography/__init__.py": SHIM % version.encode(),
            "cryptography-%s.dist-info/METADATA" % version: b"Name: cryptography\nVersion: %s\n"
            % version.encode(),
        }
    )
    path = os.path.join(
        str(directory), name or "cryptography-%s-cp37-abi3-manylinux_2_34_x86_64.whl" % version
    )
    with zipfile.ZipFile(path, "w") as archive:
        for member, content in members.items():
            if isinstance(content, zipfile.ZipInfo):
                archive.writestr(content, b"target")
            else:
                archive.writestr(member, content)
    return path


def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr


def test_versions_order_and_the_slow_ones():
    assert wheel.version_tuple("51.0.1") > wheel.version_tuple("38.0.4") > wheel.version_tuple("3.4.8")
    assert wheel.version_tuple("42.0.0rc1") == (42, 0, 0)
    assert wheel.is_slow("38.0.4") and wheel.is_slow("41.0.7")
    assert not wheel.is_slow("42.0.0") and not wheel.is_slow("51.0.1") and not wheel.is_slow(None)


def test_a_synthetic_wheel_is_read_and_probed(tmp_path):
    version, files = wheel.read_wheel(make_wheel(tmp_path))
    assert version == "99.0.0"
    assert sorted(files) == ["cryptography-99.0.0.dist-info/METADATA", "cryptography/__init__.py"]
    assert wheel.probe(run, sys.executable, "w.whl", files, str(tmp_path)) == "99.0.0"


@pytest.mark.parametrize(
    "members, expected",
    [
        ({"cryptography/__init__.py": b"", "../evil.py": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "/etc/evil": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "cryptography/../../evil": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "cryptography/..": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "cryptography/.": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "cryptography\\..\\evil": b""}, "not a plain relative path"),
        ({"cryptography/__init__.py": b"", "cryptography": b""}, "neither in the cryptography package"),
        (
            {"cryptography/__init__.py": b"", "cryptography-98.0.dist-info/METADATA": b""},
            "neither in the cryptography",
        ),
        (
            {"cryptography/__init__.py": b"", "cryptography/hazmat": b"", "cryptography/hazmat/x.py": b""},
            "is a file and",
        ),
        ({"cryptography/__init__.py": b"", "sitecustomize.py": b""}, "neither in the cryptography package"),
        ({"cryptography/__init__.py": b"", "cffi/__init__.py": b""}, "neither in the cryptography package"),
        ({"cryptography-99.0.0.dist-info/METADATA": b""}, "no cryptography/__init__.py"),
    ],
)
def test_hostile_or_foreign_members_are_refused(tmp_path, members, expected):
    with pytest.raises(wheel.WheelError, match=expected) as caught:
        wheel.read_wheel(make_wheel(tmp_path, members=members))
    assert str(tmp_path) in str(caught.value)  # the message names the file


def test_duplicates_a_corrupt_member_and_too_many_members_are_refused(tmp_path):
    twice = tmp_path / "cryptography-99.0.0-cp37-abi3-linux_x86_64.whl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate it is told to write
        with zipfile.ZipFile(twice, "w") as archive:
            archive.writestr("cryptography/__init__.py", b"")
            archive.writestr("cryptography/__init__.py", b"evil = True")
    with pytest.raises(wheel.WheelError, match="appears twice"):
        wheel.read_wheel(str(twice))
    corrupt = tmp_path / "sub" / "cryptography-99.0.0-cp37-abi3-linux_x86_64.whl"
    corrupt.parent.mkdir()
    with zipfile.ZipFile(corrupt, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cryptography/__init__.py", b"x = 1\n" * 4000)
    data = bytearray(corrupt.read_bytes())
    data[60:90] = bytes(30)  # inside the compressed stream
    corrupt.write_bytes(bytes(data))
    with pytest.raises(wheel.WheelError, match="cannot be read as a wheel"):
        wheel.read_wheel(str(corrupt))
    many = {"cryptography/__init__.py": b""}
    many.update(("cryptography/m%d.py" % index, b"") for index in range(wheel.MAX_MEMBERS))
    with pytest.raises(wheel.WheelError, match="more than the 2000"):
        wheel.read_wheel(make_wheel(tmp_path / "sub", version="99.0.1", members=many))


def test_the_probe_unpacks_where_it_is_told_and_leaves_nothing(tmp_path):
    files = wheel.read_wheel(make_wheel(tmp_path))[1]
    where = tmp_path / "root"
    where.mkdir()
    assert wheel.probe(run, sys.executable, "w.whl", files, str(where)) == "99.0.0"
    assert os.listdir(str(where)) == []
    with pytest.raises(wheel.WheelError, match=r"cannot unpack it in .*missing"):
        wheel.probe(run, sys.executable, "w.whl", files, str(tmp_path / "missing"))


def test_a_link_a_wrong_name_and_a_broken_archive_are_refused(tmp_path):
    link = zipfile.ZipInfo("cryptography/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(wheel.WheelError, match="symbolic link"):
        wheel.read_wheel(
            make_wheel(tmp_path, members={"cryptography/__init__.py": b"", "cryptography/link": link})
        )
    with pytest.raises(wheel.WheelError, match="not a cryptography wheel"):
        wheel.read_wheel(make_wheel(tmp_path, name="pyroute2-0.9-py3-none-any.whl"))
    broken = tmp_path / "cryptography-99.0.0-cp37-abi3-linux_x86_64.whl"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(wheel.WheelError, match="cannot be read as a wheel"):
        wheel.read_wheel(str(broken))
    with pytest.raises(wheel.WheelError, match="cannot be read as a wheel"):
        wheel.read_wheel(str(tmp_path / "cryptography-1.0-x.whl"))  # missing


def test_a_wheel_that_does_not_work_fails_the_probe_with_its_error(tmp_path):
    members = {"cryptography/__init__.py": b"raise ImportError('built for another libc')\n"}
    files = wheel.read_wheel(make_wheel(tmp_path, members=members))[1]
    with pytest.raises(wheel.WheelError, match=r"w.whl: does not work under .*built for another libc"):
        wheel.probe(run, sys.executable, "w.whl", files, str(tmp_path))


def test_the_real_target_wheel_works_under_this_interpreter(tmp_path):
    found = glob.glob(str(REPO / ".build" / "wheels" / ("%s-*.whl" % REQUIREMENT.replace("==", "-"))))
    assert found, "no %s wheel in .build/wheels: run `make setup`" % REQUIREMENT
    version, files = wheel.read_wheel(found[0])
    assert version == REQUIREMENT.split("==")[1]
    assert wheel.probe(run, sys.executable, "w.whl", files, str(tmp_path)) == version
    if os.path.exists("/usr/bin/python3"):  # the targets' interpreter, with Debian's cryptography 38
        assert wheel.probe(run, "/usr/bin/python3", "w.whl", files, str(tmp_path)) == version


@pytest.fixture
def host(tmp_path):
    config = tmp_path / "pyike.json"
    config.write_text(json.dumps({"settings": {"control_socket": str(tmp_path / "ctl")}, "connections": {}}))
    systemd = FakeSystemd(tmp_path, tmp_path / "sbin")
    yield tmp_path, systemd
    systemd._stop()


def test_the_engine_task_installs_a_wheel_beside_the_engine_and_removes_it_again(host):
    tmp_path, systemd = host
    site = tmp_path / "opt" / "1.0.0" / "site"
    result, warnings = _run_engine_task(tmp_path, systemd, cryptography_wheel=make_wheel(tmp_path))
    assert warnings == []
    assert result["cryptography"] == {
        "version": "99.0.0",
        "source": "wheel",
        "path": str(site),
        "slow_aead": False,
    }
    assert (site / "cryptography" / "__init__.py").is_file()
    wrapper = (tmp_path / "sbin" / "pyiked").read_text()
    assert "PYTHONPATH=%s/opt/1.0.0:%s\n" % (tmp_path, site) in wrapper
    assert result["started"] is True
    with_wheel = result["engine_digest"]
    result, warnings = _run_engine_task(tmp_path, systemd, cryptography_wheel=make_wheel(tmp_path))
    assert result["changed"] is False and warnings == []
    assert [name for name in os.listdir(str(tmp_path / "opt")) if name != "1.0.0"] == []  # no probe left

    newer = tmp_path / "newer"
    newer.mkdir()
    result, warnings = _run_engine_task(
        tmp_path, systemd, cryptography_wheel=make_wheel(newer, version="99.0.1")
    )
    assert result["restarted"] is True and result["cryptography"]["version"] == "99.0.1", result
    assert (
        not (site / "cryptography-99.0.0.dist-info").exists()
        and (site / "cryptography-99.0.1.dist-info").is_dir()
    )

    result, warnings = _run_engine_task(tmp_path, systemd)
    assert result["changed"] is True and result["cryptography"]["source"] == "distribution"
    assert result["engine_digest"] != with_wheel
    assert not site.exists()
    assert "PYTHONPATH=%s/opt/1.0.0\n" % tmp_path in (tmp_path / "sbin" / "pyiked").read_text()


def test_an_unusable_or_older_wheel_warns_and_keeps_the_installed_cryptography(host):
    tmp_path, systemd = host
    hostile = make_wheel(tmp_path, members={"cryptography/__init__.py": b"", "../../etc/cron.d/x": b""})
    result, warnings = _run_engine_task(tmp_path, systemd, cryptography_wheel=hostile)
    assert result["cryptography"]["source"] == "distribution"
    assert len(warnings) == 1 and "not a plain relative path" in warnings[0] and hostile in warnings[0]
    assert not (tmp_path / "opt" / "1.0.0" / "site").exists()
    assert sorted(os.listdir(str(tmp_path / "opt"))) == ["1.0.0"]  # the probe never ran: nothing unpacked

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    members = {
        "cryptography/__init__.py": SHIM % b"41.0.7",
    }
    result, warnings = _run_engine_task(
        tmp_path, systemd, cryptography_wheel=make_wheel(renamed, version="99.0.0", members=members)
    )
    assert result["cryptography"]["source"] == "distribution"
    assert "imports as cryptography 41.0.7, its file name says 99.0.0" in warnings[0]

    (tmp_path / "old").mkdir()
    result, warnings = _run_engine_task(
        tmp_path, systemd, cryptography_wheel=make_wheel(tmp_path / "old", version="3.4.8")
    )
    assert result["cryptography"]["source"] == "distribution"
    assert "is not newer than the installed" in warnings[0]


def test_a_missing_or_writable_wheel_fails_the_task_and_check_mode_runs_nothing(host):
    tmp_path, systemd = host
    with pytest.raises(deploy.EngineTaskError, match="No such file"):
        _run_engine_task(tmp_path, systemd, cryptography_wheel=str(tmp_path / "cryptography-99.0.0-typo.whl"))
    with pytest.raises(deploy.EngineTaskError, match="not a file"):
        _run_engine_task(tmp_path, systemd, cryptography_wheel=str(tmp_path))
    path = make_wheel(tmp_path)
    os.chmod(path, 0o666)
    with pytest.raises(deploy.EngineTaskError, match="writable by nobody else"):
        _run_engine_task(tmp_path, systemd, cryptography_wheel=path)
    os.chmod(path, 0o644)

    (tmp_path / "w").mkdir()
    members = {
        "cryptography/__init__.py": b"open(%r, 'w').close()\n" % str(tmp_path / "ran"),
        "cryptography-99.0.0.dist-info/METADATA": b"",
    }
    result, _warnings = _run_engine_task(
        tmp_path, systemd, check_mode=True, cryptography_wheel=make_wheel(tmp_path / "w", members=members)
    )
    assert result["cryptography"]["tested"] is False and result["cryptography"]["source"] == "wheel"
    assert result["changed"] is True
    assert not (tmp_path / "ran").exists() and not (tmp_path / "opt").exists()


def test_a_wheel_the_engine_cannot_import_with_is_not_used(host):
    """The probe imports the engine with the wheel: here its x509 is broken, which the packet test alone
    (AESGCM) does not touch with cryptography 51."""
    tmp_path, systemd = host
    members = {
        "cryptography/__init__.py": SHIM % b"99.0.0",
        "cryptography/x509/__init__.py": b"raise ImportError('x509 is gone from this build')\n",
        "cryptography-99.0.0.dist-info/METADATA": b"",
    }
    result, warnings = _run_engine_task(
        tmp_path, systemd, cryptography_wheel=make_wheel(tmp_path, members=members)
    )
    assert result["cryptography"]["source"] == "distribution"
    assert len(warnings) == 1 and "x509 is gone from this build" in warnings[0], warnings
    assert not (tmp_path / "opt" / "1.0.0" / "site").exists()


def test_caches_of_modules_a_newer_wheel_dropped_go_and_the_others_stay(tmp_path):
    version_dir = tmp_path / "1.0.0"
    tree = {"site/cryptography/__init__.py": (b"", 0o644), "site/cryptography/kept.py": (b"", 0o644)}
    install.apply_tree(str(version_dir), tree, install.plan_tree(str(version_dir), tree))
    caches = version_dir / "site" / "cryptography" / "__pycache__"
    dropped = version_dir / "site" / "cryptography" / "dropped" / "__pycache__"
    for directory, name in ((caches, "kept"), (caches, "__init__"), (dropped, "__init__")):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / ("%s.cpython-311.pyc" % name)).write_bytes(b"")
    changes = install.plan_tree(str(version_dir), tree)
    assert changes == [("remove", "site/cryptography/dropped/__pycache__/__init__.cpython-311.pyc")]
    install.apply_tree(str(version_dir), tree, changes)
    assert not (version_dir / "site" / "cryptography" / "dropped").exists()
    assert (caches / "kept.cpython-311.pyc").exists() and install.plan_tree(str(version_dir), tree) == []
