"""The pre-shared key never shows: not in reprs, strings, listings, digests or any error message."""

from __future__ import annotations

import copy
import json
import os
import pickle

import pytest
from config_cases import ENGINES, SOURCE, base_config, need_engine
from pyike.config import (
    ConfigError,
    Secret,
    config_digest,
    connection_digest,
    load_config,
    parse_config,
)

PSK = "Zq7-DISTINCTIVE-psk-Kx93vB"
NUMERIC_PSK = 918273645501


def with_psk(value=PSK):
    data = base_config()
    data["connections"]["hq"]["psk"] = value
    return data


def assert_hidden(text: str) -> None:
    assert PSK not in text
    assert str(NUMERIC_PSK) not in text
    assert PSK.encode().hex() not in text


def test_secret_wrapper_hides_its_value():
    secret = Secret(PSK.encode())
    for text in (repr(secret), str(secret), "%s" % secret, "{}".format(secret), f"{secret!r}"):
        assert_hidden(text)
        assert "redacted" in text
    assert secret.reveal() == PSK.encode()
    assert secret == Secret(PSK.encode())
    assert secret != Secret(b"other")
    assert copy.deepcopy(secret) is secret
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    with pytest.raises(TypeError) as caught:
        Secret(PSK)  # str, not bytes
    assert_hidden(str(caught.value))


def test_loaded_config_never_shows_the_psk():
    config = parse_config(with_psk(), SOURCE)
    conn = config.connection("hq")
    assert conn.psk.reveal() == PSK.encode()
    for text in (
        repr(config),
        str(config),
        repr(conn),
        json.dumps(config.as_dict()),
        json.dumps(conn.as_dict(fingerprint=True)),
        config_digest(config),
        connection_digest(conn),
        conn.psk.fingerprint(),
    ):
        assert_hidden(text)
    assert config.as_dict()["connections"]["hq"]["psk"] == "<redacted>"


# Broken configurations that carry the PSK somewhere near the fault.
SECRET_CASES = {
    "psk-as-number": lambda d: d["connections"]["hq"].update(psk=NUMERIC_PSK),
    "psk-as-list": lambda d: d["connections"]["hq"].update(psk=[PSK]),
    "psk-as-mapping": lambda d: d["connections"]["hq"].update(psk={"value": PSK}),
    "psk-and-psk-file": lambda d: d["connections"]["hq"].update(psk=PSK, psk_file="/etc/pyike/psk/hq"),
    "psk-bad-hex": lambda d: d["connections"]["hq"].update(psk="0x" + PSK),
    "psk-bad-base64": lambda d: d["connections"]["hq"].update(psk="0s" + PSK),
    "psk-and-unknown-sibling": lambda d: d["connections"]["hq"].update(psk=PSK, colour="blue"),
    "psk-and-everything-wrong": lambda d: d["connections"]["hq"].update(
        psk=PSK, dpd_delay="x", remote={"address": "nowhere"}, children=[], auth="x"
    ),
    "psk-with-bad-connection-name": lambda d: d["connections"].update(
        {"no good": dict(d["connections"].pop("hq"), psk=PSK)}
    ),
    "psk-in-connection-of-wrong-type": lambda d: d["connections"].update(hq=[PSK]),
    "psk-ambiguous-connections": lambda d: d["connections"].update(
        hq2=dict(copy.deepcopy(d["connections"]["hq"]), psk=PSK)
    ),
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mutation", list(SECRET_CASES.values()), ids=list(SECRET_CASES))
def test_psk_never_in_error_messages(engine, mutation):
    need_engine(engine)
    data = with_psk()
    mutation(data)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE, engine=engine)
    error = caught.value
    assert error.problems
    for text in (str(error), repr(error), *error.messages, *(repr(p) for p in error.problems)):
        assert_hidden(text)


@pytest.mark.parametrize(
    "content",
    [("0x" + PSK + "\n"), ("0s" + PSK + "\n")],
    ids=["bad-hex", "bad-base64"],
)
def test_psk_file_content_never_in_error_messages(tmp_path, content):
    key = tmp_path / "hq.psk"
    key.write_text(content)
    os.chmod(key, 0o600)
    data = base_config()
    del data["connections"]["hq"]["psk"]
    data["connections"]["hq"]["psk_file"] = str(key)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE)
    assert "hq.psk" in str(caught.value)
    assert_hidden(str(caught.value))


def test_world_readable_psk_file_error_hides_content(tmp_path):
    key = tmp_path / "hq.psk"
    key.write_text(PSK)
    os.chmod(key, 0o644)
    data = base_config()
    del data["connections"]["hq"]["psk"]
    data["connections"]["hq"]["psk_file"] = str(key)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE)
    assert "mode 0644" in str(caught.value)
    assert_hidden(str(caught.value))


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("psk.yaml", 'connections:\n  hq:\n    psk: "%s\\q"\n' % PSK),
        ("psk.yaml", "connections:\n  hq:\n    psk: %s: [\n" % PSK),
        ("psk.yaml", "connections:\n  hq:\n    psk: %d\n    local: 5\n" % NUMERIC_PSK),
        ("psk.json", '{"connections": {"hq": {"psk": "%s\\q"}}}' % PSK),
        ("psk.json", '{"connections": {"hq": {"psk": "%s" "x"}}}' % PSK),
    ],
)
def test_psk_never_in_syntax_errors(tmp_path, name, text):
    if name.endswith(".yaml"):
        pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(str(path))
    assert_hidden(str(caught.value))
