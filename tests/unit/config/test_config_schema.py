"""The published schema, the embedded schema, the examples and the loader agree."""

from __future__ import annotations

import json

import pytest
from config_cases import EXAMPLE_FILES, EXAMPLES, SCHEMA_FILE, base_config, installed
from pyike.config import (
    SCHEMA,
    ChildConfig,
    ConnectionConfig,
    Settings,
    default_proposals,
    load_config,
    parse_config,
    parse_document,
    parse_proposal_text,
    schema_json,
)
from pyike.config.validate import BuiltinValidator, schema_violations
from pyike.ids import ProtocolId


def test_published_schema_is_the_embedded_one():
    assert SCHEMA_FILE.read_text() == schema_json(), (
        "schemas/pyike-config.schema.json is out of date: regenerate it from "
        "plugins/module_utils/pyike/config/schema.py with schema_json()"
    )
    assert json.loads(SCHEMA_FILE.read_text()) == SCHEMA


def test_schema_is_valid_draft_2020_12():
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_builtin_validator_implements_every_keyword_used():
    BuiltinValidator(SCHEMA)  # raises on a keyword it would otherwise ignore
    with pytest.raises(ValueError, match="'anyOf' is not implemented"):
        BuiltinValidator({"type": "object", "properties": {"a": {"anyOf": []}}})
    with pytest.raises(ValueError, match="only local"):
        BuiltinValidator({"$ref": "https://example.com/schema"})


def test_every_object_is_strict():
    def walk(node, where):
        if isinstance(node, dict):
            if node.get("type") == "object":
                assert "additionalProperties" in node, where
                assert node["additionalProperties"] is not True, where
            for key, value in node.items():
                walk(value, where + "/" + key)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, "%s/%d" % (where, index))

    walk(SCHEMA, "#")


def test_examples_exist_in_both_formats():
    names = {p.name for p in EXAMPLE_FILES}
    for stem in ("two-site-gw1", "two-site-gw2"):
        assert {stem + ".yaml", stem + ".json"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_example_loads(path, tmp_path):
    if path.suffix != ".json":
        pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    config = load_config(installed(path, tmp_path))
    assert config.connections
    data = parse_document(path.read_text(), str(path))
    assert schema_violations(data, SCHEMA, "builtin") == []


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[p.name for p in EXAMPLE_FILES])
def test_example_validates_with_jsonschema(path):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")
    if path.suffix != ".json":
        pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    data = parse_document(path.read_text(), str(path))
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)
    assert schema_violations(data, SCHEMA, "jsonschema") == []


@pytest.mark.parametrize("stem", ["two-site-gw1", "two-site-gw2"])
def test_yaml_and_json_examples_are_the_same_config(stem, tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    from_yaml = load_config(installed(EXAMPLES / (stem + ".yaml"), tmp_path))
    from_json = load_config(installed(EXAMPLES / (stem + ".json"), tmp_path))
    assert from_yaml == from_json


def test_two_site_examples_mirror_each_other(tmp_path):
    gw1 = load_config(installed(EXAMPLES / "two-site-gw1.json", tmp_path)).connection("site2")
    gw2 = load_config(installed(EXAMPLES / "two-site-gw2.json", tmp_path)).connection("site1")
    assert (gw1.local.address, gw1.local.id) == (gw2.remote.address, gw2.remote.id)
    assert (gw1.remote.address, gw1.remote.id) == (gw2.local.address, gw2.local.id)
    assert gw1.psk == gw2.psk
    assert gw1.ike_proposals == gw2.ike_proposals
    lan1, lan2 = gw1.child("lan"), gw2.child("lan")
    assert (lan1.local_ts, lan1.remote_ts) == (lan2.remote_ts, lan2.local_ts)
    assert lan1.esp_proposals == lan2.esp_proposals
    assert lan1.start_action == "start" and lan2.start_action == "none"
    assert lan1.pfs and lan2.pfs


def test_schema_defaults_are_the_model_defaults():
    settings_schema = SCHEMA["$defs"]["settings"]["properties"]
    settings = Settings()
    for name, prop in settings_schema.items():
        value = getattr(settings, name)
        if name == "listen":
            value = [str(a) for a in value]
        elif name == "impair":
            value = list(value)
        assert value == prop["default"], name
    for schema_name, model in (("connection", ConnectionConfig), ("child", ChildConfig)):
        fields = model.__dataclass_fields__
        for name, prop in SCHEMA["$defs"][schema_name]["properties"].items():
            if "default" in prop and name in fields and not name.endswith("proposals"):
                assert fields[name].default == prop["default"], (schema_name, name)


def test_default_proposal_keyword():
    ike = default_proposals(ProtocolId.IKE)
    esp = default_proposals(ProtocolId.ESP)
    assert ike and esp
    for spec in ike + esp:
        spec.validate()
    data = base_config()
    data["connections"]["hq"]["ike_proposals"] = ["default", "aes128-sha256-ecp256"]
    del data["connections"]["hq"]["children"]["lan"]["esp_proposals"]
    conn = parse_config(data, "<test>").connection("hq")
    assert list(conn.ike_proposals) == [*ike, parse_proposal_text("aes128-sha256-ecp256", ProtocolId.IKE)[0]]
    assert list(conn.child("lan").esp_proposals) == esp
    assert not conn.child("lan").pfs
