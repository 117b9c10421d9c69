"""Equality, digests and reload diffs: a reload can tell which connections changed."""

from __future__ import annotations

import copy
import os

from config_cases import SOURCE, base_config
from pyike.config import (
    ConfigDiff,
    EngineConfig,
    Settings,
    config_digest,
    connection_digest,
    diff_configs,
    parse_config,
)


def two_connections():
    data = base_config()
    branch = copy.deepcopy(data["connections"]["hq"])
    branch["remote"] = {"address": "203.0.113.1", "id": "gw3.example.com"}
    branch["children"]["lan"]["remote_ts"] = ["10.3.0.0/24"]
    data["connections"]["branch"] = branch
    return data


def load(data):
    return parse_config(data, SOURCE)


def test_same_document_gives_equal_configs_and_digests():
    first, second = load(two_connections()), load(two_connections())
    assert first == second
    assert config_digest(first) == config_digest(second)
    assert diff_configs(first, second) == ConfigDiff((), (), (), ("hq", "branch"), False)
    assert diff_configs(first, second).empty


def test_defaults_written_out_change_nothing():
    data = two_connections()
    explicit = copy.deepcopy(data)
    explicit["settings"].update(tun_mtu=1400, ike_port=500, log_level="info")
    explicit["connections"]["hq"].update(dpd_delay=30, rekey_time=14400, encap=False, auth="psk")
    explicit["connections"]["hq"]["children"]["lan"].update(start_action="none", life_bytes=0)
    assert load(data) == load(explicit)
    assert config_digest(load(data)) == config_digest(load(explicit))


def test_connection_order_does_not_matter_for_digests():
    data = two_connections()
    reordered = copy.deepcopy(data)
    reordered["connections"] = dict(reversed(list(data["connections"].items())))
    old, new = load(data), load(reordered)
    assert config_digest(old) == config_digest(new)
    assert diff_configs(old, new).empty


def test_reload_diff_names_added_removed_and_changed():
    old_data = two_connections()
    new_data = copy.deepcopy(old_data)
    new_data["connections"]["hq"]["psk"] = "a-new-key-of-24-octets!"
    del new_data["connections"]["branch"]
    new_data["connections"]["dc"] = copy.deepcopy(old_data["connections"]["branch"])
    new_data["connections"]["dc"]["remote"]["address"] = "203.0.113.9"
    old, new = load(old_data), load(new_data)
    diff = diff_configs(old, new)
    assert diff.added == ("dc",)
    assert diff.removed == ("branch",)
    assert diff.changed == ("hq",)
    assert diff.unchanged == ()
    assert not diff.settings_changed
    assert old != new


def test_every_field_change_changes_the_connection_digest():
    base = load(two_connections())
    edits = [
        lambda c: c["local"].update(id="other.example.com"),
        lambda c: c["remote"].update(port=4501),
        lambda c: c.update(psk="another-key-for-the-digest"),
        lambda c: c.update(allow_weak_psk=True),
        lambda c: c.update(ike_proposals=["aes128gcm16-prfsha256-ecp256"]),
        lambda c: c.update(encap=True),
        lambda c: c.update(dpd_delay=0),
        lambda c: c.update(rekey_time=3600),
        lambda c: c["children"]["lan"].update(local_ts=["10.1.0.0/25"]),
        lambda c: c["children"]["lan"].update(remote_ts=["10.2.0.0/24[tcp]"]),
        lambda c: c["children"]["lan"].update(esp_proposals=["aes256gcm16-x25519"]),
        lambda c: c["children"]["lan"].update(start_action="start"),
        lambda c: c["children"]["lan"].update(rekey_time=60),
        lambda c: c["children"]["lan"].update(life_bytes=1 << 30),
        lambda c: c["children"]["lan"].update(life_packets=1000),
        lambda c: c["children"].update(voice={"local_ts": ["10.1.9.0/24"], "remote_ts": ["10.2.9.0/24"]}),
    ]
    seen = {connection_digest(base.connection("hq"))}
    for edit in edits:
        data = two_connections()
        edit(data["connections"]["hq"])
        config = load(data)
        digest = connection_digest(config.connection("hq"))
        assert digest not in seen
        seen.add(digest)
        assert diff_configs(base, config).changed == ("hq",)
        assert connection_digest(config.connection("branch")) == connection_digest(base.connection("branch"))


def test_settings_change_is_reported():
    old = load(two_connections())
    data = two_connections()
    data["settings"]["tun_mtu"] = 1300
    diff = diff_configs(old, load(data))
    assert diff.settings_changed and not diff.changed and not diff.empty


def test_first_load_adds_everything():
    new = load(two_connections())
    assert diff_configs(None, new) == ConfigDiff(("hq", "branch"), (), (), (), False)
    assert diff_configs(new, EngineConfig(Settings(), {})).removed == ("hq", "branch")


def test_psk_file_content_change_is_a_change(tmp_path):
    key = tmp_path / "hq.psk"
    key.write_text("first-key-of-the-hq-tunnel\n")
    os.chmod(key, 0o600)
    data = base_config()
    del data["connections"]["hq"]["psk"]
    data["connections"]["hq"]["psk_file"] = str(key)
    old = load(data)
    key.write_text("second-key-of-the-hq-tunnel\n")
    new = load(data)
    assert diff_configs(old, new).changed == ("hq",)
    key.write_text("first-key-of-the-hq-tunnel")  # the trailing newline is not part of the key
    assert diff_configs(old, load(data)).empty
