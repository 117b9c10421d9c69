"""What an engine configuration asks of its host (pyike_host.traffic), and IP forwarding (forwarding)."""

from __future__ import annotations

from pathlib import Path

import modules_support  # noqa: F401 (makes ansible_collections.pyike.ipsec importable)  # pylint: disable=unused-import
import netns_harness
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.config import schema
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import (
    firewalld,
    forwarding,
    nftables,
    traffic,
)

netns = netns_harness.netns

HUB = {
    "settings": {"listen": ["192.0.2.1"]},
    "connections": {
        "star-spoke1": {
            "remote": {"address": "198.51.100.1", "id": "spoke1"},
            "psk": "never-read-by-the-host-module",
            "children": {"lan": {"local_ts": ["10.1.0.0/24", "10.3.0.0/24"], "remote_ts": ["10.2.0.0/24"]}},
        },
        "star-spoke2": {
            "remote": {"address": "203.0.113.1"},
            "children": {
                "lan": {"local_ts": ["10.1.0.0/24", "10.2.0.0/24"], "remote_ts": ["10.3.0.0/24"]},
                "v6": {"local_ts": ["fd00:0:1::/64"], "remote_ts": ["fd00:0:3::1-fd00:0:3::ff[tcp/22]"]},
            },
        },
    },
}


def test_the_hub_of_the_demo():
    host = traffic.host_traffic(HUB)
    assert host["peers"] == {"any": False, "4": ["198.51.100.1", "203.0.113.1"], "6": []}
    assert host["tun"] == "pyike0" and host["ike_ports"] == [500, 4500]
    assert host["tunnels"][0] == {
        "version": 4,
        "local": ["10.1.0.0/24", "10.3.0.0/24"],
        "remote": ["10.2.0.0/24"],
    }
    # an address range becomes the prefixes that cover it exactly; protocol and ports are not the host's concern
    assert host["tunnels"][2] == {
        "version": 6,
        "local": ["fd00:0:1::/64"],
        "remote": ["fd00:0:3::1/128", "fd00:0:3::2/127", "fd00:0:3::4/126", "fd00:0:3::8/125",
                   "fd00:0:3::10/124", "fd00:0:3::20/123", "fd00:0:3::40/122", "fd00:0:3::80/121"],
    }  # fmt: skip
    assert host["versions"] == [4, 6]
    assert host["mss"] == {"4": 1360, "6": 1340}
    assert "never-read" not in repr(host)


def test_a_route_based_connection_is_admitted_on_its_own_interface():
    """Its 0.0.0.0/0 selectors open only its interface (never the TUN device), with its own MSS; firewalld
    gets the interface in the zone and /0 as two /1 halves (hash:net refuses a /0)."""
    config = {
        "connections": dict(
            HUB["connections"],
            vti={
                "remote": {"address": "192.0.2.77"},
                "mode": "route",
                "interface": {"name": "ipsec-hq", "mtu": 1380},
                "children": {"all": {"local_ts": ["0.0.0.0/0"], "remote_ts": ["0.0.0.0/0"]}},
            },
        )
    }
    host = traffic.host_traffic(config)
    assert {"version": 4, "local": ["0.0.0.0/0"], "remote": ["0.0.0.0/0"], "interface": "ipsec-hq"} in host[
        "tunnels"
    ]
    assert all("interface" not in t for t in host["tunnels"] if t["remote"] != ["0.0.0.0/0"])
    assert host["interfaces"] == [{"name": "ipsec-hq", "mss": {"4": 1340}}]
    spec = dict(host, open=True)
    forward = nftables.helper_rules(spec, "inet", "forward")
    assert 'iifname "ipsec-hq" ip saddr 0.0.0.0/0 ip daddr 0.0.0.0/0 accept' in forward
    assert 'oifname "ipsec-hq" ip saddr 0.0.0.0/0 ip daddr 0.0.0.0/0 accept' in forward
    assert not [rule for rule in forward if '"pyike0"' in rule and "0.0.0.0/0" in rule], forward
    mss = nftables.mss_rules(spec)
    assert 'oifname "ipsec-hq" meta nfproto ipv4 tcp flags syn / syn,rst tcp option maxseg size > 1340 ' \
        "tcp option maxseg size set 1340" in mss  # fmt: skip
    assert not [rule for rule in mss if '"ipsec-hq" meta nfproto ipv6' in rule]
    wanted = firewalld.desired(host, ["public"])
    assert wanted["zone_interfaces"] == ["pyike0", "ipsec-hq"]
    remote = wanted["ipsets"][firewalld.ipset_name("remote", 4)][1]
    assert "0.0.0.0/1" in remote and "128.0.0.0/1" in remote and "0.0.0.0/0" not in remote


@pytest.mark.parametrize(
    ("interface", "message"),
    [
        ({"mtu": 1400}, "connections.vti.interface.name must be an interface name, got None"),
        (
            {"name": "ipsec-hq", "mtu": 100},
            "connections.vti.interface.mtu must be an MTU of at least 576, got 100",
        ),
    ],
)
def test_a_wrong_route_interface_is_named(interface, message):
    config = {"connections": {"vti": {"remote": {"address": "192.0.2.77"}, "mode": "route", "interface": interface,
                                      "children": {"all": {"local_ts": ["0.0.0.0/0"], "remote_ts": ["0.0.0.0/0"]}}}}}  # fmt: skip
    with pytest.raises(traffic.TrafficError) as raised:
        traffic.host_traffic(config)
    assert str(raised.value) == message


