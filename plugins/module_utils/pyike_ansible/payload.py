# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The engine's source files as a module carries them: from the AnsiballZ zip, or from a directory.

Inside a module run, module_utils are imported from the AnsiballZ payload (a zip file on
sys.path), so the engine package's loader is a zipimporter; with ANSIBLE_KEEP_REMOTE_FILES
"explode"/"execute" debugging, and in tests, it is a plain directory. Either way the result is
{relative path: bytes} of every .py file of the package, which the engine module installs as a
top-level ``pyike`` package (the engine uses relative imports only).
"""

from __future__ import annotations

import hashlib
import os
import sys
import zipfile


class PayloadError(Exception):
    pass


def package_files(package):
    """{path relative to the package's parent, e.g. 'pyike/cli.py': bytes} for the imported `package`."""
    module = sys.modules.get(package)
    if module is None:
        raise PayloadError("the engine package %s is not imported" % package)
    init = getattr(module, "__file__", None)
    if not init:
        raise PayloadError("the engine package %s has no __file__" % package)
    package_dir = os.path.dirname(init)
    top = os.path.basename(package_dir)
    loader = getattr(module, "__loader__", None)
    archive = getattr(loader, "archive", None)
    if archive and not os.path.isdir(package_dir):
        return _from_zip(archive, package_dir, top)
    return _from_directory(package_dir, top)


def _from_zip(archive, package_dir, top):
    inner = os.path.relpath(package_dir, archive).replace(os.sep, "/") + "/"
    files = {}
    with zipfile.ZipFile(archive) as zipped:
        for name in zipped.namelist():
            if name.startswith(inner) and name.endswith(".py") and "/__pycache__/" not in name:
                files[top + "/" + name[len(inner) :]] = zipped.read(name)
    if not files:
        raise PayloadError("no engine files under %s in %s" % (inner, archive))
    return files


def _from_directory(package_dir, top):
    files = {}
    for root, dirs, names in os.walk(package_dir):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                relative = os.path.relpath(path, package_dir).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    files[top + "/" + relative] = handle.read()
    if not files:
        raise PayloadError("no engine files in %s" % package_dir)
    return files


def module_source(module):
    """The source bytes of an imported (single-file) module, from a zip or a directory."""
    loader = getattr(module, "__loader__", None)
    path = getattr(module, "__file__", None)
    if loader is None or path is None or not hasattr(loader, "get_data"):
        raise PayloadError("cannot read the source of %s" % getattr(module, "__name__", module))
    return loader.get_data(path)


def digest(files):
    """A sha256 over every (path, content) pair, independent of dict order."""
    hasher = hashlib.sha256()
    for path in sorted(files):
        content = files[path]
        hasher.update(path.encode("utf-8") + b"\0" + str(len(content)).encode() + b"\0" + content)
    return hasher.hexdigest()
