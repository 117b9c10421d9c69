"""A cryptography wheel unpacked for the benchmarks (no pip: a wheel is a zip archive).

The engine module installs wheels with its own checks (pyike_ansible/wheel.py, which needs Ansible's
import paths); the benchmarks only need the files in a temporary directory to put on PYTHONPATH.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile


def unpack_wheel(wheel: str, prefix: str = "pyike-bench-wheel-") -> str:
    """A new temporary directory holding the wheel's cryptography package and .dist-info; member names are
    checked before anything is written. SystemExit names the wheel and the problem."""
    directory = tempfile.mkdtemp(prefix=prefix)
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            for info in members:
                parts = info.filename.split("/")
                top_ok = parts[0] == "cryptography" or (
                    parts[0].startswith("cryptography-") and parts[0].endswith(".dist-info")
                )
                if not top_ok or info.filename.startswith("/") or "\\" in info.filename or ".." in parts:
                    raise SystemExit("%s: member %r: not a cryptography wheel" % (wheel, info.filename))
            if "cryptography/__init__.py" not in archive.namelist():
                raise SystemExit("%s: holds no cryptography/__init__.py" % wheel)
            archive.extractall(directory, members)
    except (OSError, zipfile.BadZipFile) as exc:
        shutil.rmtree(directory, ignore_errors=True)
        raise SystemExit("%s: cannot be read as a wheel: %s" % (wheel, exc)) from None
    except SystemExit:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return directory
