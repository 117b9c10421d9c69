"""schemas/inventory.schema.json: published == embedded, valid 2020-12, documented, strict."""

from __future__ import annotations

import json

import pytest
from inventory_cases import SCHEMA_FILE
from pyike.config.validate import BuiltinValidator
from pyike_inventory import GLOBAL_VARIABLES, HOST_VARIABLES, SCHEMA, global_names, host_names, schema_json


def test_published_schema_is_the_embedded_one():
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "schemas/inventory.schema.json is out of date: regenerate it from "
        "plugins/module_utils/pyike_inventory/schema.py with schema_json()"
    )
    assert json.loads(SCHEMA_FILE.read_text()) == SCHEMA


def test_schema_is_valid_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_builtin_validator_implements_every_keyword_used():
    BuiltinValidator(SCHEMA)  # raises on a keyword it would ignore


def _resolve(node):
    if "$ref" in node and "description" not in node:
        return SCHEMA["$defs"][node["$ref"].split("/")[-1]]
    return node


def test_every_variable_and_field_is_documented_and_every_object_strict():
    assert set(SCHEMA["properties"]) == set(GLOBAL_VARIABLES) | set(HOST_VARIABLES)

    def walk(node, where):
        if isinstance(node, dict):
            if "object" in (node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]):
                assert node.get("additionalProperties", True) is not True, where
            for name, sub in node.get("properties", {}).items():
                assert _resolve(sub).get("description"), "%s/%s has no description" % (where, name)
            for key, value in node.items():
                walk(value, where + "/" + key)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, "%s/%d" % (where, index))

    walk(SCHEMA, "#")


def test_variable_split_between_global_data_and_hosts():
    names = ["ipsec_tunnels", "ipsec_public_address", "ipsec_tunnel", "ansible_host", "ipsec_check"]
    data_keys = global_names(names)
    # A misspelt global variable goes to the data (reported once); other ipsec_* names, such as a
    # registered result, are not inventory data.
    assert data_keys == ["ipsec_tunnels", "ipsec_tunnel"]
    assert host_names(names, data_keys) == ["ipsec_public_address"]
    # A misspelt gateway variable is reported for the host that has it.
    assert global_names(["ipsec_lan_subnet"]) == []
    assert host_names(["ipsec_lan_subnet", "ipsec_id", "ipsec_full"], ["ipsec_tunnels"]) == [
        "ipsec_lan_subnet",
        "ipsec_id",
    ]
