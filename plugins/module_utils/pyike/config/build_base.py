"""What every part of the configuration builder (load.py) shares: typed access to the document (a value
of the wrong type is the schema's to report), addresses, and reading files that hold secrets."""

from __future__ import annotations

import ipaddress
import os
import stat
from typing import Any, Callable, List, Optional

from .errors import Path, format_path
from .model import IPAddress

_MISSING = object()


class _Skip(Exception):
    """A value has the wrong type; the schema check reports it, the builder skips the object."""

    def __init__(self, path: Path) -> None:
        super().__init__(format_path(path))
        self.path = path


def _integer(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


class BuilderBase:
    def __init__(
        self, add: Callable[[Path, str], None], base_dir: Optional[str], schema_failed: bool
    ) -> None:
        self.add = add
        self.base_dir = base_dir
        self.schema_failed = schema_failed
        self.secret_texts: List[str] = []

    # typed access; a wrong type means the schema already complained
    def _get(self, raw: Any, key: str, path: Path, kind: str, default: Any = _MISSING) -> Any:
        if not isinstance(raw, dict):
            raise _Skip(path)
        if key not in raw:
            if default is _MISSING:
                raise _Skip((*path, key))
            return list(default) if isinstance(default, list) else default
        value = raw[key]
        if kind == "int":
            number = _integer(value)
            if number is None:
                raise _Skip((*path, key))
            return number
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _Skip((*path, key))
            return float(value)
        checks = {"str": str, "bool": bool, "dict": dict, "list": list}
        if not isinstance(value, checks[kind]):
            raise _Skip((*path, key))
        if kind == "list" and not all(isinstance(item, str) for item in value):
            raise _Skip((*path, key))
        return value

    def skipped(self, skip: _Skip) -> None:
        if not self.schema_failed:
            self.add(skip.path, "unexpected value (the loader and the schema disagree)")

    def address(self, path: Path, text: Any) -> Optional[IPAddress]:
        if not isinstance(text, str):
            return None
        try:
            return ipaddress.ip_address(text.strip())
        except ValueError:
            self.add(path, "%r is not an IPv4 or IPv6 address" % text)
            return None

    def attempt(self, function: Callable[..., Any], *args: Any) -> Any:
        """``function(*args)``, or None when it met a value of the wrong type."""
        try:
            return function(*args)
        except _Skip as skip:
            self.skipped(skip)
            return None

    def file_path(self, text: str) -> str:
        """A configured file name: ``~`` expanded, relative to the configuration file's directory."""
        return os.path.normpath(os.path.join(self.base_dir or os.getcwd(), os.path.expanduser(text)))

    def read_protected(self, path: Path, file_path: str) -> Optional[bytes]:
        """The content of a secret file (PSK or private key), which must be a regular file that
        neither group nor others can access; None (and a problem) otherwise."""
        try:
            with open(file_path, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode):
                    self.add(path, "%s is not a regular file" % file_path)
                    return None
                mode = stat.S_IMODE(info.st_mode)
                if mode & 0o077:
                    self.add(
                        path,
                        "%s is accessible by group or others (mode %04o); restrict it with chmod 600"
                        % (file_path, mode),
                    )
                    return None
                return handle.read()
        except FileNotFoundError:
            self.add(path, "%s does not exist" % file_path)
            return None
        except OSError as error:
            self.add(path, "cannot read %s: %s" % (file_path, error.strerror or type(error).__name__))
            return None
