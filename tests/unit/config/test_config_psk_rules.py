"""A pre-shared key must be strong enough, and a file that holds one must be private.

A PSK of fewer than 20 octets, or one character repeated, is refused unless the connection says
``allow_weak_psk: true``; the refusal names the file, the field and the rule, never the key. A
configuration file that holds a psk itself is refused when group or others can read it, like a
psk_file.
"""

from __future__ import annotations

import base64
import json
import os

import pytest
from config_cases import ENGINES, SOURCE, base_config, need_engine, problems
from pyike.config import ConfigError, load_config, parse_config, psk_weakness

FIX = (
    "use a random key of at least 20 octets (for example the output of 'openssl rand -base64 32'), or set "
    "allow_weak_psk: true on the connection to accept it anyway"
)
# Weak keys made of characters that the messages never contain, so that any leak would show.
WEAK = {
    "one-octet": ("Z", "is shorter than 20 octets"),
    "19-octets": ("ZQ#9ZQ#9ZQ#9ZQ#9ZQ#", "is shorter than 20 octets"),
    "19-octets-hex": ("0x" + "5a5123" * 6 + "5a", "is shorter than 20 octets"),
    "10-octets-base64": ("0s" + base64.b64encode(b"ZQ#9ZQ#9ZQ").decode(), "is shorter than 20 octets"),
    "one-character-repeated": ("J" * 32, "is one character repeated"),
    "one-octet-repeated-hex": ("0x" + "00" * 32, "is one character repeated"),
    "one-multibyte-character-repeated": ("\u20ac" * 8, "is one character repeated"),
}


def with_psk(value, **extra):
    data = base_config()
    data["connections"]["hq"].update(psk=value, **extra)
    return data


def with_psk_file(path, **extra):
    data = base_config()
    del data["connections"]["hq"]["psk"]
    data["connections"]["hq"].update(psk_file=str(path), **extra)
    return data


def write_key(path, content, mode=0o600):
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    os.chmod(path, mode)
    return path


def assert_no_part_of(key, text):
    """Neither the key nor any three characters of it (nor what it decodes to) are in `text`."""
    assert key not in text
    for start in range(max(len(key) - 2, 1)):
        assert key[start : start + 3] not in text, key[start : start + 3]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("key", "rule"), list(WEAK.values()), ids=list(WEAK))
def test_a_weak_inline_psk_is_refused_naming_file_field_and_rule(engine, key, rule):
    need_engine(engine)
    lines = problems(with_psk(key), engine)
    assert lines == ["%s: connections.hq.psk: the pre-shared key %s; %s" % (SOURCE, rule, FIX)]
    assert_no_part_of(key, lines[0])


@pytest.mark.parametrize(("key", "rule"), list(WEAK.values()), ids=list(WEAK))
def test_a_weak_psk_file_is_refused_naming_file_field_and_rule(tmp_path, key, rule):
    path = write_key(tmp_path / "hq.psk", key + "\n")
    lines = problems(with_psk_file(path))
    assert lines == [
        "%s: connections.hq.psk_file: the pre-shared key in %s %s; %s" % (SOURCE, path, rule, FIX)
    ]
    assert_no_part_of(key, lines[0].replace(str(path), ""))


def test_binary_key_material_follows_the_same_rule(tmp_path):
    path = write_key(tmp_path / "hq.bin", b"\xff" * 32)
    assert "is one character repeated" in problems(with_psk_file(path))[0]
    path = write_key(tmp_path / "hq.bin", b"\xff\xfe" * 9)
    assert "is shorter than 20 octets" in problems(with_psk_file(path))[0]
    path = write_key(tmp_path / "hq.bin", b"\xff\xfe" * 10)
    assert parse_config(with_psk_file(path), SOURCE).connection("hq").psk.reveal() == b"\xff\xfe" * 10


def test_the_message_does_not_depend_on_the_key():
    """Not even the length of a weak key shows: every short key gets the same words."""
    messages = {problems(with_psk(key))[0] for key in ("Z", "ZQ", "ZQ#9ZQ#9ZQ#9ZQ#9ZQ#", "0x5a")}
    assert len(messages) == 1


@pytest.mark.parametrize(
    "key",
    [
        "ZQ#9ZQ#9ZQ#9ZQ#9ZQ#9",  # exactly 20 octets
        "\u20acu" * 5,  # 10 characters, 20 octets: the rule counts octets
        "0x" + "5a5123" * 7,  # 21 octets as hex
        "0s" + base64.b64encode(os.urandom(32)).decode(),
        "JJJJJJJJJJJJJJJJJJJK",  # not only one character
    ],
)
def test_a_key_of_20_octets_and_more_than_one_character_loads(key):
    assert parse_config(with_psk(key), SOURCE).connection("hq").psk is not None


