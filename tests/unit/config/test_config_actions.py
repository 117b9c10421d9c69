"""Configuration of peers given as DNS names, start_action trap, close_action and dpd_action trap."""

from __future__ import annotations

import pytest
from config_cases import ENGINES, SOURCE, base_config, need_engine, problems
from pyike.config import connection_digest, parse_config
from pyike.config.peer_name import parse_peer_address
from pyike.ike.policy import policy_from_config, policy_signature

CONN = ("connections", "hq")
CHILD = (*CONN, "children", "lan")


def with_values(path, **values):
    data = base_config()
    node = data
    for key in path:
        node = node[key]
    node.update(values)
    return data


@pytest.mark.parametrize("engine", ENGINES)
def test_a_dns_name_is_a_peer_address(engine):
    need_engine(engine)
    data = with_values((*CONN, "remote"), address="VPN.Example.com.", id="vpn.example.com")
    conn = parse_config(data, SOURCE, engine=engine).connections["hq"]
    assert (conn.remote.address, conn.remote.dns_name, conn.remote.is_any) == (None, "vpn.example.com", False)
    assert conn.as_dict()["remote"]["address"] == "vpn.example.com"
    policy = policy_from_config(conn)
    assert (policy.remote_address, policy.remote_host, policy.remote_text) == (
        None,
        "vpn.example.com",
        "vpn.example.com",
    )
    assert policy.can_initiate


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("vpn.example.com", "remote.id: is required when remote.address is a DNS name (vpn.example.com)"),
        (
            "10.1.2",
            "remote.address: '10.1.2' is not an IP address, and as a DNS name its last label is all digits",
        ),
        (
            "0x7f000001",
            "remote.address: '0x7f000001' is not a DNS name but an IPv4 address in a legacy form (the resolver "
            "reads it as 127.0.0.1): write the address as 127.0.0.1",
        ),
        ("vpn_1.example.com", "remote.address: 'vpn_1.example.com' is not valid: peer IKE address"),
        ("-vpn.example.com", "remote.address: '-vpn.example.com' is not valid: peer IKE address"),
        ("a" * 64 + ".example.com", "remote.address: '%s.example.com' is not valid" % ("a" * 64)),
        (".".join(["a" * 60] * 5), "remote.address: must be at most 254 characters long"),
    ],
)
def test_bad_dns_names_are_refused_with_a_clear_message(engine, address, message):
    need_engine(engine)
    data = base_config()
    data["connections"]["hq"]["remote"] = {"address": address}
    (line,) = problems(data, engine)
    assert line.startswith("%s: connections.hq.%s" % (SOURCE, message)), line


def test_the_local_address_is_never_a_name():
    (line,) = problems(with_values((*CONN, "local"), address="gw1.example.com"))
    assert "connections.hq.local.address: 'gw1.example.com' is not valid: an IPv4 or IPv6 address" in line


def test_parse_peer_address():
    assert parse_peer_address(" 2001:db8::1 ")[0].version == 6
    assert parse_peer_address("Peer-1.Example.NET.") == (None, "peer-1.example.net")
    assert parse_peer_address("localhost") == (None, "localhost")
    assert parse_peer_address("0xdeadbeef.example") == (None, "0xdeadbeef.example")
    for bad in ("1.2.3.4.5", "::1::2", "a..b", "", "a b", "0x7f000001", "0xc0.0x2.1.1", "0xa"):
        with pytest.raises(ValueError):
            parse_peer_address(bad)


@pytest.mark.parametrize("engine", ENGINES)
def test_actions_are_accepted_and_reach_the_engine(engine):
    need_engine(engine)
    data = with_values(CHILD, start_action="trap", close_action="start")
    data["connections"]["hq"]["dpd_action"] = "trap"
    conn = parse_config(data, SOURCE, engine=engine).connections["hq"]
    child = conn.children["lan"]
    assert (child.start_action, child.close_action, conn.dpd_action) == ("trap", "start", "trap")
    policy = policy_from_config(conn)
    assert (policy.children["lan"].start_action, policy.children["lan"].close_action) == ("trap", "start")
    assert policy.dpd_action == "trap"
    default = parse_config(base_config(), SOURCE).connections["hq"]
    assert (
        default.children["lan"].close_action == "none"
        and default.as_dict()["children"]["lan"]["close_action"] == "none"
    )


def test_close_action_changes_the_digest_but_never_restarts_the_sa():
    """A reload picks it up (the engine reads it when the peer closes the child), the SA stays."""
    before = parse_config(base_config(), SOURCE).connections["hq"]
    after = parse_config(with_values(CHILD, close_action="trap"), SOURCE).connections["hq"]
    assert connection_digest(before) != connection_digest(after)
    assert policy_signature(policy_from_config(before)) == policy_signature(policy_from_config(after))


@pytest.mark.parametrize(
    ("field", "value", "path"),
    [
        ("start_action", "trap", "children.lan.start_action"),
        ("close_action", "start", "children.lan.close_action"),
        ("close_action", "trap", "children.lan.close_action"),
        ("dpd_action", "trap", "dpd_action"),
    ],
)
def test_actions_that_initiate_need_a_peer_address(field, value, path):
    data = base_config()
    data["connections"]["hq"]["remote"]["address"] = "%any"
    target = (
        data["connections"]["hq"] if field == "dpd_action" else data["connections"]["hq"]["children"]["lan"]
    )
    target[field] = value
    (line,) = problems(data)
    assert "connections.hq.%s: cannot be '%s' while remote.address is %%any" % (path, value) in line, line


@pytest.mark.parametrize("engine", ENGINES)
def test_unknown_actions_list_the_choices(engine):
    need_engine(engine)
    data = with_values(CHILD, close_action="restart")
    data["connections"]["hq"]["dpd_action"] = "hold"
    assert problems(data, engine) == [
        SOURCE
        + ": connections.hq.children.lan.close_action: must be one of none, trap, start, got 'restart'",
        SOURCE + ": connections.hq.dpd_action: must be one of clear, restart, trap, got 'hold'",
    ]


def test_two_connections_to_one_name_need_different_ids():
    data = with_values((*CONN, "remote"), address="vpn.example.com", id="vpn.example.com")
    data["connections"]["hq2"] = data["connections"]["hq"]
    (line,) = problems(data)
    assert (
        "connections.hq2: has the same local and remote addresses and identities as connection 'hq'" in line
    )
