"""Route-based connections (mode route): the interface (XFRM or TUN)'s name, if_id, addresses and MTU, and the
errors of a wrong one, with both schema engines."""

from __future__ import annotations

import copy

import pytest
from config_cases import ENGINES, SOURCE, base_config, need_engine, problems
from pyike.config import parse_config
from pyike.config.build_route import default_if_id


def routed(**interface):
    data = base_config()
    data["connections"]["hq"].update(mode="route", interface=dict({"name": "ipsec-hq"}, **interface))
    return data


@pytest.mark.parametrize("engine", ENGINES)
def test_a_route_based_connection_has_its_interface(engine):
    need_engine(engine)
    conn = parse_config(routed(addresses=["169.254.10.1/30", "fd00:a::1/64"], mtu=1400), SOURCE,
                        engine=engine).connections["hq"]  # fmt: skip
    assert conn.mode == "route"
    assert (conn.interface.name, conn.interface.if_id, conn.interface.addresses, conn.interface.mtu) == (
        "ipsec-hq", default_if_id("ipsec-hq"), ("169.254.10.1/30", "fd00:a::1/64"), 1400)  # fmt: skip
    assert conn.as_dict()["interface"]["if_id"] == default_if_id("ipsec-hq") != 0
    assert parse_config(routed(if_id=7), SOURCE, engine=engine).connections["hq"].interface.if_id == 7
    plain = parse_config(base_config(), SOURCE, engine=engine).connections["hq"]
    assert (plain.mode, plain.interface, "interface" in plain.as_dict()) == ("policy", None, False)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(mode="route", interface=None), "connections.hq.interface: is required with mode: route (at least its name)"),
        (dict(interface={"name": "ipsec-hq"}), "connections.hq.interface: is only used with mode: route"),
        (dict(mode="route", interface={"name": "ipsec-hq", "addresses": ["169.254.10.1/33"]}),
         "connections.hq.interface.addresses[0]: '169.254.10.1/33' is not an address with a prefix length"),
    ],
)  # fmt: skip
def test_a_wrong_route_configuration_is_refused_by_path(engine, change, message):
    need_engine(engine)
    data = base_config()
    data["connections"]["hq"].update({k: v for k, v in change.items() if v is not None})
    (line,) = problems(data, engine)
    assert line == "%s: %s" % (SOURCE, message), line


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("interface", "where"),
    [
        ({"name": "a-name-longer-than-15"}, "connections.hq.interface.name"),
        ({"name": "bad/name"}, "connections.hq.interface.name"),
        ({"name": ".."}, "connections.hq.interface.name"),  # Linux refuses . and ..
        ({"name": "ipsec-hq", "if_id": 0}, "connections.hq.interface.if_id"),
        ({"name": "ipsec-hq", "mtu": 500}, "connections.hq.interface.mtu"),
        ({"name": "ipsec-hq", "colour": "red"}, "connections.hq.interface"),
    ],
)
def test_interface_fields_are_checked_by_the_schema(engine, interface, where):
    need_engine(engine)
    data = base_config()
    data["connections"]["hq"].update(mode="route", interface=interface)
    lines = problems(data, engine)
    assert any(line.startswith("%s: %s" % (SOURCE, where)) for line in lines), lines


@pytest.mark.parametrize("engine", ENGINES)
def test_two_connections_cannot_share_an_interface_or_an_if_id(engine):
    need_engine(engine)
    data = routed(if_id=9)
    second = copy.deepcopy(data["connections"]["hq"])
    second["remote"] = {"address": "198.51.100.2", "id": "gw3.example.com"}
    data["connections"]["branch"] = second
    lines = problems(data, engine)
    assert lines == [
        "%s: connections.branch.interface.name: ipsec-hq is connection 'hq''s interface already" % SOURCE,
        "%s: connections.branch.interface.if_id: 9 is connection 'hq''s interface's if_id already; set if_id on one"
        % SOURCE,
    ], lines


@pytest.mark.parametrize("engine", ENGINES)
def test_the_interface_cannot_be_the_main_tun_device(engine):
    need_engine(engine)
    data = routed(name="pyike0")
    data.setdefault("settings", {})["tun_name"] = "pyike0"
    assert problems(data, engine) == [
        "%s: connections.hq.interface.name: pyike0 is the userspace dataplane's TUN device (settings.tun_name)"
        % SOURCE
    ]
