# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Versions, default paths and the engine's Python dependencies, as the modules report them.

Runs on targets (Python 3.9+); imports nothing outside the standard library.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile

# The collection's version (galaxy.yml); the engine is installed under <install_root>/<this>.
# tests/unit/modules keep the two equal.
COLLECTION_VERSION = "0.1.0"

DEFAULT_CONFIG_PATH = "/etc/pyike/pyike.yml"
DEFAULT_CONTROL_SOCKET = "/run/pyike/pyike.ctl"  # pyike.config.schema.DEFAULT_CONTROL_SOCKET
YAML_SUFFIXES = (".yml", ".yaml")

# (import name, distribution name, what for, Debian package, RHEL package, required)
DEPENDENCIES = (
    (
        "cryptography",
        "cryptography",
        "IKE and ESP cryptography",
        "python3-cryptography",
        "python3-cryptography",
        True,
    ),
    ("pyroute2", "pyroute2", "the TUN device and routes", "python3-pyroute2", "python3-pyroute2", True),
    ("yaml", "PyYAML", "YAML configuration files", "python3-yaml", "python3-pyyaml", False),
)


def python_description():
    return "%s (Python %s)" % (sys.executable, ".".join(str(n) for n in sys.version_info[:3]))


def _version_of(module, distribution):
    try:
        from importlib import metadata  # Python 3.8+

        return metadata.version(distribution)
    except Exception:  # pylint: disable=broad-except  # metadata may be missing for distro builds
        return str(getattr(module, "__version__", "unknown"))


def probe_dependencies():
    """{import name: version or None when it cannot be imported} for every engine dependency."""
    found = {}
    for name, distribution, _purpose, _deb, _rpm, _required in DEPENDENCIES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            found[name] = None
            continue
        found[name] = _version_of(module, distribution)
    return found


def os_family(os_release="/etc/os-release"):
    """'debian', 'redhat' or None, from /etc/os-release (ID and ID_LIKE)."""
    try:
        with open(os_release) as handle:
            text = handle.read()
    except OSError:
        return None
    words = set()
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ID", "ID_LIKE"):
            words.update(value.strip().strip("\"'").lower().split())
    if words & {"debian", "ubuntu"}:
        return "debian"
    if words & {"rhel", "fedora", "centos", "rocky", "almalinux"}:
        return "redhat"
    return None


def install_hint(names, family=None):
    """How to install the distribution packages for the import names `names`."""
    rows = [d for d in DEPENDENCIES if d[0] in names]
    debian = " ".join(d[3] for d in rows)
    redhat = " ".join(d[4] for d in rows)
    if family == "debian":
        return "apt-get install %s" % debian
    if family == "redhat":
        return "dnf install %s" % redhat
    return "Debian/Ubuntu: apt-get install %s; RHEL/Fedora: dnf install %s" % (debian, redhat)


def missing_dependencies_message(found, family=None, need_yaml=False):
    """None when the engine can run here, else a message naming the missing distro packages."""
    wanted = [d for d in DEPENDENCIES if d[5] or (need_yaml and d[0] == "yaml")]
    missing = [d for d in wanted if found.get(d[0]) is None]
    if not missing:
        return None
    names = [d[0] for d in missing]
    purposes = ", ".join("%s (%s)" % (d[0], d[2]) for d in missing)
    return (
        "the pyike engine needs the Python modules %s, which %s cannot import; install the distribution packages: %s"
        % (
            purposes,
            python_description(),
            install_hint(names, family),
        )
    )


def is_yaml_path(path):
    return os.path.splitext(path)[1].lower() in YAML_SUFFIXES


def write_atomic(path, content, mode=0o600):
    """Replace `path` with `content`; the data is never in a file wider than `mode`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=directory)  # created 0600
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
