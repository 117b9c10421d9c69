# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A newer cryptography for the engine, from a wheel, beside the engine rather than in the system.

cryptography before 42 builds a new OpenSSL cipher context on every ``AESGCM.encrypt`` (about
19 us for a 1400-octet packet with Debian 12's 38, 1.6 us with 51), which caps the userspace ESP
dataplane. The engine module unpacks a cryptography wheel into ``<version dir>/site`` and puts that
directory on the daemon's PYTHONPATH, behind the engine and ahead of the interpreter's own
packages, but only when the wheel imports and works under the module's interpreter and is newer
than the distribution's; otherwise the distribution's cryptography stays (a warning says why).

A wheel is a zip archive; only its ``cryptography/`` package and its ``.dist-info`` are taken,
and every member name is checked before anything is read, so a hostile archive writes nothing
outside the directory. The probe unpacks it beside the engine (under the install root), on the
filesystem the daemon will load it from: a ``noexec`` /tmp must not decide.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import install

SITE_DIR = install.SITE_DIR
MAX_UNPACKED = 64 * 1024 * 1024  # cryptography 51 unpacks to 15 MB
MAX_MEMBERS = 2000  # cryptography 51 has 142
FIRST_FAST_MAJOR = 42  # the first cryptography whose AEAD objects keep their OpenSSL context
_WHEEL_NAME = re.compile(r"^cryptography-(?P<version>[0-9][0-9A-Za-z.+]*)-[^/]+\.whl$")

# Run by the module's interpreter with the unpacked wheel first on sys.path and the engine after it: it
# must import the wheel's cryptography (not the distribution's), seal one packet with it, and the whole
# engine must import with it (the daemon imports its runtime, which imports everything that uses it).
_PROBE = (
    "import sys; sys.path[0:0] = sys.argv[1:3]; import cryptography; "
    "from cryptography.hazmat.primitives.ciphers.aead import AESGCM; "
    "AESGCM(bytes(32)).encrypt(bytes(12), b'probe', b''); "
    "assert cryptography.__file__.startswith(sys.argv[1]), cryptography.__file__; "
    "import importlib; [importlib.import_module(name) for name in sys.argv[3:]]; "
    "print(cryptography.__version__)"
)
ENGINE_MODULES = ("pyike.runtime.daemon",)


class WheelError(Exception):
    """The wheel cannot be used; the message names the file and the reason."""


def version_tuple(version):
    """(51, 0, 1) from '51.0.1'; the leading numbers only, enough to order releases."""
    numbers = []
    for part in str(version or "").split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        numbers.append(int(digits.group()))
    return tuple(numbers)


def is_slow(version):
    """Whether a cryptography of this version makes an OpenSSL context per AEAD call."""
    found = version_tuple(version)
    return bool(found) and found[0] < FIRST_FAST_MAJOR


def _member_path(wheel, name, allowed_tops):
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\0" in name or any(part in ("", ".", "..") for part in parts):
        raise WheelError("%s: member %r is not a plain relative path" % (wheel, name))
    if parts[0] not in allowed_tops or len(parts) < 2:
        raise WheelError(
            "%s: member %r is neither in the cryptography package nor in its %s; this is not a cryptography "
            "wheel of the version its file name gives" % (wheel, name, sorted(allowed_tops)[-1])
        )
    return name


def _check_layout(wheel, names):
    """No member twice, and none that is both a file and the directory of another."""
    seen = set()
    for name in names:
        if name in seen:
            raise WheelError("%s: member %r appears twice" % (wheel, name))
        seen.add(name)
    for name in names:
        parts = name.split("/")
        for end in range(1, len(parts)):
            if "/".join(parts[:end]) in seen:
                raise WheelError(
                    "%s: %r is a file and the directory of member %r" % (wheel, "/".join(parts[:end]), name)
                )


def check_file(wheel):
    """Refuse a path that is not a regular file, or one that someone other than root (or us) could have
    replaced: the probe runs the archive's code with the module's rights."""
    try:
        info = os.stat(wheel)
    except OSError as exc:
        raise WheelError("%s: %s" % (wheel, exc.strerror or exc)) from None
    if not stat.S_ISREG(info.st_mode):
        raise WheelError("%s: not a file" % wheel)
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise WheelError(
            "%s: owned by uid %d with mode %04o; a wheel whose code runs as root must be owned by root "
            "and writable by nobody else" % (wheel, info.st_uid, stat.S_IMODE(info.st_mode))
        )


def read_wheel(wheel):
    """(version, {path relative to the site directory: bytes}) of a cryptography wheel."""
    match = _WHEEL_NAME.match(os.path.basename(wheel))
    if not match:
        raise WheelError(
            "%s: not a cryptography wheel (expected a file named cryptography-<version>-<tags>.whl)" % wheel
        )
    version = match.group("version")
    allowed_tops = {"cryptography", "cryptography-%s.dist-info" % version}
    files = {}
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) > MAX_MEMBERS:
                raise WheelError(
                    "%s: %d members, more than the %d a cryptography wheel has"
                    % (wheel, len(members), MAX_MEMBERS)
                )
            total = sum(info.file_size for info in members)
            if total > MAX_UNPACKED:
                raise WheelError(
                    "%s: unpacks to %d octets, more than the %d a cryptography wheel needs"
                    % (wheel, total, MAX_UNPACKED)
                )
            names = [_member_path(wheel, info.filename, allowed_tops) for info in members]
            _check_layout(wheel, names)
            for info in members:
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise WheelError("%s: member %r is a symbolic link" % (wheel, info.filename))
            for name, info in zip(names, members):
                files[name] = archive.read(info)
    except WheelError:
        raise
    except (
        Exception
    ) as exc:  # zipfile raises OSError, BadZipFile, zlib.error, EOFError, NotImplementedError...
        raise WheelError("%s: cannot be read as a wheel: %s" % (wheel, exc)) from None
    if "cryptography/__init__.py" not in files:
        raise WheelError("%s: holds no cryptography/__init__.py" % wheel)
    return version, files


def probe(run, python, wheel, files, where, engine_files=None):
    """The version the interpreter imports from the unpacked ``wheel``, or WheelError with its error.

    ``where``: the directory to unpack it in for the test (the install root, which must exist).
    ``engine_files`` ({path: bytes} of the engine package): imported with the wheel too.
    """
    try:
        scratch = tempfile.mkdtemp(prefix=".pyike-wheel-", dir=where)
    except OSError as exc:
        raise WheelError(
            "%s: cannot unpack it in %s to test it: %s" % (wheel, where, exc.strerror or exc)
        ) from None
    try:
        site, engine = os.path.join(scratch, "site"), os.path.join(scratch, "engine")
        for directory, tree in ((site, files), (engine, engine_files or {})):
            for path, content in tree.items():
                target = os.path.join(directory, path)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as handle:
                    handle.write(content)
        rc, out, err = run([python, "-c", _PROBE, site, engine, *(ENGINE_MODULES if engine_files else ())])
    except OSError as exc:
        raise WheelError(
            "%s: cannot unpack it in %s to test it: %s" % (wheel, where, exc.strerror or exc)
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if rc != 0:
        lines = (err or out or "").strip().splitlines()
        raise WheelError(
            "%s: does not work under %s: %s" % (wheel, python, lines[-1] if lines else "exit %d" % rc)
        )
    return out.strip()
