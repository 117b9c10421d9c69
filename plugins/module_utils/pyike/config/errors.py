"""The error a configuration that cannot be used raises: every problem, each with file and field."""

from __future__ import annotations

import re
from typing import Iterable, Sequence, Tuple, Union

PathElement = Union[str, int]
Path = Tuple[PathElement, ...]

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_%-]+$")


def format_path(path: Sequence[PathElement]) -> str:
    """``("connections", "hq", "local_ts", 1)`` -> ``connections.hq.local_ts[1]``.

    Keys that are not plain names are quoted: ``connections["a b"]``.
    """
    text = ""
    for element in path:
        if isinstance(element, int) and not isinstance(element, bool):
            text += "[%d]" % element
        elif isinstance(element, str) and _PLAIN_KEY.match(element):
            text += ("." if text else "") + element
        else:
            text += "[%s]" % _quote(element)
    return text


def _quote(value: object) -> str:
    if isinstance(value, str):
        return '"%s"' % value.replace("\\", "\\\\").replace('"', '\\"')
    return repr(value)


class Problem:
    """One thing wrong with a configuration: where (file, field path) and what."""

    __slots__ = ("message", "path", "source")

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message

    def __str__(self) -> str:
        if self.path:
            return "%s: %s: %s" % (self.source, self.path, self.message)
        return "%s: %s" % (self.source, self.message)

    def __repr__(self) -> str:
        return "Problem(%r)" % str(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return (self.source, self.path, self.message) == (other.source, other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.source, self.path, self.message))


class ConfigError(ValueError):
    """A configuration was refused; ``problems`` lists everything found, one line each.

    ``str(error)`` is those lines, each ``<file>: <path>: <message>``.  Messages never carry
    a pre-shared key.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: Tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid configuration")

    @property
    def messages(self) -> Tuple[str, ...]:
        return tuple(str(p) for p in self.problems)
