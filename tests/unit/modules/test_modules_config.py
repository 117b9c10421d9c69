"""pyike.ipsec.config's logic: merge, validate, mask, write 0600, reload, restore on refusal."""

from __future__ import annotations

import json
import os
import stat

import modules_support
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import config_task, configfile
from modules_support import FakeDaemon

PSK = "unit-psk-Zq81-secret"
OTHER_PSK = "unit-psk-other-7730-b41e"


def _conn(local="192.0.2.1", remote="198.51.100.1", lan="10.1.0.0/24", peer_lan="10.2.0.0/24"):
    return {
        "local": {"address": local, "id": "gw1.example"},
        "remote": {"address": remote, "id": "gw2.example"},
        "ike_proposals": ["aes256gcm16-prfsha256-x25519"],
        "children": {"net": {"local_ts": [lan], "remote_ts": [peer_lan], "esp_proposals": ["aes256gcm16"]}},
    }


def _params(**overrides):
    params = {
        "path": None,
        "config": None,
        "connections": None,
        "settings": None,
        "state": "present",
        "secrets": None,
        "reload": True,
        "control_socket": None,
        "reload_timeout": 5,
    }
    params.update(overrides)
    return params


class Task:
    """Runs ConfigTask like the module does and checks that no key leaks into the result."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.hidden = set()

    def run(self, check_mode=False, **overrides):
        overrides.setdefault("path", str(self.tmp_path / "pyike" / "pyike.yml"))
        params = _params(**overrides)
        if params["control_socket"] is None:
            params["control_socket"] = str(self.tmp_path / "ctl")
        self.hidden |= config_task.secret_values(params)
        try:
            result = config_task.ConfigTask(params, check_mode, self.hidden.add).execute()
        except config_task.ConfigTaskError as exc:
            self.assert_no_keys(str(exc), exc.details)
            raise
        self.assert_no_keys(result)
        return result

    def assert_no_keys(self, *values):
        text = json.dumps(values, default=str)
        for key in (PSK, OTHER_PSK):
            assert key not in text


@pytest.fixture
def task(tmp_path):
    return Task(tmp_path)


@pytest.fixture
def daemon(tmp_path):
    answers = {"reload": {"ok": True, "result": {"message": "reloaded"}}}
    fake = FakeDaemon(tmp_path / "ctl", lambda command, args: answers[command])
    fake.answers = answers
    yield fake
    fake.close()


def _path(tmp_path):
    return tmp_path / "pyike" / "pyike.yml"


def test_add_write_reload_and_idempotence(task, daemon, tmp_path):
    result = task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    assert result["changed"] is True and result["reloaded"] is True
    assert result["added"] == ["hq"] and result["connections"] == ["hq"]
    path = _path(tmp_path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert PSK in path.read_text()  # the key is in the 0600 file, and only there
    assert "psk: <hidden>" in result["diff"]["after"] and result["diff"]["before"] == ""
    assert daemon.commands() == ["reload"]

    again = task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    assert again["changed"] is False and again["reloaded"] is False
    assert daemon.commands() == ["reload"]  # same content: no reload


def test_the_written_file_loads_in_the_daemon_and_a_wider_mode_is_restricted(task, daemon, tmp_path):
    """The daemon refuses a file with a key that group or others can read: the task keeps it 0600."""
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.config import ConfigError, load_config

    task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    path = _path(tmp_path)
    assert load_config(str(path)).connection("hq").psk.reveal() == PSK.encode()
    os.chmod(path, 0o644)
    with pytest.raises(
        ConfigError, match=r"connections\.hq\.psk: holds a pre-shared key, but .* \(mode 0644\)"
    ):
        load_config(str(path))
    result = task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    assert result["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_config(str(path)).connection("hq").psk.reveal() == PSK.encode()


def test_per_connection_present_and_absent_keep_the_others(task, daemon, tmp_path):
    task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    branch = _conn(remote="203.0.113.1", peer_lan="10.3.0.0/24")
    branch["remote"]["id"] = "gw3.example"
    result = task.run(connections={"branch": branch}, secrets={"branch": OTHER_PSK})
    assert result["added"] == ["branch"] and result["connections"] == ["branch", "hq"]
    document = configfile.read_existing(str(_path(tmp_path)), _parse_document())[1]
    assert document["settings"] == {"listen": ["192.0.2.1"]}
    assert document["connections"]["hq"]["psk"] == PSK

    result = task.run(connections=["hq"], state="absent")
    assert result["removed"] == ["hq"] and result["connections"] == ["branch"]
    assert task.run(connections=["hq"], state="absent")["changed"] is False


def test_changed_key_shows_as_changed_without_the_key(task, daemon):
    task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    result = task.run(connections={"hq": _conn()}, secrets={"hq": OTHER_PSK})
    assert result["changed"] is True and result["modified"] == ["hq"]
    assert "psk: <hidden>" in result["diff"]["before"]
    assert "psk: <hidden, changed>" in result["diff"]["after"]


def test_check_mode_writes_nothing(task, daemon, tmp_path):
    result = task.run(
        check_mode=True, settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK}
    )
    assert result["changed"] is True and "diff" in result
    assert not _path(tmp_path).exists() and not _path(tmp_path).parent.exists()
    assert daemon.commands() == []


def test_every_problem_is_reported_and_nothing_written(task, daemon, tmp_path):
    task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    before = _path(tmp_path).read_bytes()
    bad = _conn(lan="10.1.0.0/33")
    bad["ike_proposals"] = ["aes256gcm16-prfsha256-nosuchgroup"]
    with pytest.raises(config_task.ConfigTaskError) as error:
        task.run(connections={"bad": bad}, secrets={"bad": OTHER_PSK})
    problems = error.value.details["problems"]
    assert len(problems) == 2, problems
    assert any("connections.bad.children.net.local_ts[0]" in p and "/33" in p for p in problems)
    assert any("connections.bad.ike_proposals[0]" in p and "nosuchgroup" in p for p in problems)
    assert _path(tmp_path).read_bytes() == before
    assert daemon.commands() == ["reload"]  # only the first, good run


def test_a_refused_reload_restores_the_previous_file(task, daemon, tmp_path):
    task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    before = _path(tmp_path).read_bytes()
    daemon.answers["reload"] = {
        "ok": False,
        "error": "reload refused, the running configuration stays:\n%s: connections.hq: something"
        % _path(tmp_path),
    }
    with pytest.raises(config_task.ConfigTaskError) as error:
        task.run(connections={"hq": _conn(peer_lan="10.9.0.0/24")}, secrets={"hq": PSK})
    assert "the daemon refused the new configuration" in str(error.value)
    assert "connections.hq: something" in str(error.value)
    assert error.value.details["restored"] is True
    assert error.value.details["problems"] == ["%s: connections.hq: something" % _path(tmp_path)]
    assert _path(tmp_path).read_bytes() == before
    assert stat.S_IMODE(os.stat(_path(tmp_path)).st_mode) == 0o600


def test_a_refused_first_file_is_removed(task, daemon, tmp_path):
    daemon.answers["reload"] = {"ok": False, "error": "reload refused"}
    with pytest.raises(config_task.ConfigTaskError):
        task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    assert not _path(tmp_path).exists()


def test_no_daemon_means_write_only(task, tmp_path):
    result = task.run(settings={"listen": ["192.0.2.1"]}, connections={"hq": _conn()}, secrets={"hq": PSK})
    assert result["changed"] is True and result["reloaded"] is False
    assert "reads the file when it starts" in result["reload_message"]


def test_inline_keys_are_refused_and_hidden(task, tmp_path):
    conn = dict(_conn(), psk=PSK)
    with pytest.raises(
        config_task.ConfigTaskError,
        match=r"connections\.hq\.psk: pre-shared keys go in the no_log option secrets",
    ):
        task.run(connections={"hq": conn})
    with pytest.raises(config_task.ConfigTaskError, match=r"config\.connections\.hq\.psk"):
        task.run(config={"connections": {"hq": conn}})
    assert PSK in task.hidden  # the module adds it to no_log_values, so Ansible scrubs it everywhere
    assert not _path(tmp_path).exists()


def test_secrets_must_name_written_connections(task):
    with pytest.raises(config_task.ConfigTaskError, match=r"secrets names connection\(s\) typo"):
        task.run(connections={"hq": _conn()}, secrets={"hq": PSK, "typo": OTHER_PSK})


def test_whole_config_as_json(task, tmp_path):
    path = tmp_path / "pyike" / "pyike.json"
    result = task.run(
        path=str(path),
        config={"settings": {"listen": ["192.0.2.1"]}, "connections": {"hq": _conn()}},
        secrets={"hq": PSK},
    )
    assert result["changed"] is True
    document = json.loads(path.read_text())
    assert document["connections"]["hq"]["psk"] == PSK
    assert json.loads(result["diff"]["after"])["connections"]["hq"]["psk"] == "<hidden>"


def test_existing_directory_modes(tmp_path):
    shared = tmp_path / "etc"
    shared.mkdir(mode=0o755)
    os.chmod(shared, 0o755)
    assert configfile.directory_needs_fix(str(shared)) is None  # never tighten a shared directory
    own = tmp_path / "pyike"
    own.mkdir()
    os.chmod(own, 0o755)
    assert configfile.directory_needs_fix(str(own)) == "mode"
    assert configfile.directory_needs_fix(str(tmp_path / "new")) == "create"


def _parse_document():
    from ansible_collections.pyike.ipsec.plugins.module_utils.pyike.config import parse_document

    return parse_document


assert modules_support
