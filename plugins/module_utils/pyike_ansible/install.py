# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the engine module puts on a host, and how it compares with what is there.

Layout (defaults)::

    /opt/pyike/<version>/pyike/...            the engine package, copied out of the module's payload
    /opt/pyike/<version>/pyike_supervisor.py  keeps pyiked running where systemd is not PID 1
    /opt/pyike/<version>/MANIFEST.json        version, interpreter, digest of the files above
    /opt/pyike/<version>/site/cryptography/   a newer cryptography from a wheel (wheel.py), if one is given
    /usr/local/sbin/pyiked, pyikectl          sh wrappers: PYTHONPATH + the module's interpreter
    /etc/systemd/system/pyiked.service        only where systemd is PID 1

Everything is planned first (``plan_*`` return the changes) and applied only outside check mode.
Files are written atomically (temporary file in the same directory, then rename).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import write_atomic
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.payload import digest

MANIFEST = "MANIFEST.json"
SUPERVISOR_FILE = "pyike_supervisor.py"
INSTALLED_BY = "pyike.ipsec.engine"
WRAPPER_MARKER = "# Installed by pyike.ipsec.engine"
UNIT_NAME = "pyiked.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME
VERSION_PATTERN = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$")
FILE_MODE = 0o644
EXEC_MODE = 0o755
DIR_MODE = 0o755
SITE_DIR = "site"  # a newer cryptography unpacked from a wheel (wheel.py)


class InstallError(Exception):
    pass


def check_version(version):
    if not VERSION_PATTERN.match(version or "") or ".." in version:
        raise InstallError(
            "version %r is not a plain version label (letters, digits, '.', '_', '+', '-')" % (version,)
        )


def manifest_bytes(version, python, files):
    document = {
        "installed_by": INSTALLED_BY,
        "version": version,
        "python": python,
        "digest": digest(files),
        "files": sorted(files),
    }
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")


def read_manifest(version_dir):
    try:
        with open(os.path.join(version_dir, MANIFEST), "rb") as handle:
            document = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or document.get("installed_by") != INSTALLED_BY:
        return None
    return document


def desired_tree(engine_files, supervisor_source, version, python, version_dir):
    """({path relative to the version directory: (bytes, mode)}, engine digest), manifest included.

    The digest identifies what a daemon runs: the files, where they are and which interpreter
    runs them, so a daemon started from another version directory is restarted too.
    """
    files = dict(engine_files)
    files[SUPERVISOR_FILE] = supervisor_source
    tree = {path: (content, FILE_MODE) for path, content in files.items()}
    tree[MANIFEST] = (manifest_bytes(version, python, files), FILE_MODE)
    identity = dict(files)
    identity["\0location"] = ("%s\0%s" % (version_dir, python)).encode("utf-8")
    return tree, digest(identity)


def _text(option, value):
    """`value` checked to be writable into a UTF-8 file (no NUL, no undecodable bytes)."""
    if not value:
        raise InstallError("%s must not be empty" % option)
    if "\0" in value:
        raise InstallError("%s %r contains a NUL character, which no path can hold" % (option, value))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InstallError("%s %r is not valid UTF-8; use a path that is" % (option, value)) from None
    return value


def shell_word(option, value):
    """`value` as one sh word: POSIX single quotes keep every character, newlines included."""
    return shlex.quote(_text(option, value))


# systemd.service(5) "Command lines" and systemd.syntax(7): a double-quoted word takes C escapes;
# '%' starts a specifier and '$' an environment variable, so each is doubled to stay literal.
# A word of only these characters is written as it is (units of plain paths stay unchanged).
_SYSTEMD_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "%": "%%", "$": "$$"}
_SYSTEMD_PLAIN = re.compile(r"^[A-Za-z0-9/._+,:=@-]+$")


