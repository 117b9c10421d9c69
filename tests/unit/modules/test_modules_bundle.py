"""The engine module carries the whole engine, and the version it installs is the collection's."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile

import modules_support
import yaml
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import common, payload
from gen_bundle import BUNDLE, engine_modules, render
from modules_support import ENGINE_DIR, MODULE_UTILS, REPO


def _bundled_modules():
    tree = ast.parse(BUNDLE.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                found.add("%s.%s" % (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_bundle_imports_every_engine_module():
    bundled = _bundled_modules()
    missing = [
        "%s.%s.%s" % (MODULE_UTILS, package, name)
        for package, names in engine_modules().items()
        for name in names
        if "%s.%s.%s" % (MODULE_UTILS, package, name) not in bundled
    ]
    assert not missing, (
        "bundle.py misses engine modules, so AnsiballZ would not ship them: %s; "
        "regenerate with: python3 tests/unit/modules/gen_bundle.py" % missing
    )
    assert BUNDLE.read_text() == render(), "regenerate bundle.py: python3 tests/unit/modules/gen_bundle.py"


def test_collection_version_matches_galaxy_and_documentation():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert common.COLLECTION_VERSION == galaxy["version"]
    source = (REPO / "plugins" / "modules" / "engine.py").read_text()
    documentation = yaml.safe_load(re.search(r'DOCUMENTATION = r"""\n(.*?)"""', source, re.S).group(1))
    assert str(documentation["options"]["version"]["default"]) == galaxy["version"]


def test_package_files_from_a_directory_has_every_engine_file():
    import ansible_collections.pyike.ipsec.plugins.module_utils.pyike as engine

    files = payload.package_files(engine.__name__)
    on_disk = {
        "pyike/" + str(path.relative_to(ENGINE_DIR))
        for path in ENGINE_DIR.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert set(files) == on_disk
    assert files["pyike/__main__.py"] == (ENGINE_DIR / "__main__.py").read_bytes()


def test_package_files_from_a_zip_payload(tmp_path):
    """As in an AnsiballZ run: the package is imported from a zip on sys.path (zipimport)."""
    archive = tmp_path / "ansible_payload.zip"
    prefix = "ansible_collections/pyike/ipsec/plugins/module_utils/"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in ("ansible_collections", "ansible_collections/pyike", "ansible_collections/pyike/ipsec"):
            zipped.writestr(part + "/__init__.py", "")
        zipped.writestr(prefix.rstrip("/").rsplit("/", 1)[0] + "/__init__.py", "")
        zipped.writestr(prefix + "__init__.py", "")
        for path in ENGINE_DIR.rglob("*.py"):
            if "__pycache__" not in path.parts:
                zipped.write(path, prefix + "pyike/" + str(path.relative_to(ENGINE_DIR)))
        utils = REPO / "plugins" / "module_utils" / "pyike_ansible" / "payload.py"
        zipped.write(utils, prefix + "pyike_ansible/payload.py")
        zipped.writestr(prefix + "pyike_ansible/__init__.py", "")
    script = (
        "import sys, json\n"
        "sys.path.insert(0, %r)\n"
        "import ansible_collections.pyike.ipsec.plugins.module_utils.pyike as engine\n"
        "from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import payload\n"
        "assert type(engine.__loader__).__name__ == 'zipimporter', engine.__loader__\n"
        "files = payload.package_files(engine.__name__)\n"
        "print(json.dumps({name: payload.digest({name: data}) for name, data in files.items()}))\n"
    ) % str(archive)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, cwd=str(tmp_path)
    )
    assert done.returncode == 0, done.stderr
    import json

    from_zip = json.loads(done.stdout)
    import ansible_collections.pyike.ipsec.plugins.module_utils.pyike as engine

    from_dir = payload.package_files(engine.__name__)
    assert from_zip == {name: payload.digest({name: data}) for name, data in from_dir.items()}


def test_missing_dependencies_name_the_distribution_packages():
    found = {"cryptography": None, "pyroute2": "0.7.2", "yaml": None}
    message = common.missing_dependencies_message(found, "debian")
    assert "apt-get install python3-cryptography" in message
    assert "yaml" not in message  # optional unless the configuration is YAML
    message = common.missing_dependencies_message(found, "redhat", need_yaml=True)
    assert "dnf install python3-cryptography python3-pyyaml" in message
    message = common.missing_dependencies_message(found, None)
    assert "Debian/Ubuntu: apt-get install python3-cryptography" in message
    assert "RHEL/Fedora: dnf install python3-cryptography" in message
    assert common.missing_dependencies_message({"cryptography": "38", "pyroute2": "0.7"}, None) is None


def test_os_family(tmp_path):
    release = tmp_path / "os-release"
    release.write_text('ID=rocky\nID_LIKE="rhel centos fedora"\n')
    assert common.os_family(str(release)) == "redhat"
    release.write_text("ID=debian\n")
    assert common.os_family(str(release)) == "debian"
    assert common.os_family(str(tmp_path / "missing")) is None


assert modules_support  # keeps the import that sets up sys.path
