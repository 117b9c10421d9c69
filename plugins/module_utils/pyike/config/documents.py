"""Reading a configuration document: JSON always, YAML when PyYAML is importable, strict about keys.

Both parsers keep mappings that remember keys they saw twice (JSON and YAML would keep the last one
silently) or could not keep (YAML's non-string keys); `key_problems` reports them with their path.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, List, Tuple

from .errors import ConfigError, Path, Problem
from .validate import type_phrase

try:  # optional on targets: Debian's python3-yaml
    import yaml
except ImportError:  # pragma: no cover - depends on the interpreter
    yaml = None

_YAML_SUFFIXES = (".yaml", ".yml")


class _Mapping(dict):
    """A JSON object / YAML mapping that remembers keys it saw twice or could not keep."""

    def __init__(self) -> None:
        super().__init__()
        self.duplicates: List[str] = []
        self.bad_keys: List[Any] = []


def _json_pairs(pairs: List[Tuple[str, Any]]) -> _Mapping:
    mapping = _Mapping()
    for key, value in pairs:
        if key in mapping:
            mapping.duplicates.append(key)
        mapping[key] = value
    return mapping


def _json_constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


def _problem(source: str, where: str, message: str) -> ConfigError:
    return ConfigError([Problem(source, where, message)])


def _load_json(text: str, source: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_json_pairs, parse_constant=_json_constant)
    except json.JSONDecodeError as error:
        where = "line %d column %d" % (error.lineno, error.colno)
        raise _problem(source, where, "JSON syntax error: %s" % error.msg) from None
    except ValueError as error:
        raise _problem(source, "", "JSON syntax error: %s" % error) from None


if yaml is not None:

    class _YamlLoader(yaml.SafeLoader):
        """SafeLoader whose mappings record duplicate and non-string keys instead of hiding them."""

    def _construct_mapping(loader: _YamlLoader, node: Any) -> _Mapping:
        mapping = _Mapping()
        explicit = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        seen = []
        for key_node, _value_node in explicit:
            key = loader.construct_object(key_node, deep=True)
            if key in seen and isinstance(key, str):
                mapping.duplicates.append(key)
            seen.append(key)
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                if key not in mapping.bad_keys:
                    mapping.bad_keys.append(key)
                continue
            mapping[key] = loader.construct_object(value_node, deep=True)
        return mapping

    _YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, source: str) -> Any:
    if yaml is None:
        raise _problem(
            source,
            "",
            "reading YAML needs PyYAML, which is not installed: install python3-yaml (or pip install "
            "pyyaml), or write the configuration as JSON (a .json file)",
        )
    loader = _YamlLoader(text)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = "line %d column %d" % (mark.line + 1, mark.column + 1) if mark is not None else ""
        reason = error.problem or error.context or "invalid document"
        raise _problem(source, where, "YAML syntax error: %s" % reason) from None
    except yaml.YAMLError as error:
        raise _problem(source, "", "YAML error: %s" % type(error).__name__) from None
    finally:
        loader.dispose()


def parse_document(text: str, source: str) -> Any:
    """The document in ``text``: JSON for ``*.json``, YAML for ``*.yaml``/``*.yml``, else by content."""
    suffix = os.path.splitext(source)[1].lower()
    if suffix == ".json":
        return _load_json(text, source)
    if suffix in _YAML_SUFFIXES:
        return _load_yaml(text, source)
    if text.lstrip().startswith("{") or yaml is None:
        return _load_json(text, source)
    return _load_yaml(text, source)


def key_problems(value: Any, path: Path, add: Callable[[Path, str], None]) -> None:
    """Duplicate keys (JSON and YAML keep the last silently) and non-string YAML keys."""
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", []):
            add((*path, key), "appears more than once (names must be unique)")
        for key in getattr(value, "bad_keys", []):
            add(path, "key %r is %s, not a string; quote it" % (key, type_phrase(key)))
        for key, item in value.items():
            key_problems(item, (*path, key), add)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            key_problems(item, (*path, index), add)