def systemd_argument(option, value):
    """`value` as one ExecStart argument that systemd hands to the program unchanged."""
    if _SYSTEMD_PLAIN.match(_text(option, value)):
        return value
    out = []
    for char in value:
        if char in _SYSTEMD_ESCAPES:
            out.append(_SYSTEMD_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append("\\x%02x" % ord(char))
        else:
            out.append(char)
    return '"%s"' % "".join(out)


def systemd_program(option, directory, name):
    """The program `name` in `directory` as the program of an ExecStart line.

    systemd takes the program path literally apart from specifiers (no environment variables, so
    '$' stays as it is) and refuses one with quotes, backslashes or control characters ("Executable
    name contains special characters"): such a path is refused here, before anything is written.
    """
    _text(option, directory)
    bad = sorted({char for char in directory if char in "\"'\\\x7f" or ord(char) < 0x20})
    if bad:
        raise InstallError(
            "%s %r cannot hold the program of a systemd unit: systemd refuses %s in a program path; "
            "choose a directory without them" % (option, directory, ", ".join(repr(char) for char in bad))
        )
    if not os.path.isabs(directory):
        raise InstallError("%s %r must be an absolute path for systemd" % (option, directory))
    program = os.path.join(directory, name)
    return program if _SYSTEMD_PLAIN.match(program) else '"%s"' % program.replace("%", "%%")


def wrapper_text(kind, python, version_dir, config_path, version, engine_digest, site_dir=None):
    """The pyiked (kind 'daemon') or pyikectl (kind 'ctl') shell wrapper.

    Every path is one sh word (shlex.quote); none goes into a comment, where a newline in it would
    start a command. ``site_dir`` follows the engine on PYTHONPATH (a newer cryptography).
    """
    pythonpath = version_dir + (":" + site_dir if site_dir else "")
    lines = [
        "#!/bin/sh",
        "%s %s; do not edit (the next run replaces it)." % (WRAPPER_MARKER, version),
        "PYTHONPATH=%s" % shell_word("install directory", pythonpath),
        "PYIKE_ENGINE_DIGEST=%s" % engine_digest,
        "export PYTHONPATH PYIKE_ENGINE_DIGEST",
    ]
    if kind == "daemon":
        lines += [
            "# pyiked: the pyike IKEv2/IPsec daemon; without arguments it reads the configuration below",
            'if [ "$#" -eq 0 ]; then set -- --config %s; fi' % shell_word("config_path", config_path),
            'exec %s -m pyike daemon "$@"' % shell_word("interpreter", python),
        ]
    else:
        lines += [
            "# pyikectl: control the running daemon (list-conns, list-sas, initiate, terminate, reload, stats)",
            'exec %s -m pyike ctl "$@"' % shell_word("interpreter", python),
        ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def unit_text(bin_dir, config_path, version):
    """The systemd unit; raises InstallError for a bin_dir that systemd cannot run a program from."""
    exec_start = "ExecStart=%s --config %s" % (
        systemd_program("bin_dir", bin_dir, "pyiked"),
        systemd_argument("config_path", config_path),
    )
    return (
        "\n".join(
            [
                "%s %s; do not edit (the next run replaces it)." % (WRAPPER_MARKER, version),
                "[Unit]",
                "Description=pyike IKEv2/IPsec daemon",
                "Wants=network-online.target",
                "After=network-online.target",
                "",
                "[Service]",
                "Type=simple",
                exec_start,
                "ExecReload=/bin/kill -HUP $MAINPID",
                "Restart=on-failure",
                "RestartSec=2",
                "UMask=0077",
                "",
                "[Install]",
                "WantedBy=multi-user.target",
                "",
            ]
        )
    ).encode("utf-8")


def _mode(path):
    try:
        return stat.S_IMODE(os.lstat(path).st_mode)
    except OSError:
        return None


def file_state(path, content, mode):
    """None when `path` already holds `content` with `mode`, else 'create', 'update' or 'mode'."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "create"
    if not stat.S_ISREG(info.st_mode):
        return "update"
    try:
        with open(path, "rb") as handle:
            same = handle.read() == content
    except OSError:
        same = False
    if not same:
        return "update"
    if stat.S_IMODE(info.st_mode) != mode:
        return "mode"
    return None


def plan_tree(version_dir, tree):
    """Changes that make `version_dir` hold exactly `tree`: [(action, relative path)]."""
    changes = []
    for path in sorted(tree):
        content, mode = tree[path]
        state = file_state(os.path.join(version_dir, path), content, mode)
        if state:
            changes.append((state, path))
    for path in sorted(stale_files(version_dir, tree)):
        changes.append(("remove", path))
    return changes


def stale_files(version_dir, tree):
    """Engine files in `version_dir` that the payload no longer has (only .py files; caches stay).

    Everything under `site` is ours (an unpacked wheel): any file there that `tree` lacks is stale,
    and so is the cache of a module the wheel no longer has (a directory left holding only caches
    would import as an empty namespace package); all of them once no wheel is wanted.
    """
    stale = []
    package_dirs = {path.split("/", 1)[0] for path in tree if "/" in path}
    site_wanted = SITE_DIR in package_dirs
    for top in package_dirs | {SITE_DIR}:
        for root, dirs, names in os.walk(os.path.join(version_dir, top)):
            if top != SITE_DIR:
                dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in names:
                relative = os.path.relpath(os.path.join(root, name), version_dir).replace(os.sep, "/")
                if top == SITE_DIR and site_wanted and os.path.basename(root) == "__pycache__":
                    if _cached_source(relative) not in tree:
                        stale.append(relative)
                elif (top == SITE_DIR or name.endswith(".py")) and relative not in tree:
                    stale.append(relative)
    return stale


def _cached_source(cache_path):
    """'a/b.py' for 'a/__pycache__/b.cpython-311.pyc' (PEP 3147)."""
    directory, name = cache_path.rsplit("/__pycache__/", 1)
    return "%s/%s.py" % (directory, name.split(".", 1)[0])


def ensure_dir(path, mode):
    """Create `path` (and parents) with `mode` or fix its mode; True when something changed."""
    if os.path.isdir(path):
        if _mode(path) != mode:
            os.chmod(path, mode)
            return True
        return False
    parent = os.path.dirname(path.rstrip("/"))
    if parent and parent != path and not os.path.isdir(parent):
        ensure_dir(parent, DIR_MODE)
    os.mkdir(path, mode)
    os.chmod(path, mode)  # mkdir's mode is filtered by the umask
    return True


def apply_tree(version_dir, tree, changes):
    ensure_dir(version_dir, DIR_MODE)
    for action, path in changes:
        target = os.path.join(version_dir, path)
        if action == "remove":
            os.unlink(target)
            continue
        content, mode = tree[path]
        ensure_dir(os.path.dirname(target), DIR_MODE)
        if action == "mode":
            os.chmod(target, mode)
        else:
            write_atomic(target, content, mode)
    for root, _dirs, _names in os.walk(version_dir, topdown=False):
        if root != version_dir and not os.listdir(root):  # bottom-up: its emptied subdirectories are gone
            os.rmdir(root)  # a package the engine dropped


def plan_owned_file(path, content, mode):
    """Like file_state, but refuses to replace a file this module did not install."""
    state = file_state(path, content, mode)
    if state == "update" and os.path.exists(path) and not is_ours(path):
        raise InstallError("%s exists and was not installed by %s; move it away first" % (path, INSTALLED_BY))
    return state


def is_ours(path):
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return WRAPPER_MARKER.encode() in head


def our_versions(install_root):
    """{version: directory} of every engine this module installed under `install_root`."""
    found = {}
    try:
        names = os.listdir(install_root)
    except OSError:
        return found
    for name in sorted(names):
        directory = os.path.join(install_root, name)
        manifest = read_manifest(directory)
        if os.path.isdir(directory) and not os.path.islink(directory) and manifest is not None:
            found[name] = directory
    return found


def remove_tree(directory):
    shutil.rmtree(directory)


def remove_if_empty(directory):
    try:
        os.rmdir(directory)
    except OSError:
        return False
    return True
