"""Volume lifetimes of Child SAs (rekey_bytes/life_bytes, rekey_packets/life_packets) and reauth_time:
loaded, defaulted, checked against each other, and handed to the engine."""

from __future__ import annotations

import pytest
from config_cases import ENGINES, base_config, need_engine, problems
from pyike.config import parse_config
from pyike.ike.policy import policy_from_config, policy_signature


def test_defaults_are_off():
    config = parse_config(base_config())
    conn = config.connections["hq"]
    child = conn.children["lan"]
    assert (child.rekey_bytes, child.life_bytes, child.rekey_packets, child.life_packets) == (0, 0, 0, 0)
    assert conn.reauth_time == 0
    assert policy_from_config(conn).reauth_time == 0.0


def test_values_reach_the_engine_policy():
    data = base_config()
    data["connections"]["hq"]["reauth_time"] = 86400
    data["connections"]["hq"]["children"]["lan"].update(
        rekey_bytes=10**9, life_bytes=2 * 10**9, rekey_packets=10**6, life_packets=0
    )
    conn = parse_config(data).connections["hq"]
    policy = policy_from_config(conn)
    child = policy.children["lan"]
    assert (child.rekey_bytes, child.life_bytes, child.rekey_packets, child.life_packets) == (
        10**9,
        2 * 10**9,
        10**6,
        0,
    )
    assert policy.reauth_time == 86400.0
    assert conn.as_dict()["reauth_time"] == 86400
    assert conn.as_dict()["children"]["lan"]["rekey_bytes"] == 10**9
    other = policy_from_config(parse_config(base_config()).connections["hq"])
    assert policy_signature(policy) != policy_signature(other)  # a reload with a new reauth_time restarts


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("unit", ["bytes", "packets"])
def test_the_hard_limit_must_be_above_the_soft_one(engine, unit):
    need_engine(engine)
    data = base_config()
    data["connections"]["hq"]["children"]["lan"].update({"rekey_" + unit: 1000, "life_" + unit: 1000})
    (line,) = problems(data, engine)
    assert line.endswith(
        "connections.hq.children.lan.life_%s: 1000 must be greater than rekey_%s (1000): the hard limit "
        "comes after the rekey" % (unit, unit)
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_negative_values_are_refused_by_the_schema(engine):
    need_engine(engine)
    data = base_config()
    data["connections"]["hq"]["children"]["lan"]["rekey_bytes"] = -1
    data["connections"]["hq"]["reauth_time"] = -5
    lines = problems(data, engine)
    assert any("children.lan.rekey_bytes" in line for line in lines), lines
    assert any("hq.reauth_time" in line for line in lines), lines