def test_psk_weakness_is_the_shared_rule():
    assert psk_weakness(b"x") == "is shorter than 20 octets"
    assert psk_weakness(b"x" * 20) == "is one character repeated"
    assert psk_weakness("\u00e9".encode() * 10) == "is one character repeated"
    assert psk_weakness(b"xy" * 10) == ""


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("key", "_rule"), list(WEAK.values()), ids=list(WEAK))
def test_allow_weak_psk_accepts_any_non_empty_key(engine, key, _rule):
    need_engine(engine)
    conn = parse_config(with_psk(key, allow_weak_psk=True), SOURCE, engine=engine).connection("hq")
    assert conn.allow_weak_psk is True
    assert conn.psk is not None
    assert conn.as_dict()["allow_weak_psk"] is True
    assert parse_config(with_psk("xy" * 16), SOURCE).connection("hq").allow_weak_psk is False


def test_allow_weak_psk_covers_psk_file_and_still_refuses_an_empty_key(tmp_path):
    path = write_key(tmp_path / "hq.psk", "Z\n")
    conn = parse_config(with_psk_file(path, allow_weak_psk=True), SOURCE).connection("hq")
    assert conn.psk.reveal() == b"Z"
    assert problems(with_psk("", allow_weak_psk=True)) == [SOURCE + ": connections.hq.psk: must not be empty"]
    empty = write_key(tmp_path / "empty.psk", "\n")
    assert problems(with_psk_file(empty, allow_weak_psk=True)) == [
        "%s: connections.hq.psk_file: the pre-shared key in %s is empty" % (SOURCE, empty)
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_allow_weak_psk_must_be_a_boolean(engine):
    need_engine(engine)
    lines = problems(with_psk("Z", allow_weak_psk="yes", cert="c.pem"), engine)
    assert any(line.startswith(SOURCE + ": connections.hq.allow_weak_psk: ") for line in lines), lines
    assert not any("shorter than" in line for line in lines), lines
    assert (
        SOURCE + ": connections.hq.cert: is only used with auth: pubkey" in lines
    )  # the other checks still run


def test_allow_weak_psk_is_refused_with_certificates():
    data = base_config()
    conn = data["connections"]["hq"]
    del conn["psk"]
    conn.update(auth="pubkey", allow_weak_psk=True, cert="c.pem", private_key="k.pem", ca_certs=["ca.pem"])
    lines = problems(data)
    expected = (
        SOURCE + ": connections.hq.allow_weak_psk: is not used with auth: pubkey; remove it, or set auth: psk"
    )
    assert expected in lines


# -- a configuration file that holds a key ----------------------------------------------------------------


def write_config(path, data, mode):
    if path.suffix == ".json":
        path.write_text(json.dumps(data))
    else:
        yaml = pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
        path.write_text(yaml.safe_dump(data))
    os.chmod(path, mode)
    return path


STRONG = "Kx7#Qv2@Zp9!Wm4^Jr8~Yb3&"


@pytest.mark.parametrize("name", ["pyike.json", "pyike.yaml"])
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_an_inline_psk_in_a_file_others_can_read_is_refused(tmp_path, name, mode):
    path = write_config(tmp_path / name, with_psk(STRONG), mode)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert caught.value.messages == (
        "%s: connections.hq.psk: holds a pre-shared key, but this configuration file is accessible by group "
        "or others (mode %04o); restrict it with chmod 600 %s, or move the key to a psk_file (mode 0600)"
        % (path, mode, path),
    )
    assert_no_part_of(STRONG, str(caught.value).replace(str(path), ""))


def test_the_fix_names_the_file_as_a_shell_word(tmp_path):
    path = write_config(tmp_path / "my vpn.json", with_psk(STRONG), 0o640)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "restrict it with chmod 600 '%s', or" % path in str(caught.value)


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_an_inline_psk_in_a_private_file_loads(tmp_path, mode):
    path = write_config(tmp_path / "pyike.json", with_psk(STRONG), mode)
    assert load_config(str(path)).connection("hq").psk.reveal() == STRONG.encode()


def test_a_readable_file_without_an_inline_key_loads(tmp_path):
    """The key in a private psk_file keeps the main file free to be read (0644 is then fine)."""
    key = write_key(tmp_path / "hq.psk", STRONG + "\n")
    path = write_config(tmp_path / "pyike.json", with_psk_file(key), 0o644)
    assert load_config(str(path)).connection("hq").psk.reveal() == STRONG.encode()


def test_every_exposed_key_and_every_other_problem_is_reported_at_once(tmp_path):
    data = with_psk(STRONG)
    branch = dict(data["connections"]["hq"], remote={"address": "203.0.113.1"}, psk="Z")
    data["connections"]["branch"] = branch
    path = write_config(tmp_path / "pyike.json", data, 0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    messages = caught.value.messages
    assert [m.split(": ")[1] for m in messages] == [
        "connections.hq.psk",
        "connections.branch.psk",
        "connections.branch.psk",
    ]
    assert "mode 0644" in messages[0] and "mode 0644" in messages[1]
    assert "the pre-shared key is shorter than 20 octets" in messages[2]