def test_defaults_are_the_engines():
    assert traffic.DEFAULT_TUN_NAME == schema.DEFAULT_TUN_NAME
    assert traffic.DEFAULT_TUN_MTU == schema.DEFAULT_TUN_MTU
    assert (traffic.DEFAULT_IKE_PORT, traffic.DEFAULT_NAT_T_PORT) == (
        schema.DEFAULT_IKE_PORT,
        schema.DEFAULT_NAT_T_PORT,
    )


def test_settings_any_peer_and_names():
    config = {
        "settings": {"tun_name": "vpn7", "tun_mtu": 1280, "ike_port": 1500, "nat_t_port": 14500},
        "connections": {
            "road": {"remote": {"address": "%any"}, "children": {"c": {"local_ts": ["10.0.0.0/8"], "remote_ts": ["0.0.0.0/0"]}}},
            "named": {"remote": {"address": "localhost"}, "children": {}},
        },
    }  # fmt: skip
    host = traffic.host_traffic(config)
    assert host["peers"]["any"] and host["tun"] == "vpn7" and host["ike_ports"] == [1500, 14500]
    assert host["mss"] == {"4": 1240}
    assert host["named"] == ["localhost"] and host["peers"]["4"] == []  # a name: opened to any address


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"settings": {"tun_name": 'x" accept'}}, "settings.tun_name must be an interface name"),
        ({"settings": {"tun_name": "pyike0\nflush ruleset"}}, "settings.tun_name must be an interface name"),
        ({"settings": {"tun_mtu": 100}}, "settings.tun_mtu must be an MTU of at least 576"),
        ({"settings": {"ike_port": True}}, "settings.ike_port must be a port number"),
        ({"connections": []}, "connections must be a mapping"),
        ({"connections": {"a": {"remote": {}}}}, "connections.a.remote.address must be an address"),
        (
            {"connections": {"a": {"remote": {"address": "192.0.2.9"}, "children": {"c": {"local_ts": ["10.0.0.0/33"], "remote_ts": ["10.1.0.0/24"]}}}}},
            "connections.a.children.c.local_ts[0]: prefix length /33 is out of range",
        ),
        (
            {"connections": {"a": {"remote": {"address": "192.0.2.9"}, "children": {"c": {"local_ts": ["10.0.0.0/8"]}}}}},
            "connections.a.children.c.remote_ts must be a non-empty list",
        ),
    ],
)  # fmt: skip
def test_mistakes_name_the_field(config, message):
    with pytest.raises(traffic.TrafficError, match=message.replace("[", r"\[").replace("]", r"\]")):
        traffic.host_traffic(config)


# Runs in the namespace: plan (and apply unless check mode) forwarding for data["versions"], the
# kernel's own /proc/sys of that namespace; prints the plan's changes, diff and the running values after.
FORWARDING_RUN = """
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_host import forwarding
planned = forwarding.plan(data["versions"], data["path"], present=data["present"])
if not data["check"]:
    forwarding.apply(planned)
running = {key: forwarding.read_running(key) for key in forwarding.KEYS.values()}
print(json.dumps({"changes": planned["changes"], "diff": forwarding.diff_text(planned), "running": running}))
"""


def forward(netns, versions, path, present=True, check=False):
    return netns.python(
        FORWARDING_RUN, {"versions": versions, "path": path, "present": present, "check": check}
    )


def test_forwarding_file_and_running_values_of_a_real_kernel(tmp_path, netns):
    path = str(tmp_path / "sysctl.d" / "60-pyike-ipsec.conf")
    off = {"net.ipv4.ip_forward": "0", "net.ipv6.conf.all.forwarding": "0"}
    checked = forward(netns, [4], path, check=True)
    assert checked["changes"] == ["wrote %s" % path, "set net.ipv4.ip_forward = 1 (was 0)"]
    before, after = checked["diff"]
    assert "(absent)" in before and "running net.ipv4.ip_forward = 0" in before
    assert "net.ipv4.ip_forward = 1\n" in after and "ipv6" not in after
    assert checked["running"] == off and not Path(path).exists()  # check mode touched nothing

    done = forward(netns, [4], path)
    assert done["changes"] == checked["changes"]
    assert done["running"] == dict(off, **{"net.ipv4.ip_forward": "1"})
    assert oct(Path(path).stat().st_mode & 0o777) == "0o644"
    assert forward(netns, [4], path)["changes"] == []
    # IPv6 joins; the file is rewritten, IPv4's running value stays
    done = forward(netns, [4, 6], path)
    assert done["changes"] == ["wrote %s" % path, "set net.ipv6.conf.all.forwarding = 1 (was 0)"]
    assert done["running"] == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    assert "net.ipv6.conf.all.forwarding = 1" in Path(path).read_text()
    # absent: the file goes, the running values stay
    done = forward(netns, [], path, present=False)
    assert done["changes"] == ["removed %s" % path]
    assert not Path(path).exists() and done["running"]["net.ipv4.ip_forward"] == "1"
    # what systemd-sysctl / procps would read at boot is what we wrote
    forward(netns, [4, 6], path)
    netns.run(
        [
            "sh",
            "-c",
            "echo 0 > /proc/sys/net/ipv4/ip_forward; echo 0 > /proc/sys/net/ipv6/conf/all/forwarding",
        ]
    )
    netns.run(["sysctl", "-q", "-p", path])
    assert forward(netns, [4, 6], path)["changes"] == []


def test_a_kernel_without_ipv6_is_named(tmp_path):
    # a /proc/sys as a kernel built without IPv6 has it (none runs here)
    (tmp_path / "proc" / "net" / "ipv4").mkdir(parents=True)
    (tmp_path / "proc" / "net" / "ipv4" / "ip_forward").write_text("0\n")
    with pytest.raises(forwarding.ForwardingError, match="has no IPv6"):
        forwarding.plan([6], str(tmp_path / "x.conf"), proc_root=str(tmp_path / "proc"))
