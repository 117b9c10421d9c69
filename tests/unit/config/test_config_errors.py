"""Bad configurations: each is refused with a message naming the file, the field and the fault."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any, Callable, Dict, List, Tuple

import pytest
from config_cases import ENGINES, SOURCE, base_config, need_engine, problems
from pyike.config import ConfigError, load_config, parse_config
from pyike.config import documents as documents_module
from pyike.crypto import features

Mutation = Callable[[Dict[str, Any]], None]

CONN = ("connections", "hq")
CHILD = (*CONN, "children", "lan")


def set_(path: Tuple[Any, ...], value: Any) -> Mutation:
    def mutate(data: Dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def delete(path: Tuple[Any, ...]) -> Mutation:
    def mutate(data: Dict[str, Any]) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(data: Dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(data)

    return mutate


def copy_connection(data: Dict[str, Any]) -> None:
    data["connections"]["hq2"] = json.loads(json.dumps(data["connections"]["hq"]))


# (id, mutation, expected "path: message" fragment)
BAD_CONFIGS: List[Tuple[str, Mutation, str]] = [
    (
        "cidr-prefix-33",
        set_((*CHILD, "local_ts"), ["10.0.0.0/33"]),
        "connections.hq.children.lan.local_ts[0]: invalid traffic selector '10.0.0.0/33': "
        "prefix length /33 is out of range for IPv4 (0-32)",
    ),
    (
        "cidr-ipv6-prefix-129",
        both(
            set_((*CHILD, "local_ts"), ["2001:db8::/129"]), set_((*CHILD, "remote_ts"), ["2001:db8:1::/64"])
        ),
        "local_ts[0]: invalid traffic selector '2001:db8::/129': prefix length /129 is out of range for IPv6",
    ),
    (
        "cidr-bad-address",
        set_((*CHILD, "remote_ts"), ["10.2.0.256/24"]),
        "remote_ts[0]: invalid traffic selector '10.2.0.256/24': subnet address '10.2.0.256' is not an IPv4",
    ),
    (
        "range-backwards",
        set_((*CHILD, "local_ts"), ["10.1.0.9-10.1.0.1"]),
        "local_ts[0]: invalid traffic selector '10.1.0.9-10.1.0.1': range 10.1.0.9-10.1.0.1 ends before it starts",
    ),
    (
        "range-mixed-families",
        set_((*CHILD, "local_ts"), ["10.1.0.1-2001:db8::1"]),
        "mixes IPv4 and IPv6",
    ),
    (
        "selector-unknown-protocol",
        set_((*CHILD, "local_ts"), ["10.1.0.0/24[xtp]"]),
        "local_ts[0]: invalid traffic selector '10.1.0.0/24[xtp]': unknown IP protocol 'xtp'",
    ),
    (
        "selector-port-out-of-range",
        set_((*CHILD, "local_ts"), ["10.1.0.0/24[tcp/70000]"]),
        "port 70000 is out of range (0-65535)",
    ),
    (
        "selector-unclosed-bracket",
        set_((*CHILD, "local_ts"), ["10.1.0.0/24[tcp/80"]),
        "must be closed by a final ']'",
    ),
    (
        "selector-dynamic",
        set_((*CHILD, "local_ts"), ["dynamic"]),
        "'dynamic' selectors are not supported",
    ),
    (
        "selector-repeated",
        set_((*CHILD, "local_ts"), ["10.1.0.0/24", "10.1.0.7/24"]),
        "local_ts[1]: '10.1.0.7/24' repeats selector 10.1.0.0/24",
    ),
    (
        "selector-family-only-one-side",
        set_((*CHILD, "remote_ts"), ["2001:db8:2::/64"]),
        "connections.hq.children.lan.remote_ts: has IPv6 selectors but local_ts has none",
    ),
    (
        "unknown-proposal-token",
        set_((*CONN, "ike_proposals"), ["aes256gcm16-prfsha256-x25519-bogus512"]),
        "connections.hq.ike_proposals[0]: unknown or unsupported algorithm: 'bogus512' in proposal "
        "'aes256gcm16-prfsha256-x25519-bogus512'",
    ),
    (
        "ike-proposal-without-prf",
        set_((*CONN, "ike_proposals"), ["aes256gcm16-x25519"]),
        "connections.hq.ike_proposals[0]: IKE proposals need a PRF",
    ),
    (
        "esp-proposal-with-prf",
        set_((*CHILD, "esp_proposals"), ["aes256gcm16", "aes256-sha256-prfsha256"]),
        "connections.hq.children.lan.esp_proposals[1]: PRF keywords belong in IKE proposals, not ESP",
    ),
    (
        "proposal-syntax",
        set_((*CONN, "ike_proposals"), ["aes256, sha256"]),
        "connections.hq.ike_proposals[0]: 'aes256, sha256' is not valid: one proposal in strongSwan syntax",
    ),
    (
        "psk-and-psk-file",
        set_((*CONN, "psk_file"), "/etc/pyike/psk/hq"),
        "connections.hq: give only one of psk or psk_file, not psk and psk_file",
    ),
    ("no-psk", delete((*CONN, "psk")), "connections.hq: one of psk or psk_file is required"),
    (
        "psk-bad-hex",
        set_((*CONN, "psk"), "0xnothex"),
        "connections.hq.psk: the pre-shared key is not valid hexadecimal",
    ),
    (
        "psk-bad-base64",
        set_((*CONN, "psk"), "0s!!!"),
        "connections.hq.psk: the pre-shared key is not valid base64",
    ),
    ("psk-empty", set_((*CONN, "psk"), ""), "connections.hq.psk: must not be empty"),
    ("missing-children", delete((*CONN, "children")), "connections.hq.children: required field is missing"),
    ("empty-children", set_((*CONN, "children"), {}), "connections.hq.children: must not be empty"),
    ("missing-remote", delete((*CONN, "remote")), "connections.hq.remote: required field is missing"),
    (
        "missing-local-ts",
        delete((*CHILD, "local_ts")),
        "connections.hq.children.lan.local_ts: required field is missing",
    ),
    (
        "missing-connections",
        delete(("connections",)),
        "/etc/pyike/test.yaml: connections: required field is missing",
    ),
    (
        "bad-id-unknown-dn-attribute",
        set_((*CONN, "local", "id"), "XX=gw1"),
        "connections.hq.local.id: 'XX=gw1': unknown DN attribute 'XX'",
    ),
    ("bad-id-empty-dn-value", set_((*CONN, "remote", "id"), "C=CH, CN="), "attribute CN has an empty value"),
    ("bad-id-country", set_((*CONN, "remote", "id"), "C=Switzerland"), "C must be a two-letter country code"),
    (
        "bad-id-empty-fqdn",
        set_((*CONN, "local", "id"), "@"),
        "connections.hq.local.id: '@': the FQDN is empty",
    ),
    ("bad-id-space", set_((*CONN, "local", "id"), "gw 1"), "must be printable ASCII without spaces"),
    ("bad-id-colon", set_((*CONN, "local", "id"), "fe80::zz"), "is neither an IPv6 address nor a name"),
    (
        "bad-id-ipv4-prefix",
        set_((*CONN, "local", "id"), "ipv4:10.1.2"),
        "'ipv4:10.1.2' is not an IPv4 address",
    ),
    ("bad-id-keyid-hex", set_((*CONN, "local", "id"), "@#xyz"), "is not hexadecimal data"),
    (
        "bad-id-local-any",
        set_((*CONN, "local", "id"), "%any"),
        "connections.hq.local.id: '%any' matches any identity",
    ),
    ("bad-id-empty-string", set_((*CONN, "local", "id"), ""), "connections.hq.local.id: must not be empty"),
    (
        "unknown-key-connection",
        set_((*CONN, "rekey"), 100),
        "connections.hq.rekey: unknown field (allowed: allow_weak_psk, auth, auth_method, ca_certs, cert, "
        "cert_chain, children, dpd_action, dpd_delay, encap, ike_proposals, interface, local, mode, private_key, "
        "psk, psk_file, reauth_time, rekey_time, remote)",
    ),
    (
        "unknown-key-top",
        set_(("global",), {}),
        "/etc/pyike/test.yaml: global: unknown field (allowed: connections, settings)",
    ),
    (
        "unknown-key-child",
        set_((*CHILD, "mode"), "tunnel"),
        "connections.hq.children.lan.mode: unknown field",
    ),
    ("unknown-key-settings", set_(("settings", "port"), 500), "settings.port: unknown field"),
    (
        "unknown-key-endpoint",
        set_((*CONN, "local", "port"), 500),
        "connections.hq.local.port: unknown field (allowed: address, id)",
    ),
    (
        "type-int-as-string",
        set_((*CONN, "dpd_delay"), "30"),
        "connections.hq.dpd_delay: expected an integer, got a string '30'",
    ),
    (
        "type-bool-as-string",
        set_((*CONN, "encap"), "yes"),
        "connections.hq.encap: expected a boolean (true or false), got a string 'yes'",
    ),
    (
        "type-bool-as-int",
        set_(("settings", "tun_mtu"), True),
        "settings.tun_mtu: expected an integer, got a boolean true",
    ),
    (
        "type-float",
        set_((*CHILD, "rekey_time"), 1.5),
        "connections.hq.children.lan.rekey_time: expected an integer, got a number 1.5",
    ),
    (
        "type-list-as-string",
        set_((*CHILD, "local_ts"), "10.1.0.0/24"),
        "connections.hq.children.lan.local_ts: expected a list, got a string",
    ),
    (
        "type-children-as-list",
        set_((*CONN, "children"), ["lan"]),
        "connections.hq.children: expected an object (mapping), got a list",
    ),
    (
        "type-null",
        set_((*CONN, "remote"), None),
        "connections.hq.remote: expected an object (mapping), got null (no value given)",
    ),
    (
        "type-selector-int",
        set_((*CHILD, "remote_ts"), [10]),
        "connections.hq.children.lan.remote_ts[0]: expected a string, got an integer 10",
    ),
    ("negative", set_((*CONN, "dpd_delay"), -1), "connections.hq.dpd_delay: must be at least 0, got -1"),
    ("mtu-too-small", set_(("settings", "tun_mtu"), 100), "settings.tun_mtu: must be at least 576, got 100"),
    (
        "port-too-big",
        set_(("settings", "ike_port"), 70000),
        "settings.ike_port: must be at most 65535, got 70000",
    ),
    (
        "same-ports",
        set_(("settings", "nat_t_port"), 500),
        "settings.nat_t_port: must differ from ike_port (500)",
    ),
    (
        "enum-start-action",
        set_((*CHILD, "start_action"), "route"),
        "connections.hq.children.lan.start_action: must be one of none, start, trap, got 'route'",
    ),
    (
        "enum-log-level",
        set_(("settings", "log_level"), "verbose"),
        "settings.log_level: must be one of debug, info, warning, error",
    ),
    ("enum-auth", set_((*CONN, "auth"), "eap"), "connections.hq.auth: must be one of psk, pubkey, got 'eap'"),
    (
        "bad-tun-name",
        set_(("settings", "tun_name"), "a-very-long-tun-name"),
        "settings.tun_name: 'a-very-long-tun-name' is not valid",
    ),
    ("tun-name-dotdot", set_(("settings", "tun_name"), ".."), "settings.tun_name: '..' is not valid"),
    (
        "relative-socket",
        set_(("settings", "control_socket"), "pyike.ctl"),
        "settings.control_socket: 'pyike.ctl' is not valid",
    ),
    (
        "bad-connection-name",
        lambda d: d["connections"].update({"bad name": d["connections"].pop("hq")}),
        "connections[\"bad name\"]: invalid name 'bad name': a name of 1 to 64 letters",
    ),
    (
        "bad-child-name",
        lambda d: d["connections"]["hq"]["children"].update(
            {"a.b": {"local_ts": ["10.1.0.0/24"], "remote_ts": ["10.2.0.0/24"]}}
        ),
        "connections.hq.children[\"a.b\"]: invalid name 'a.b'",
    ),
    (
        "remote-bad-hostname",
        set_((*CONN, "remote", "address"), "gw2_example.com"),
        "connections.hq.remote.address: 'gw2_example.com' is not valid: peer IKE address: an IPv4 or IPv6 "
        "address, a DNS name (with remote.id), or %any",
    ),
    (
        "remote-unspecified",
        set_((*CONN, "remote", "address"), "0.0.0.0"),
        "connections.hq.remote.address: 0.0.0.0 is not a unicast address; use %any",
    ),
    (
        "remote-bad-address",
        set_((*CONN, "remote", "address"), "198.51.100.300"),
        "connections.hq.remote.address: '198.51.100.300' is not an IP address, and as a DNS name its last "
        "label is all digits",
    ),
    (
        "local-any",
        set_((*CONN, "local", "address"), "%any"),
        "connections.hq.local.address: '%any' is not valid: an IPv4 or IPv6 address",
    ),
    (
        "local-not-listened",
        set_(("settings", "listen"), ["192.0.2.99"]),
        "connections.hq.local.address: 192.0.2.1 is not covered by settings.listen (192.0.2.99)",
    ),
    (
        "local-ipv4-with-ipv6-only-listen",  # '::' beside an IPv4 address is IPv6 only
        set_(("settings", "listen"), ["::", "192.0.2.99"]),
        "connections.hq.local.address: 192.0.2.1 is not covered by settings.listen (::, 192.0.2.99)",
    ),
    (
        "listen-not-an-address",
        set_(("settings", "listen"), ["192.0.2.1", "192.0.2.x"]),
        "settings.listen[1]: '192.0.2.x' is not valid: an IPv4 or IPv6 address (host names are not resolved)",
    ),
    (
        "listen-bad-address",
        set_(("settings", "listen"), ["192.0.2.1", "192.0.2.300"]),
        "settings.listen[1]: '192.0.2.300' is not an IPv4 or IPv6 address",
    ),
    (
        "listen-duplicate",
        set_(("settings", "listen"), ["192.0.2.1", "192.0.2.1"]),
        "settings.listen[1]: duplicate item '192.0.2.1'",
    ),
    (
        "listen-wildcard-and-address",
        set_(("settings", "listen"), ["0.0.0.0", "192.0.2.1"]),
        "settings.listen: 0.0.0.0 already covers every IPv4 address",
    ),
    (
        "family-mismatch",
        set_((*CONN, "remote", "address"), "2001:db8::2"),
        "connections.hq.remote.address: 2001:db8::2 is IPv6 but local.address 192.0.2.1 is IPv4",
    ),
    (
        "any-peer-started",
        both(set_((*CONN, "remote", "address"), "%any"), set_((*CHILD, "start_action"), "start")),
        "connections.hq.children.lan.start_action: cannot be 'start' while remote.address is %any",
    ),
    (
        "ambiguous-connections",
        copy_connection,
        "connections.hq2: has the same local and remote addresses and identities as connection 'hq'",
    ),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_is_refused_with_its_message(engine, mutation, expected):
    need_engine(engine)
    data = base_config()
    mutation(data)
    lines = problems(data, engine)
    assert any(expected in line for line in lines), "\n".join(lines)
    assert all(line.startswith(SOURCE + ": ") for line in lines)


@pytest.mark.parametrize(
    ("mutation", "expected"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_both_engines_report_the_same(mutation, expected):
    pytest.importorskip("jsonschema", reason="jsonschema is not installed for this interpreter")
    data = base_config()
    mutation(data)
    assert problems(data, "builtin") == problems(data, "jsonschema")


def test_ipv6_any_alone_is_dual_stack_and_covers_ipv4():
    data = base_config()
    data["settings"]["listen"] = ["::"]
    assert parse_config(data, SOURCE).settings.covers(ipaddress.ip_address("192.0.2.1"))


def test_base_config_is_valid():
    config = parse_config(base_config(), SOURCE)
    assert list(config.connections) == ["hq"]


def test_one_message_per_field():
    data = base_config()
    set_((*CONN, "local", "address"), "%any")(data)
    set_((*CONN, "psk"), "")(data)
    lines = problems(data)
    assert lines == [
        SOURCE + ": connections.hq.local.address: '%any' is not valid: an IPv4 or IPv6 address "
        "(host names are not resolved)",
        SOURCE + ": connections.hq.psk: must not be empty",
    ]


def test_every_problem_is_listed_at_once():
    data = base_config()
    set_((*CHILD, "local_ts"), ["10.0.0.0/33"])(data)
    set_((*CONN, "ike_proposals"), ["aes256gcm16-prfsha256-nosuchgroup"])(data)
    set_((*CONN, "dpd_delay"), "soon")(data)
    set_(("settings", "colour"), "blue")(data)
    lines = problems(data)
    assert len(lines) == 4, lines
    for fragment in ("local_ts[0]", "ike_proposals[0]", "dpd_delay", "settings.colour"):
        assert any(fragment in line for line in lines)


def test_unavailable_algorithm_depends_on_installed_cryptography():
    data = base_config()
    set_((*CONN, "ike_proposals"), ["aes256gcm16-prfsha256-mlkem768"])(data)
    if features.has_mlkem():
        assert parse_config(data, SOURCE).connection("hq").ike_proposals
    else:
        lines = problems(data)
        assert any(
            "not available with the installed cryptography library: 'mlkem768'" in line for line in lines
        )


def test_top_level_must_be_a_mapping():
    for data, expected in (
        ([1, 2], "got a list"),
        (None, "the configuration is empty"),
        ("x", "got a string"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_config(data, SOURCE)
        assert str(caught.value).startswith(SOURCE + ": ")
        assert expected in str(caught.value)


# -- files ---------------------------------------------------------------------------------------------


def write(path, text, mode=0o644):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def write_private(path, text):
    """A configuration file as an administrator keeps one that holds a key: mode 0600."""
    return write(path, text, 0o600)


def psk_file_config(path) -> Dict[str, Any]:
    data = base_config()
    del data["connections"]["hq"]["psk"]
    data["connections"]["hq"]["psk_file"] = str(path)
    return data


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_psk_file_readable_by_others_is_refused(tmp_path, mode):
    key = write(tmp_path / "hq.psk", "file-psk-of-the-hq-tunnel\n", mode)
    lines = problems(psk_file_config(key))
    assert any(
        "connections.hq.psk_file: %s is accessible by group or others (mode %04o)" % (key, mode) in line
        for line in lines
    ), lines


def test_psk_file_private_loads_without_newline(tmp_path):
    key = write(tmp_path / "hq.psk", "file-psk-of-the-hq-tunnel\n", 0o600)
    conn = parse_config(psk_file_config(key), SOURCE).connection("hq")
    assert conn.psk.reveal() == b"file-psk-of-the-hq-tunnel"
    assert conn.psk_file == str(key)


def test_psk_file_hex_and_relative_path(tmp_path):
    (tmp_path / "psk").mkdir()
    write(tmp_path / "psk" / "hq", "0x00ff10" + "a5" * 18 + "\r\n", 0o400)
    config_file = tmp_path / "pyike.json"
    config_file.write_text(json.dumps(psk_file_config("psk/hq")))
    conn = load_config(str(config_file)).connection("hq")
    assert conn.psk.reveal() == b"\x00\xff\x10" + b"\xa5" * 18
    assert conn.psk_file == str(tmp_path / "psk" / "hq")


def test_psk_file_binary_content_is_used_as_is(tmp_path):
    key = tmp_path / "hq.bin"
    content = b"\xff\xfe\x00\x01" * 6  # not UTF-8
    key.write_bytes(content)
    os.chmod(key, 0o600)
    assert parse_config(psk_file_config(key), SOURCE).connection("hq").psk.reveal() == content


def test_psk_file_missing_directory_and_empty(tmp_path):
    lines = problems(psk_file_config(tmp_path / "absent"))
    assert any("connections.hq.psk_file: %s does not exist" % (tmp_path / "absent") in line for line in lines)
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    lines = problems(psk_file_config(directory))
    assert any("is not a regular file" in line or "cannot read" in line for line in lines), lines
    empty = write(tmp_path / "empty", "\n", 0o600)
    assert any(
        "the pre-shared key in %s is empty" % empty in line for line in problems(psk_file_config(empty))
    )


def test_duplicate_keys_in_json_are_refused(tmp_path):
    text = json.dumps(base_config())
    conn_text = json.dumps(base_config()["connections"]["hq"])
    text = text.replace('"connections": {', '"connections": {"hq": %s, ' % conn_text, 1)
    path = write_private(tmp_path / "dup.json", text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "%s: connections.hq: appears more than once (names must be unique)" % path in str(caught.value)


YAML_DUPLICATE_CHILD = """
connections:
  hq:
    local: {address: 192.0.2.1}
    remote: {address: 198.51.100.1}
    psk: yaml-psk-value-of-the-hq-tunnel
    children:
      lan:
        local_ts: [10.1.0.0/24]
        remote_ts: [10.2.0.0/24]
      lan:
        local_ts: [10.1.1.0/24]
        remote_ts: [10.2.1.0/24]
