"""roles/gateway/meta/argument_specs.yml documents every ipsec_* inventory variable in its entry
point ``inventory`` (``ansible-doc -t role pyike.ipsec.gateway``) in step with schemas/inventory.schema.json: the same
variables, types and descriptions, and every field of the structured ones."""

from __future__ import annotations

import json

import pytest
import yaml
from inventory_cases import REPO, SCHEMA_FILE

SPECS = REPO / "roles" / "gateway" / "meta" / "argument_specs.yml"
TYPES = {
    "string": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "array": "list",
    "object": "dict",
}
# The definitions whose fields a structured variable's description lists.
FIELDS = {
    "ipsec_ike_groups": ["ikeGroup"],
    "ipsec_esp_groups": ["espGroup"],
    "ipsec_tunnels": ["tunnel", "tunnelEnd", "child", "tunnelInterface"],
    "ipsec_topologies": ["topology", "member"],
}

SCHEMA = json.loads(SCHEMA_FILE.read_text())
OPTIONS = {
    name: spec
    for name, spec in yaml.safe_load(SPECS.read_text())["argument_specs"]["inventory"]["options"].items()
    if name.startswith("ipsec_")
}


def _type(node):
    if "type" in node:
        return TYPES[node["type"]]
    target = SCHEMA["$defs"][node["$ref"].split("/")[-1]]
    return TYPES[target.get("type", "string")]


def test_the_same_variables():
    assert sorted(OPTIONS) == sorted(SCHEMA["properties"])


def test_main_takes_no_inventory_variable():
    """Ansible validates the options of the entry point a play uses on every host, before the role's
    own check could name a problem with its inventory path."""
    main = yaml.safe_load(SPECS.read_text())["argument_specs"]["main"]["options"]
    assert not [name for name in main if name.startswith("ipsec_")]


@pytest.mark.parametrize("name", sorted(SCHEMA["properties"]))
def test_type_and_description_follow_the_schema(name):
    node, spec = SCHEMA["properties"][name], OPTIONS[name]
    assert spec["type"] == _type(node)
    if spec["type"] == "list":
        assert spec["elements"] == ("dict" if name in FIELDS else _type(node["items"]))
    assert spec["description"][0] == node["description"]
    assert "default" not in spec and not spec.get("required"), "the role must not invent a value"
    text = "\n".join(spec["description"])
    for definition in FIELDS.get(name, []):
        for field in SCHEMA["$defs"][definition]["properties"]:
            assert "C(%s):" % field in text, "%s: field %s of %s is not documented" % (
                name,
                field,
                definition,
            )


def test_private_key_is_no_log():
    assert OPTIONS["ipsec_private_key"].get("no_log") is True


def test_no_template_in_the_specs():
    """validate_argument_spec templates the specs before the role runs: '{{ vault_x }}' in a description
    fails every play with "'vault_x' is undefined" (seen in site.yml)."""
    assert "{{" not in SPECS.read_text() and "{%" not in SPECS.read_text()
