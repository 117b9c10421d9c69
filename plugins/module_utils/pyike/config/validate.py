"""Checking a configuration document against the JSON Schema, with readable messages.

Two engines give the same results: ``jsonschema`` (draft 2020-12) when it is importable, and a
small built-in validator for the subset of keywords the daemon schema uses, so hosts with only
the distribution's Python (Debian 12 ships no python3-jsonschema by default) validate too.  The
built-in one refuses a schema keyword it does not implement rather than ignore it.

Both report every violation as ``(path, message)``.  Messages are written here, never taken
from jsonschema: its messages quote whole instances, which could carry a pre-shared key.
Values are quoted only when they are scalars outside a secret field.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import Path

SECRET_FIELDS = frozenset({"psk", "private_key"})  # private_key is a path, but a pasted key must not echo

try:  # optional: a dependency of the controller tooling, rarely installed on targets
    import jsonschema as _jsonschema
except ImportError:  # pragma: no cover - depends on the interpreter
    _jsonschema = None

Violation = Tuple[Path, str]

ANNOTATIONS = frozenset(
    {
        "$schema",
        "$id",
        "$defs",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
BUILTIN_KEYWORDS = frozenset(
    {
        "$ref",
        "type",
        "enum",
        "const",
        "properties",
        "additionalProperties",
        "propertyNames",
        "required",
        "minProperties",
        "items",
        "minItems",
        "maxItems",
        "uniqueItems",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "oneOf",
        "if",
        "then",
        "else",
    }
)


def have_jsonschema() -> bool:
    return _jsonschema is not None


# -- messages -----------------------------------------------------------------------------------

_ARTICLES = {
    "object": "an object (mapping)",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "null": "null",
}


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    if value is None:
        return "null"
    return type(value).__name__


def type_phrase(value: Any) -> str:
    """``an integer``, ``a string``, ... for messages."""
    kind = json_type(value)
    return _ARTICLES.get(kind, "a " + kind).split(" (")[0]


def _is_secret(path: Path) -> bool:
    return bool(path) and path[-1] in SECRET_FIELDS


def _shown(value: Any, path: Path) -> str:
    """A value for a message: scalars only, never from a secret field."""
    if _is_secret(path) or isinstance(value, (dict, list, tuple)):
        return ""
    text = repr(value) if isinstance(value, str) else _json_scalar(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


def _json_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    return "a %s" % type(value).__name__


def _got(value: Any, path: Path) -> str:
    if value is None:  # YAML's "key:" with nothing after it
        return "got null (no value given)"
    kind = json_type(value)
    shown = _shown(value, path)
    phrase = _ARTICLES.get(kind, "a " + kind).split(" (")[0]
    return "got %s%s" % (phrase, " " + shown if shown else "")


def _properties_allowed(schema: Dict[str, Any]) -> List[str]:
    return sorted(schema.get("properties", {}))


def describe(
    keyword: str,
    value: Any,
    instance: Any,
    schema: Dict[str, Any],
    path: Path,
    property_name: bool = False,
) -> List[Violation]:
    """Readable violations for one failed schema keyword (shared by both engines)."""
    if property_name:
        # A propertyNames subschema failed: ``instance`` is the offending key.
        reason = schema.get("description") or "names must match %s" % schema.get("pattern", "the schema")
        return [((*path, instance), "invalid name %r: %s" % (instance, reason))]
    if keyword == "type":
        types = value if isinstance(value, list) else [value]
        expected = " or ".join(_ARTICLES.get(t, t) for t in types)
        return [(path, "expected %s, %s" % (expected, _got(instance, path)))]
    if keyword == "required":
        return [((*path, key), "required field is missing") for key in value if key not in instance]
    if keyword == "additionalProperties":
        allowed = _properties_allowed(schema)
        extras = [key for key in instance if key not in schema.get("properties", {})]
        return [
            ((*path, key), "unknown field (allowed: %s)" % ", ".join(allowed) if allowed else "unknown field")
            for key in extras
        ]
    if keyword in ("enum", "const"):
        choices = value if keyword == "enum" else [value]
        listed = ", ".join(c if isinstance(c, str) else _json_scalar(c) for c in choices)
        shown = _shown(instance, path)
        return [(path, "must be one of %s%s" % (listed, ", got " + shown if shown else ""))]
    if keyword == "minimum":
        return [(path, "must be at least %s, got %s" % (value, _shown(instance, path) or "less"))]
    if keyword == "maximum":
        return [(path, "must be at most %s, got %s" % (value, _shown(instance, path) or "more"))]
    if keyword == "minLength":
        if value <= 1:
            return [(path, "must not be empty")]
        return [(path, "must be at least %d characters long" % value)]
    if keyword == "maxLength":
        return [(path, "must be at most %d characters long" % value)]
    if keyword == "pattern":
        shown = _shown(instance, path)
        reason = schema.get("description") or "must match %s" % value
        return [(path, "%s is not valid: %s" % (shown or "the value", reason))]
    if keyword == "minItems":
        if value <= 1:
            return [(path, "must not be empty")]
        return [(path, "needs at least %d items" % value)]
    if keyword == "maxItems":
        return [(path, "allows at most %d items" % value)]
    if keyword == "uniqueItems":
        seen: List[Any] = []
        for index, item in enumerate(instance):
            if any(_json_equal(item, other) for other in seen):
                shown = _shown(item, (*path, index))
                return [((*path, index), "duplicate item%s" % (" " + shown if shown else ""))]
            seen.append(item)
        return [(path, "items must be unique")]
    if keyword == "minProperties":
        if value <= 1:
            return [(path, "must not be empty")]
        return [(path, "needs at least %d entries" % value)]
    if keyword == "oneOf":
        alternatives = [alt.get("required") for alt in value]
        if all(isinstance(r, list) and len(r) == 1 and len(alt) == 1 for r, alt in zip(alternatives, value)):
            keys = [r[0] for r in alternatives]
            present = [key for key in keys if isinstance(instance, dict) and key in instance]
            listed = " or ".join(keys)
            if present:
                return [(path, "give only one of %s, not %s" % (listed, " and ".join(present)))]
            return [(path, "one of %s is required" % listed)]
        return [(path, "must match exactly one of %d alternatives" % len(value))]
    return [(path, "violates schema keyword %r" % keyword)]


def _json_equal(first: Any, second: Any) -> bool:
    if isinstance(first, bool) or isinstance(second, bool):
        return isinstance(first, bool) and isinstance(second, bool) and first == second
    if isinstance(first, dict) and isinstance(second, dict):
        return first.keys() == second.keys() and all(_json_equal(first[k], second[k]) for k in first)
    if isinstance(first, (list, tuple)) and isinstance(second, (list, tuple)):
        return len(first) == len(second) and all(_json_equal(a, b) for a, b in zip(first, second))
    if isinstance(first, (int, float)) and isinstance(second, (int, float)):
        return first == second
    return type(first) is type(second) and first == second


# -- the built-in validator ---------------------------------------------------------------------------------


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if kind == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, (int, float))
    raise ValueError("unknown JSON type %r in schema" % kind)


class BuiltinValidator:
    """Draft 2020-12 validation for the keywords in :data:`BUILTIN_KEYWORDS` (local ``$ref`` only)."""

    def __init__(self, schema: Dict[str, Any]) -> None:
        self.root = schema
        self._check_keywords(schema, "#")

    def _check_keywords(self, schema: Any, where: str) -> None:
        if not isinstance(schema, dict):
            raise ValueError("%s: subschemas must be objects" % where)
        for keyword, value in schema.items():
            if keyword not in BUILTIN_KEYWORDS and keyword not in ANNOTATIONS:
                raise ValueError(
                    "%s: schema keyword %r is not implemented by the built-in validator" % (where, keyword)
                )
            if keyword == "$ref" and not (isinstance(value, str) and value.startswith("#/$defs/")):
                raise ValueError("%s: only local '#/$defs/...' references are supported" % where)
        for keyword in ("properties", "$defs"):
            for name, sub in schema.get(keyword, {}).items():
                self._check_keywords(sub, "%s/%s/%s" % (where, keyword, name))
        for keyword in ("items", "propertyNames"):
            if keyword in schema:
                self._check_keywords(schema[keyword], "%s/%s" % (where, keyword))
        if isinstance(schema.get("additionalProperties"), dict):
            self._check_keywords(schema["additionalProperties"], where + "/additionalProperties")
        for index, sub in enumerate(schema.get("oneOf", [])):
            self._check_keywords(sub, "%s/oneOf/%d" % (where, index))
        for keyword in ("if", "then", "else"):
            if keyword in schema:
                self._check_keywords(schema[keyword], "%s/%s" % (where, keyword))

    def _resolve(self, ref: str) -> Dict[str, Any]:
        return self.root["$defs"][ref[len("#/$defs/") :]]

    def iter_violations(self, instance: Any) -> List[Violation]:
        out: List[Violation] = []
        self._validate(instance, self.root, (), out, False)
        return out

    def _is_valid(self, instance: Any, schema: Dict[str, Any]) -> bool:
        out: List[Violation] = []
        self._validate(instance, schema, (), out, False)
        return not out

    def _validate(
        self, instance: Any, schema: Dict[str, Any], path: Path, out: List[Violation], names: bool
    ) -> None:
        def fail(keyword: str) -> None:
            out.extend(describe(keyword, schema[keyword], instance, schema, path, names))

        if "$ref" in schema:
            self._validate(instance, self._resolve(schema["$ref"]), path, out, names)
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(instance, t) for t in types):
                fail("type")
        if "enum" in schema and not any(_json_equal(instance, c) for c in schema["enum"]):
            fail("enum")
        if "const" in schema and not _json_equal(instance, schema["const"]):
            fail("const")
        if isinstance(instance, dict):
            self._validate_object(instance, schema, path, out, names, fail)
        if isinstance(instance, (list, tuple)):
            self._validate_array(instance, schema, path, out, names, fail)
        if isinstance(instance, str):
            if "minLength" in schema and len(instance) < schema["minLength"]:
                fail("minLength")
            if "maxLength" in schema and len(instance) > schema["maxLength"]:
                fail("maxLength")
            if "pattern" in schema and not re.search(schema["pattern"], instance):
                fail("pattern")
        if _is_type(instance, "number"):
            if "minimum" in schema and instance < schema["minimum"]:
                fail("minimum")
            if "maximum" in schema and instance > schema["maximum"]:
                fail("maximum")
        if "oneOf" in schema:
            matches = sum(1 for sub in schema["oneOf"] if self._is_valid(instance, sub))
            if matches != 1:
                fail("oneOf")
        if "if" in schema:  # draft 2020-12 §10.2.2: "if" itself never fails, it picks the branch
            branch = "then" if self._is_valid(instance, schema["if"]) else "else"
            if branch in schema:
                self._validate(instance, schema[branch], path, out, names)

    def _validate_object(
        self,
        instance: Dict[str, Any],
        schema: Dict[str, Any],
        path: Path,
        out: List[Violation],
        names: bool,
        fail: Callable[[str], None],
    ) -> None:
        properties = schema.get("properties", {})
        if "required" in schema and any(key not in instance for key in schema["required"]):
            fail("required")
        if "minProperties" in schema and len(instance) < schema["minProperties"]:
            fail("minProperties")
        if "propertyNames" in schema:
            for key in instance:
                self._validate(key, schema["propertyNames"], path, out, True)
        for key, value in instance.items():
            if key in properties:
                self._validate(value, properties[key], (*path, key), out, names)
        additional = schema.get("additionalProperties", True)
        extras = [key for key in instance if key not in properties]
        if additional is False and extras:
            fail("additionalProperties")
        elif isinstance(additional, dict):
            for key in extras:
                self._validate(instance[key], additional, (*path, key), out, names)

    def _validate_array(
        self,
        instance: Sequence[Any],
        schema: Dict[str, Any],
        path: Path,
        out: List[Violation],
        names: bool,
        fail: Callable[[str], None],
    ) -> None:
        if "minItems" in schema and len(instance) < schema["minItems"]:
            fail("minItems")
        if "maxItems" in schema and len(instance) > schema["maxItems"]:
            fail("maxItems")
        if schema.get("uniqueItems"):
            if any(_json_equal(a, b) for i, a in enumerate(instance) for b in instance[i + 1 :]):
                fail("uniqueItems")
        if "items" in schema:
            for index, item in enumerate(instance):
                self._validate(item, schema["items"], (*path, index), out, names)


# -- the jsonschema engine ----------------------------------------------------------------------------------


def _jsonschema_violations(instance: Any, schema: Dict[str, Any]) -> List[Violation]:
    validator_class = _jsonschema.Draft202012Validator
    out: List[Violation] = []
    for error in validator_class(schema).iter_errors(instance):
        out.extend(_from_jsonschema_error(error))
    return out


def _from_jsonschema_error(error: Any) -> List[Violation]:
    path: Path = tuple(error.absolute_path)
    names = "propertyNames" in error.absolute_schema_path
    schema = error.schema if isinstance(error.schema, dict) else {}
    return describe(error.validator, error.validator_value, error.instance, schema, path, names)


# -- entry point ------------------------------------------------------------------------------------------


def schema_violations(instance: Any, schema: Dict[str, Any], engine: Optional[str] = None) -> List[Violation]:
    """Every schema violation of ``instance``, sorted and without duplicates.

    ``engine`` is ``"jsonschema"``, ``"builtin"`` or None (jsonschema when importable).
    """
    if engine is None:
        engine = "jsonschema" if _jsonschema is not None else "builtin"
    if engine == "jsonschema":
        if _jsonschema is None:
            raise RuntimeError("the jsonschema package is not installed")
        found = _jsonschema_violations(instance, schema)
    elif engine == "builtin":
        found = BuiltinValidator(schema).iter_violations(instance)
    else:
        raise ValueError("unknown validation engine %r" % engine)
    unique: Dict[Tuple[Tuple[str, ...], str], Violation] = {}
    for path, message in found:
        key = (tuple("%s:%s" % (type(p).__name__, p) for p in path), message)
        unique.setdefault(key, (path, message))
    return sorted(unique.values(), key=lambda v: (_sort_key(v[0]), v[1]))


def _sort_key(path: Path) -> Tuple[Tuple[int, Any], ...]:
    return tuple((0, p) if isinstance(p, int) and not isinstance(p, bool) else (1, str(p)) for p in path)