"""


def test_duplicate_child_names_in_yaml_are_refused(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    path = write_private(tmp_path / "dup.yaml", YAML_DUPLICATE_CHILD)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert (
        str(caught.value)
        == "%s: connections.hq.children.lan: appears more than once (names must be unique)" % path
    )


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    text = """
x-child: &child
  local_ts: [10.1.0.0/24]
  remote_ts: [10.2.0.0/24]
  start_action: none
connections:
  hq:
    local: {address: 192.0.2.1}
    remote: {address: 198.51.100.1}
    psk: yaml-psk-value-of-the-hq-tunnel
    children:
      lan:
        <<: *child
        start_action: start
"""
    path = write_private(tmp_path / "merge.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    # only the helper key at the top level is wrong; the merge and its override are fine
    assert caught.value.messages == ("%s: x-child: unknown field (allowed: connections, settings)" % path,)


def test_yaml_non_string_key_is_refused(tmp_path):
    pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    path = write_private(
        tmp_path / "keys.yaml",
        YAML_DUPLICATE_CHILD.replace(
            "      lan:\n        local_ts: [10.1.1.0/24]", "      1:\n        local_ts: [10.1.1.0/24]"
        ),
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert "%s: connections.hq.children: key 1 is an integer, not a string; quote it" % path in str(
        caught.value
    )


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "broken.json",
            '{"connections": {"hq": }',
            "broken.json: line 1 column 24: JSON syntax error: Expecting value",
        ),
        ("nan.json", '{"connections": {}, "x": NaN}', "JSON syntax error: NaN is not valid JSON"),
        ("broken.yaml", "connections:\n  hq: [a, b\n", "broken.yaml: line 3 column 1: YAML syntax error:"),
        ("tabs.yml", "connections:\n\thq: {}\n", "tabs.yml: line 2 column 1: YAML syntax error:"),
        ("binary.json", "\udcff", "not UTF-8 text"),
    ],
)
def test_syntax_errors_name_file_and_position(tmp_path, name, text, expected):
    if name.endswith((".yaml", ".yml")):
        pytest.importorskip("yaml", reason="PyYAML is not installed for this interpreter")
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).startswith(str(path) + ": ")
    assert expected in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "nope.yaml"))
    assert str(caught.value) == "%s: cannot read the configuration: No such file or directory" % (
        tmp_path / "nope.yaml"
    )


def test_yaml_without_pyyaml_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(documents_module, "yaml", None)
    path = tmp_path / "pyike.yaml"
    path.write_text("connections: {}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(str(path) + ": reading YAML needs PyYAML")
    assert "python3-yaml" in message and "JSON" in message
    # JSON still loads, also from a file without a known suffix
    other = write_private(tmp_path / "pyike.conf", json.dumps(base_config()))
    assert list(load_config(str(other)).connections) == ["hq"]


def test_empty_connections_is_a_valid_idle_config():
    config = parse_config({"connections": {}}, SOURCE)
    assert config.connections == {}


def test_impairments_are_checked_where_they_are_written():
    data = base_config()
    data["settings"]["impair"] = ["drop exchange=IKE_AUTH", "explode exchange=IKE_AUTH", "drop nth=0"]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, SOURCE)
    text = str(caught.value)
    assert "settings.impair[1]: 'explode exchange=IKE_AUTH' is not an impairment" in text
    assert "settings.impair[2]" in text and "settings.impair[0]" not in text
    data["settings"]["impair"] = ["drop exchange=IKE_AUTH message=response nth=1"]
    assert parse_config(data, SOURCE).settings.impair == ("drop exchange=IKE_AUTH message=response nth=1",)
